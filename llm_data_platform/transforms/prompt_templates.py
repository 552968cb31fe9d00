"""Versioned prompt templates for fine-tuning examples, shipped as files in the package.

One template per task, under ``prompt_templates/<id>/v<version>.json``: the system prompt
(``string.Template`` placeholders filled from the template's ``variables``) and optional
few-shot turns. A template is chosen by ``LDP_TRAINING_TEMPLATE`` (``<id>@<version>``, or
``<id>`` for its latest version). Every example records ``<id>@<version>``, and the template's
content digest is the code version of ``training_examples``: editing or switching a template
marks exactly the partitions built with another one as changed, so a backfill rebuilds those.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from importlib import resources

FOLDER = "prompt_templates"


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: int
    system: str
    few_shot: tuple[tuple[str, str], ...]
    digest: str  # sha256 of the template file

    @property
    def name(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def code_version(self) -> str:
        return f"{self.name}:{self.digest[:12]}"


def _root():
    return resources.files("llm_data_platform").joinpath(FOLDER)


def available_templates() -> dict[str, list[int]]:
    """Template ids and their versions, as shipped."""
    found: dict[str, list[int]] = {}
    for task in _root().iterdir():
        if task.is_dir():
            versions = sorted(
                int(f.name[1:-5])
                for f in task.iterdir()
                if f.name.startswith("v") and f.name.endswith(".json") and f.name[1:-5].isdigit()
            )
            if versions:
                found[task.name] = versions
    return dict(sorted(found.items()))


def load_template(spec: str) -> PromptTemplate:
    """``<id>@<version>`` or ``<id>`` (its latest version); a clear error names what exists."""
    template_id, _, version = spec.partition("@")
    shipped = available_templates()
    if template_id not in shipped:
        raise ValueError(
            f"No prompt template {template_id!r}: LDP_TRAINING_TEMPLATE must name one of "
            f"{', '.join(f'{t}@{v[-1]}' for t, v in shipped.items())}."
        )
    number = int(version) if version else shipped[template_id][-1]
    if number not in shipped[template_id]:
        raise ValueError(
            f"Prompt template {template_id!r} has no version {number} "
            f"(shipped: {shipped[template_id]})."
        )
    data = _root().joinpath(template_id, f"v{number}.json").read_bytes()
    body = json.loads(data)
    system = string.Template(body["system"]).substitute(body.get("variables", {}))
    few_shot = tuple((str(role), str(content)) for role, content in body.get("few_shot", []))
    return PromptTemplate(template_id, number, system, few_shot, hashlib.sha256(data).hexdigest())
