"""Versioned prompt templates: chosen by setting, recorded on every example, and the code
version of training_examples (a changed template shows exactly what to rebuild)."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import pytest

from llm_data_platform.definitions import build_definitions
from llm_data_platform.defs.training.resources import TrainingSettings
from llm_data_platform.transforms.prompt_templates import available_templates, load_template
from llm_data_platform.transforms.training_examples import build_training_examples
from llm_data_platform_tests.conftest import DAYS


def test_templates_ship_with_the_package_and_bad_names_say_what_exists():
    assert {"python_docs_assistant", "support_chat"} <= set(available_templates())
    assert load_template("support_chat").name == "support_chat@1"  # latest version
    with pytest.raises(ValueError, match="python_docs_assistant@1"):
        load_template("no_such_task")
    with pytest.raises(ValueError, match="no version 9"):
        load_template("support_chat@9")


def test_a_changed_template_changes_only_the_examples_code_version(built):
    platform, _ = built
    versions = {}
    for template in ("python_docs_assistant@1", "support_chat@1"):
        settings = dataclasses.replace(platform.settings, training_template=template)
        graph = build_definitions(settings).resolve_asset_graph()
        versions[template] = {
            name: graph.get(dg.AssetKey(name)).code_version
            for name in ("training_examples", "training_batches", "conversations_clean")
        }
    a, b = versions.values()
    assert a["training_examples"] != b["training_examples"]
    assert a["training_batches"] == b["training_batches"]  # stale through its input only
    assert a["conversations_clean"] == b["conversations_clean"]


def test_examples_carry_the_template_and_its_turns(built):
    platform, _ = built
    clean = platform.resources["lake"].read_partition("clean", "conversations_clean", DAYS[0])
    template = load_template("support_chat@1")
    config = TrainingSettings(template=template.name).config()
    examples = build_training_examples(clean, config).examples
    assert examples.num_rows and set(examples["template"].to_pylist()) == {"support_chat@1"}
    messages = json.loads(examples["messages_json"][0].as_py())["messages"]
    assert messages[0] == {"role": "system", "content": template.system}
    assert [(m["role"], m["content"]) for m in messages[1:3]] == list(template.few_shot)
    assert "$product" not in template.system  # variables filled in
