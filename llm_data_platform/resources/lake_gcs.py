"""The lake on Google Cloud Storage: pyarrow's GCS filesystem, configured, and its faults named.

Why pyarrow's ``GcsFileSystem`` and not gcsfs: it is the same pyarrow ``FileSystem`` interface
the local and S3 lakes use (datasets, Parquet footers, ``move``), it ships inside the pyarrow
wheel (no new dependency), and it resolves Application Default Credentials itself
(``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, the metadata
server on GCE/GKE/Cloud Run). Why not dagster-gcp's ``GCSResource``: it carries only a project
and builds a google-cloud-storage client this code would not use, and installing it pulls
BigQuery's client and downgrades pandas 3 to 2.x.

Three facts of pyarrow's GCS client the lake must know (verified against the emulator and
pyarrow's gcsfs.cc):

- closing an output stream finalizes the upload, and so does dropping it: an interrupted
  stream commits the bytes sent so far. The lake therefore uploads a file to a temp name and
  moves it (a server-side rewrite, atomic for the destination), as on S3;
- a non-recursive listing returns objects and directory *markers*, never the implicit
  directories that ``dt=.../data.parquet`` objects make: :func:`list_children` lists
  recursively and derives the folders;
- ``delete_dir`` also deletes the folder's marker object and fails (404) when there is none:
  the lake deletes a folder's contents instead (:func:`delete_folder`).
"""

from __future__ import annotations

import re
from datetime import timedelta

import dagster as dg
import pyarrow.fs as pafs


class GcsResource(dg.ConfigurableResource):
    """Where the GCS lake is and how long a request may be retried.

    Credentials are Application Default Credentials, found by pyarrow's client; an
    ``http://`` endpoint (an emulator on loopback) is used anonymously.
    """

    project: str | None = None
    endpoint_url: str | None = None
    retry_seconds: float = 60.0

    @property
    def anonymous(self) -> bool:
        return bool(self.endpoint_url) and self.endpoint_url.startswith("http://")

    def filesystem(self) -> pafs.GcsFileSystem:
        """pyarrow's GCS client; transient failures (5xx, 429, connection errors) are retried
        with backoff for ``retry_seconds`` in all (pyarrow's default is 15 minutes)."""
        kwargs: dict[str, object] = {
            "anonymous": self.anonymous,
            "retry_time_limit": timedelta(seconds=self.retry_seconds),
        }
        if self.project:
            kwargs["project_id"] = self.project
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            kwargs.update(endpoint_override=(host or scheme).rstrip("/"))
            kwargs.update(scheme=scheme if host else "https")
        return pafs.GcsFileSystem(**kwargs)

    def where(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"Google Cloud Storage (project {self.project or 'from the credentials'})"


def list_children(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """The files and folders directly under ``path``, folders derived from the objects below
    them (one recursive listing: GCS has no folders, only names with slashes)."""
    base = path.rstrip("/") + "/"
    found: dict[str, pafs.FileInfo] = {}
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
        head, deeper, _ = info.path[len(base) :].partition("/")
        if deeper or info.type == pafs.FileType.Directory:
            found[head] = pafs.FileInfo(base + head, pafs.FileType.Directory)
        else:
            found.setdefault(head, info)
    return [found[name] for name in sorted(found)]


def delete_folder(fs: pafs.FileSystem, path: str) -> None:
    """Every object under ``path``; the folder disappears with its last object."""
    fs.delete_dir_contents(path, missing_dir_ok=True)
    if fs.get_file_info(path).type == pafs.FileType.Directory:  # a folder marker is left
        fs.delete_dir(path)


def is_gcs_error(exc: BaseException) -> bool:
    """A failed request to GCS (it committed nothing), as pyarrow reports it."""
    return isinstance(exc, OSError) and "google::cloud::Status(" in str(exc)


# pyarrow: "google::cloud::Status(<CODE>: <message>, with a last message of <detail>
# error_info={..., gcloud-cpp.retry.function=<Operation>, ...})"
_STATUS = re.compile(r"google::cloud::Status\((?P<code>[A-Z_]+): (?P<detail>.*)", re.S)
_FUNCTION = re.compile(r"gcloud-cpp\.retry\.function=(?P<op>\w+)")
_HTTP = re.compile(r'(?:HTTP status code: |"code": )(?P<status>\d{3})')  # or the JSON error
_DOING = {"read": "reading", "write": "writing", "delete": "deleting"}


def explain_gcs(exc: OSError, action: str, uri: str, gcs: GcsResource) -> str:
    """What a GCS error from pyarrow means, for ``uri``, with the fix."""
    match = _STATUS.search(str(exc))
    if match is None:
        return f"GCS failed {_DOING.get(action, action)} {uri}: {exc}"
    code = match["code"]
    op_match, http = _FUNCTION.search(str(exc)), _HTTP.search(str(exc))
    op = op_match["op"] if op_match else "request"
    status = f"HTTP {http['status']} " if http else ""
    detail = " ".join(match["detail"].split("error_info=")[0].split())[:300]
    where, tried = gcs.where(), f"after retrying for {gcs.retry_seconds:g} s ({op})"
    if code == "UNAVAILABLE" and ("CURL error" in detail or "connect" in detail.lower()):
        return (
            f"Could not connect to GCS at {where} for {uri} {tried}: {detail}. Is the endpoint "
            "right (LDP_GCS_ENDPOINT_URL; unset for Google Cloud itself) and reachable from "
            "here? Then re-run the step."
        )
    if code in {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}:
        return (
            f"GCS returned {status}{code} for {uri} {tried}: the bucket is throttling or "
            "unavailable. Re-run the step in a few minutes; if it persists, run fewer "
            "lake-writing runs at once or raise LDP_GCS_RETRY_SECONDS."
        )
    if code == "DEADLINE_EXCEEDED":
        return (
            f"GCS at {where} did not answer for {uri} {tried}: the network or the endpoint is "
            "stalled. Check the connection, or raise LDP_GCS_RETRY_SECONDS, then re-run."
        )
    if code == "UNAUTHENTICATED":
        return (
            f"GCS rejected the credentials for {uri} ({status}{code}, {op}). Set Application "
            "Default Credentials: `gcloud auth application-default login`, or "
            "GOOGLE_APPLICATION_CREDENTIALS=<service-account key file>."
        )
    if code == "PERMISSION_DENIED":
        return (
            f"GCS denied access to {uri} ({status}{code}, {op}): the credentials in use may "
            f"not {'read' if action == 'read' else 'write'} there. Grant their principal "
            "roles/storage.objectAdmin on the bucket (or objectViewer to read), or use other "
            "credentials (GOOGLE_APPLICATION_CREDENTIALS)."
        )
    if code == "NOT_FOUND":  # a read of a missing object is "not there", never explained
        bucket = uri.removeprefix("gs://").split("/", 1)[0]
        return (
            f"The lake's bucket for {uri} does not exist at {where}: create it "
            f"(`gcloud storage buckets create gs://{bucket}`), or fix LDP_LAKE_ROOT."
        )
    if code in {"INTERNAL", "UNKNOWN"}:
        return (
            f"GCS returned {status}{code} for {uri} {tried}: an error on the GCS side "
            f"({where}). Re-run the step; if it persists, check the service's health."
        )
    return f"GCS returned {status}{code} for {uri} ({op}): {detail}"
