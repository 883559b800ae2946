"""The JSON schemas of symprobe's config files, generated from the pydantic models that validate them.

Editors use them to check and complete a config as it is typed: with VS Code's YAML extension (or any
yaml-language-server client), a first line ``# yaml-language-server: $schema=PATH/md.schema.json`` does it.
``symprobe schema md|train|pretrain-data|slurm`` prints one; the docs' reference links the files in docs/reference/schemas/.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from pydantic import BaseModel

CONFIGS = {"md": ("symprobe.md.config", "MDConfig", "`symprobe md CONFIG.yaml`"),
           "train": ("symprobe.training.config", "TrainConfigFile", "`symprobe train CONFIG.yaml`"),
           "pretrain-data": ("symprobe.training.pretrain_data", "PretrainDataFile", "`symprobe pretrain-data CONFIG.yaml`"),
           "slurm": ("symprobe.cluster.spec", "SlurmSettings", "`--cluster slurm:FILE.yaml`")}
"""Each config file by name: the module and class of its model, and the command that reads it."""


def config_model(name: str) -> type[BaseModel]:
    """The pydantic model of config ``name`` (a key of :data:`CONFIGS`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r} (one of {', '.join(CONFIGS)})")
    module, attribute, _ = CONFIGS[name]
    return getattr(importlib.import_module(module), attribute)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of config ``name``: every key with its type, range, default and meaning."""
    model = config_model(name)
    schema = model.model_json_schema()
    command = CONFIGS[name][2].strip("`")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": f"symprobe {name} config",
            "description": f"The YAML file of {command}. " + " ".join((model.__doc__ or "").split()).replace("``", "`")}


def schema_text(name: str) -> str:
    """:func:`json_schema` as the text of a ``.schema.json`` file (indented, UTF-8, a final newline)."""
    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"
