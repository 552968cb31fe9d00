"""Blue/green versions of the RAG index.

Two Chroma collections per embedding model ("blue" and "green"). The live one serves; each
build syncs the other (the candidate) incrementally, and a candidate becomes live only after
the retrieval-evaluation check passed. Which slot is live is recorded in Chroma itself
(``ChromaResource.promote``); the lake keeps the record of every version: the candidate, its
evaluation, and ``live.json``. The previous version stays intact until the next build, so a
bad build never reaches users and rolling back is promoting the other slot.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_data_platform.lib.embedding_cache import model_slug
from llm_data_platform.resources.lake import LakeResource


@dataclass(frozen=True)
class IndexVersion:
    slot: str
    version: int
    collection: str
    model_id: str
    built_at: str = ""
    chunks: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None  # evaluation outcome; None until evaluated


def versions_dir(lake: LakeResource, model_id: str) -> str:
    """The lake folder of one embedding model's index records (versions, slots, evaluations)."""
    return lake.path("serve", "rag_index", f"model={model_slug(model_id)}")


def _read(lake: LakeResource, path: str) -> IndexVersion | None:
    data = lake.read_bytes(path)
    return None if data is None else IndexVersion(**json.loads(data))


def _write(lake: LakeResource, path: str, version: IndexVersion) -> None:
    lake.write_bytes(path, json.dumps(asdict(version), indent=2).encode("utf-8"))


def live_version(lake: LakeResource, model_id: str) -> IndexVersion | None:
    return _read(lake, posixpath.join(versions_dir(lake, model_id), "live.json"))


def candidate_version(lake: LakeResource, model_id: str) -> IndexVersion | None:
    return _read(lake, posixpath.join(versions_dir(lake, model_id), "candidate.json"))


def record_candidate(lake: LakeResource, version: IndexVersion) -> None:
    _write(lake, posixpath.join(versions_dir(lake, version.model_id), "candidate.json"), version)


def record_evaluation(
    lake: LakeResource, version: IndexVersion, metrics: dict, passed: bool
) -> IndexVersion:
    """Kept per version, so the history of retrieval quality survives promotions."""
    evaluated = IndexVersion(**{**asdict(version), "metrics": metrics, "passed": passed})
    directory = versions_dir(lake, version.model_id)
    _write(lake, posixpath.join(directory, "candidate.json"), evaluated)
    _write(
        lake, posixpath.join(directory, "evaluations", f"v{version.version:06d}.json"), evaluated
    )
    return evaluated


def promote(lake: LakeResource, version: IndexVersion) -> None:
    _write(lake, posixpath.join(versions_dir(lake, version.model_id), "live.json"), version)


def evaluation_history(lake: LakeResource, model_id: str) -> list[IndexVersion]:
    import pyarrow.fs as pafs

    fs, _ = lake.filesystem()
    directory = posixpath.join(versions_dir(lake, model_id), "evaluations")
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    found = [_read(lake, i.path) for i in sorted(infos, key=lambda i: i.path)]
    return [v for v in found if v is not None]
