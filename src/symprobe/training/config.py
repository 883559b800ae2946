"""Training configs: the YAML schema declared once (:class:`TrainConfigFile` and its sections: every key with its
type, range, default and meaning with units), :class:`TrainConfig`, and ``training.device`` as a torch device.

A ``pretrain`` section runs a pre-training stage first (:mod:`symprobe.training.stages`): its own ``data``, the
``training`` keys that differ from the fine-tune's, and ``model.direct_forces``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from symprobe.checks import ConfigError, Section, read_yaml, validate
from symprobe.models.device import PRECISIONS
from symprobe.models.pet import default_hypers
from symprobe.structures import shared_data_dir

_HYPERS = default_hypers()
Count = Annotated[int, Field(ge=1)]


class DataSection(Section):
    """The labelled structures and their split (counts of structures)."""

    path: str = Field(min_length=1, description="extxyz file of labelled structures (energy in eV, forces in eV/Å), "
                      "relative to the config file; shared:REL for the shared data directory")
    train: int = Field(ge=1, description="structures in the training set")
    val: int = Field(ge=1, description="structures in the validation set")
    test: int = Field(ge=0, description="structures in the test set")
    seed: int = Field(0, ge=0, description="seed of the random split")
    train_subset: int | None = Field(None, ge=1, description="train on the first N training structures only (learning curves)")

    @model_validator(mode="after")
    def _subset(self) -> DataSection:
        if self.train_subset is not None and self.train_subset > self.train:
            raise ConfigError(f"data.train_subset ({self.train_subset}) must not exceed data.train ({self.train})")
        return self


class ModelSection(Section):
    """The hyper-parameters of the PET-style model (defaults: :func:`symprobe.models.pet.default_hypers`)."""

    species: list[Count] = Field(_HYPERS["species"], min_length=1, description="atomic numbers the model knows")
    cutoff: float = Field(_HYPERS["cutoff"], gt=0, description="cutoff radius (Å)")
    cutoff_width: float = Field(_HYPERS["cutoff_width"], gt=0, description="width of the smooth cutoff shell (Å)")
    width: int = Field(_HYPERS["width"], ge=1, description="token width (a multiple of heads)")
    heads: int = Field(_HYPERS["heads"], ge=1, description="attention heads")
    blocks: int = Field(_HYPERS["blocks"], ge=1, description="message-passing blocks")
    layers_per_block: int = Field(_HYPERS["layers_per_block"], ge=1, description="transformer layers per block")
    feedforward: int | None = Field(_HYPERS["feedforward"], ge=1, description="hidden width of each layer's MLP "
                                    "(null: 2 × width)")
    radial_basis: int = Field(_HYPERS["radial_basis"], ge=1, description="radial basis functions of the edge distance")
    angular_degree: int = Field(_HYPERS["angular_degree"], ge=0, description="angular degree of the attention bias "
                                "(invariant twin only)")
    invariant: bool = Field(_HYPERS["invariant"], description="the exactly invariant twin (sees distances and angles only)")
    direct_forces: bool = Field(_HYPERS["direct_forces"], description="add a force head (direct-force training)")

    @model_validator(mode="after")
    def _shapes(self) -> ModelSection:
        if self.cutoff_width > self.cutoff:
            raise ConfigError(f"model.cutoff_width ({self.cutoff_width}) must not exceed model.cutoff ({self.cutoff})")
        if self.width % self.heads:
            raise ConfigError(f"model.width ({self.width}) must be a multiple of model.heads ({self.heads})")
        return self


class TrainingSection(Section):
    """The optimisation: epochs, learning-rate schedule, loss weights, symmetry penalty, precision and device."""

    seed: int = Field(0, ge=0, description="seed of the initial weights, batches and augmentation rotations")
    epochs: int = Field(100, ge=1, description="passes over the training set")
    batch_size: int = Field(2, ge=1, description="structures per optimiser step")
    lr: float = Field(1.0e-3, gt=0, description="peak learning rate (Adam)")
    lr_min: float = Field(1.0e-5, ge=0, description="learning rate at the end of the cosine schedule, or the plateau floor")
    warmup_epochs: float = Field(2, ge=0, description="epochs of linear warm-up")
    schedule: Literal["cosine", "plateau"] = Field("cosine", description="cosine decay, or reduce on a validation plateau")
    plateau_patience: int = Field(10, ge=0, description="epochs without improvement before the plateau schedule cuts the rate")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="factor of each plateau cut")
    energy_weight: float = Field(0.1, ge=0, description="weight of the energy loss ((eV/atom)²)")
    force_weight: float = Field(1.0, ge=0, description="weight of the force loss ((eV/Å)²)")
    stress_weight: float = Field(0.0, ge=0, description="weight of the stress loss ((eV/Å³)²)")
    augmentation: bool = Field(True, description="rotate every training structure at random (O(3)) each time it is seen")
    symmetry_penalty: float = Field(0.0, ge=0, description="weight of the symmetry penalty (0: none)")
    penalty: Literal["spread", "equigrad"] = Field("spread", description="spread: variance of the energy over rotations; "
                                                   "equigrad: the energy's rotational gradient")
    penalty_rotations: int = Field(2, ge=2, description="rotations per structure of the spread penalty")
    max_hours: float | None = Field(None, gt=0, description="stop (with a checkpoint) before this wall time (h); resume continues")
    checkpoint_steps: int = Field(500, ge=1, description="optimiser steps between the checkpoints taken inside an epoch "
                                  "(so a killed run loses at most these; epochs end with one anyway)")
    threads: int | None = Field(None, ge=1, description="torch threads (null: torch's default)")
    dtype: Literal["float32", "float64"] = Field("float32", description="precision of the weights and the arithmetic")
    precision: Literal[PRECISIONS] = Field("float32", description="float32, or tf32 or bf16 autocast on a GPU (with dtype float32)")
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    init_from: str | None = Field(None, min_length=1, description="start from the weights of this model file (.pt)")
    forces: Literal["conservative", "direct"] = Field("conservative", description="forces as −∇E, or from the force head")
    energy_reference: Literal["refit", "keep"] = Field("refit", description="with init_from: re-fit the per-species "
                                                      "reference energies (eV) on this data, or keep the source model's")
    freeze_blocks: int = Field(0, ge=0, description="with init_from: do not train the token layers of the first N blocks "
                               "(the readout heads stay trainable)")

    @field_validator("device")
    @classmethod
    def _device_name(cls, name: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
            raise ConfigError(f"training.device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSection:
        if self.lr_min > self.lr:
            raise ConfigError(f"training.lr_min ({self.lr_min}) must not exceed training.lr ({self.lr})")
        if self.precision != "float32" and self.dtype != "float32":
            raise ConfigError(f"training.precision {self.precision!r} needs training.dtype float32, got {self.dtype!r}")
        if self.forces == "direct" and self.stress_weight > 0:
            raise ConfigError("training.forces 'direct' has no stress: set training.stress_weight to 0")
        return self


FINE_TUNE_ONLY = ("init_from", "freeze_blocks", "energy_reference")
"""``training`` keys of the fine-tune stage only (the pre-training stage starts from scratch)."""

PretrainTraining = create_model(
    "PretrainTraining", __base__=Section, __doc__="The ``training`` keys of the pre-training stage that differ from the "
    "fine-tune's (each as in ``training``).",
    **{name: (field.annotation | None, FieldInfo.merge_field_infos(field, default=None))
       for name, field in TrainingSection.model_fields.items() if name not in FINE_TUNE_ONLY})


class PretrainModel(Section):
    """The ``model`` key of the pre-training stage that may differ from the fine-tune's."""

    direct_forces: bool | None = Field(None, description="a force head for the pre-training stage (direct-force pre-training)")


class PretrainSection(Section):
    """A pre-training stage before the fine-tune: its data, and what differs in training and model."""

    data: DataSection = Field(description="the pre-training labels (a data section: path, train, val, test, …)")
    training: PretrainTraining = Field(default_factory=PretrainTraining, description="training.* keys that differ for "
                                       "the pre-training stage (not init_from, freeze_blocks, energy_reference)")
    model: PretrainModel = Field(default_factory=PretrainModel, description="model.direct_forces for the pre-training stage")


class TrainConfigFile(Section):
    """A training config file (YAML): the four sections (five with ``pretrain``), the run's name and output directory."""

    name: str | None = Field(None, min_length=1, description="the run's name (default: the config file's stem)")
    output_dir: str | None = Field(None, min_length=1, description="where checkpoints and the model go (default: runs/NAME)")
    data: DataSection = Field(description="the data.* keys")
    model: ModelSection = Field(default_factory=ModelSection, description="the model.* keys")
    training: TrainingSection = Field(default_factory=TrainingSection, description="the training.* keys")
    pretrain: PretrainSection | None = Field(None, description="a pre-training stage run first (the pretrain.* keys)")

    @model_validator(mode="after")
    def _stages_fit(self) -> TrainConfigFile:
        if self.training.forces == "direct" and not self.model.direct_forces:
            raise ConfigError("training.forces 'direct' needs model.direct_forces: true (a force head)")
        if self.training.freeze_blocks > self.model.blocks:
            raise ConfigError(f"training.freeze_blocks ({self.training.freeze_blocks}) must not exceed model.blocks "
                              f"({self.model.blocks})")
        if self.pretrain is not None:
            if self.training.init_from is not None:
                raise ConfigError("training.init_from and pretrain exclude each other: the fine-tune starts from the "
                                  "pretrain stage's best model")
            stage = validate(TrainingSection, self.pretrain_training(), "pretrain.training", prefixed=True)
            direct = self.model.direct_forces if self.pretrain.model.direct_forces is None else self.pretrain.model.direct_forces
            if stage.forces == "direct" and not direct:
                raise ConfigError("pretrain.training.forces 'direct' needs pretrain.model.direct_forces: true (a force head)")
        return self

    def pretrain_training(self) -> dict[str, Any]:
        """The ``training`` keys of the pre-training stage: the fine-tune's, those of ``pretrain.training`` replacing them."""
        return {**self.training.model_dump(), **self.pretrain.training.model_dump(exclude_unset=True)}


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
    """Check a config dictionary (every key: type and range, :class:`TrainConfigFile`); relative paths are taken
    from ``base_dir``; ``shared:REL`` means the shared data directory (see :func:`~symprobe.structures.shared_data_dir`)."""
    where = str(source or "config")
    checked = validate(TrainConfigFile, raw, where, prefixed=True)
    try:
        data, training = checked.data.model_dump(), checked.training.model_dump()
        data["path"] = str(_resolve_data_path(data["path"], Path(base_dir)))
        if training["init_from"] is not None and not Path(training["init_from"]).exists():
            raise ConfigError(f"training.init_from: model file {training['init_from']} does not exist")
        pretrain = None
        if checked.pretrain is not None:
            pretrain = {key: getattr(checked.pretrain, key).model_dump(exclude_unset=key != "data") for key in ("data", "training", "model")}
            pretrain["data"]["path"] = str(_resolve_data_path(pretrain["data"]["path"], Path(base_dir)))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    name = checked.name or (source.stem if source else "run")
    return TrainConfig(name, Path(checked.output_dir or Path("runs") / name), data, checked.model.model_dump(), training, source,
                       pretrain)


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
