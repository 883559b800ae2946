"""Training configs: the YAML schema (every key with its type, range and default), :class:`TrainConfig`,
and ``training.device`` as a torch device."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from symprobe.checks import (Check, ConfigError, check_keys, check_section, choice, flag, mapping, number, optional, positive,
                             read_yaml, text)
from symprobe.models.device import PRECISIONS
from symprobe.models.pet import default_hypers
from symprobe.structures import shared_data_dir

DATA_KEYS = {"path": None, "train": None, "val": None, "test": None, "seed": 0, "train_subset": None}
TRAINING_KEYS = {
    "seed": 0,
    "epochs": 100,
    "batch_size": 2,
    "lr": 1.0e-3,
    "lr_min": 1.0e-5,
    "warmup_epochs": 2,
    "schedule": "cosine",
    "plateau_patience": 10,
    "plateau_factor": 0.5,
    "energy_weight": 0.1,
    "force_weight": 1.0,
    "stress_weight": 0.0,
    "augmentation": True,
    "symmetry_penalty": 0.0,
    "penalty": "spread",
    "penalty_rotations": 2,
    "max_hours": None,
    "threads": None,
    "dtype": "float32",
    "precision": "float32",
    "device": "cpu",
    "init_from": None,
    "forces": "conservative",
    "energy_reference": "refit",
    "freeze_blocks": 0,
}
TOP_KEYS = {"name", "output_dir", "data", "model", "training", "pretrain"}
PRETRAIN_KEYS = {"data", "training", "model"}

_COUNT, _SEED = partial(number, integer=True, minimum=1), partial(number, integer=True, minimum=0)
_WEIGHT = partial(number, minimum=0)
_DATA_CHECKS: dict[str, Check] = {"path": text, "train": _COUNT, "val": _COUNT, "test": _SEED, "seed": _SEED, "train_subset": optional(_COUNT)}
_TRAINING_CHECKS: dict[str, Check] = {
    "seed": _SEED, "epochs": _COUNT, "batch_size": _COUNT, "lr": positive, "lr_min": _WEIGHT, "warmup_epochs": _WEIGHT,
    "schedule": partial(choice, options=("cosine", "plateau")), "plateau_patience": _SEED,
    "plateau_factor": partial(number, above=0, below=1), "energy_weight": _WEIGHT, "force_weight": _WEIGHT,
    "stress_weight": _WEIGHT, "augmentation": flag, "symmetry_penalty": _WEIGHT,
    "penalty": partial(choice, options=("spread", "equigrad")), "penalty_rotations": partial(number, integer=True, minimum=2),
    "max_hours": optional(positive), "threads": optional(_COUNT), "dtype": partial(choice, options=("float32", "float64")),
    "precision": partial(choice, options=PRECISIONS), "device": text, "init_from": optional(text),
    "forces": partial(choice, options=("conservative", "direct")),
    "energy_reference": partial(choice, options=("refit", "keep")), "freeze_blocks": _SEED,
}
_MODEL_CHECKS: dict[str, Check] = {
    "species": lambda value, key: [_COUNT(z, f"{key}[]") for z in _list(value, key)],
    "cutoff": positive, "cutoff_width": positive, "width": _COUNT, "heads": _COUNT, "blocks": _COUNT,
    "layers_per_block": _COUNT, "feedforward": optional(_COUNT), "radial_basis": _COUNT, "angular_degree": _SEED, "invariant": flag,
    "direct_forces": flag,
}


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a non-empty list, got {value!r}")
    return value


@dataclass
class TrainConfig:
    """A checked training config; ``model`` holds the architecture hyper-parameters."""

    name: str
    output_dir: Path
    data: dict[str, Any]
    model: dict[str, Any]
    training: dict[str, Any]
    source: Path | None = None
    pretrain: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (what checkpoints record)."""
        out = {"name": self.name, "output_dir": str(self.output_dir), "data": self.data, "model": self.model, "training": self.training}
        return out if self.pretrain is None else {**out, "pretrain": self.pretrain}


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a YAML training config (:class:`ConfigError` naming the file and key)."""
    path = Path(path)
    return make_config(read_yaml(path) or {}, base_dir=path.parent, source=path)


def make_config(raw: dict[str, Any], base_dir: str | Path = ".", source: Path | None = None) -> TrainConfig:
    """Check a config dictionary (every key: type and range); relative paths are taken from ``base_dir``;
    ``shared:REL`` means the shared data directory (see :func:`~symprobe.structures.shared_data_dir`)."""
    where = str(source or "config")
    try:
        raw = mapping(raw, "the config")
        check_keys(raw, TOP_KEYS, "config")
        data = _data_section(raw.get("data") or {}, "data")
        training = check_section(raw.get("training") or {}, _TRAINING_CHECKS, TRAINING_KEYS, "training")
        model = check_section(raw.get("model") or {}, _MODEL_CHECKS, default_hypers(), "model")
        if model["cutoff_width"] > model["cutoff"]:
            raise ConfigError(f"model.cutoff_width ({model['cutoff_width']}) must not exceed model.cutoff ({model['cutoff']})")
        if model["width"] % model["heads"]:
            raise ConfigError(f"model.width ({model['width']}) must be a multiple of model.heads ({model['heads']})")
        if training["lr_min"] > training["lr"]:
            raise ConfigError(f"training.lr_min ({training['lr_min']}) must not exceed training.lr ({training['lr']})")
        if training["precision"] != "float32" and training["dtype"] != "float32":
            raise ConfigError(f"training.precision {training['precision']!r} needs training.dtype float32, got {training['dtype']!r}")
        if training["forces"] == "direct" and not model["direct_forces"]:
            raise ConfigError("training.forces 'direct' needs model.direct_forces: true (a force head)")
        if training["forces"] == "direct" and training["stress_weight"] > 0:
            raise ConfigError("training.forces 'direct' has no stress: set training.stress_weight to 0")
        if training["freeze_blocks"] > model["blocks"]:
            raise ConfigError(f"training.freeze_blocks ({training['freeze_blocks']}) must not exceed model.blocks ({model['blocks']})")
        pretrain = None if raw.get("pretrain") is None else _pretrain_section(raw["pretrain"], training, Path(base_dir))
        if pretrain is not None and training["init_from"] is not None:
            raise ConfigError("training.init_from and pretrain exclude each other: the fine-tune starts from the pretrain stage's best model")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", training["device"]):
            raise ConfigError(f"training.device must be 'cpu', 'cuda' or 'cuda:N', got {training['device']!r}")
        data["path"] = str(_resolve_data_path(data["path"], Path(base_dir)))
        if training["init_from"] is not None and not Path(training["init_from"]).exists():
            raise ConfigError(f"training.init_from: model file {training['init_from']} does not exist")
        name = str(raw.get("name") or (source.stem if source else "run"))
        output = Path(raw.get("output_dir") or Path("runs") / name)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return TrainConfig(name, output, data, model, training, source, pretrain)


def _data_section(raw: Any, where: str) -> dict[str, Any]:
    """A checked ``data`` section (the required keys present)."""
    missing = [key for key in ("path", "train", "val", "test") if key not in mapping(raw, where)]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    data = check_section(raw, _DATA_CHECKS, DATA_KEYS, where)
    if data["train_subset"] is not None and data["train_subset"] > data["train"]:
        raise ConfigError(f"{where}.train_subset ({data['train_subset']}) must not exceed {where}.train ({data['train']})")
    return data


def _pretrain_section(raw: Any, training: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """The ``pretrain`` section: ``data`` (a full data section: the pre-training labels), ``training`` (keys that
    differ from the fine-tune's ``training``) and ``model`` (``direct_forces`` only), checked."""
    raw = mapping(raw, "pretrain")
    check_keys(raw, PRETRAIN_KEYS, "pretrain")
    data = _data_section(raw.get("data") or {}, "pretrain.data")
    data["path"] = str(_resolve_data_path(data["path"], base_dir))
    overrides = mapping(raw.get("training") or {}, "pretrain.training")
    check_keys(overrides, set(_TRAINING_CHECKS) - {"init_from", "freeze_blocks", "energy_reference"}, "pretrain.training")
    stage = check_section(overrides, _TRAINING_CHECKS, {}, "pretrain.training")
    if stage.get("lr_min", training["lr_min"]) > stage.get("lr", training["lr"]):
        raise ConfigError("pretrain.training.lr_min must not exceed pretrain.training.lr")
    model = check_section(raw.get("model") or {}, {"direct_forces": flag}, {}, "pretrain.model")
    if stage.get("forces") == "direct" and not model.get("direct_forces"):
        raise ConfigError("pretrain.training.forces 'direct' needs pretrain.model.direct_forces: true (a force head)")
    return {"data": data, "training": stage, "model": model}


def _resolve_data_path(path: str, base_dir: Path) -> Path:
    if path.startswith("shared:"):
        shared = shared_data_dir()
        if shared is None:
            raise ConfigError(f"data path {path!r} needs the shared data directory (set $SYMPROBE_DATA)")
        resolved = shared / path[len("shared:") :]
    else:
        resolved = Path(path) if Path(path).is_absolute() else base_dir / path
    if not resolved.exists():
        raise ConfigError(f"data file {resolved} does not exist")
    return resolved


def device_for(name: str) -> torch.device:
    """``training.device`` as a torch device; a clear error when it is not available."""
    from symprobe.models.device import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as error:
        raise ConfigError(f"training.device: {error}") from None
