"""Models named by a spec string (the CLI's MODEL argument) and the metatomic adapter.

Spec forms:

* ``builtin:NAME``: a model shipped with symprobe (:func:`builtin_names`);
* ``metatomic:FILE.pt``: an exported metatomic model (from metatrain, ``symprobe export``, …);
* ``FILE.pt``: a metatomic model, or a symprobe PET-style model file (``symprobe train`` output);
* ``module:attribute``: any importable object: a :class:`~symprobe.models.base.Model`, an ASE calculator,
  or a zero-argument factory (a class or function) returning either; calculators are wrapped in
  :class:`~symprobe.models.base.CalculatorModel`.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator

from symprobe.models.base import BatchPrediction, CalculatorModel, Model, Prediction, stack_rotated_back
from symprobe.structures import rotate

SPEC_FORMS = "builtin:NAME, metatomic:FILE.pt, a model file (.pt), or module:attribute"
MODEL_SUFFIXES = (".pt",)
OBJECT_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class ModelSpecError(ValueError):
    """A model spec that cannot be loaded; the message names the spec and the valid forms."""


def _qtip4pf(dtype: torch.dtype | None) -> Model:
    from symprobe.testing import qtip4pf

    return qtip4pf(dtype=dtype or torch.float64)


def _pet(name: str) -> Callable[[torch.dtype | None], Model]:
    def load(dtype: torch.dtype | None) -> Model:
        from symprobe.models.pet import load_builtin

        return load_builtin(name, dtype=dtype or torch.float32)

    return load


BUILTIN: dict[str, Callable[[torch.dtype | None], Model]] = {
    "qtip4pf": _qtip4pf,
    "water-pet": _pet("water-pet"),
    "water-pet-twin": _pet("water-pet-twin"),
}


def builtin_names() -> list[str]:
    """Names accepted by ``builtin:NAME``."""
    return list(BUILTIN)


def load_model(spec: str | os.PathLike, dtype: torch.dtype | None = None) -> Model:
    """The model named by ``spec`` (see the module docstring for the forms).

    ``dtype`` sets the evaluation precision where the engine allows it (built-in models, symprobe PET
    files, metatomic models); None keeps each model's default. Raises :class:`ModelSpecError`.
    """
    spec = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else ""
    if not spec:
        raise ModelSpecError(f"empty model spec; expected {SPEC_FORMS}")
    if spec.startswith("builtin:"):
        return _load_builtin(spec, spec.removeprefix("builtin:"), dtype)
    if spec.startswith("metatomic:"):
        return _load_metatomic(spec, Path(spec.removeprefix("metatomic:")).expanduser(), dtype)
    path = Path(spec).expanduser()
    if not path.exists() and OBJECT_SPEC.fullmatch(spec):
        return _load_object(spec)
    return _load_file(spec, path, dtype)


def _load_builtin(spec: str, name: str, dtype: torch.dtype | None) -> Model:
    if name not in BUILTIN:
        raise ModelSpecError(f"{spec!r}: unknown built-in model {name!r} (available: {', '.join(BUILTIN)})")
    return BUILTIN[name](dtype)


def _load_file(spec: str, path: Path, dtype: torch.dtype | None) -> Model:
    if not path.exists():
        hint = f"; did you mean 'builtin:{spec}'?" if spec in BUILTIN else ""
        raise ModelSpecError(f"{spec!r}: no such model file (model specs: {SPEC_FORMS}){hint}")
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelSpecError(
            f"{spec!r}: unsupported model file suffix {path.suffix or '(none)'!r}; supported: "
            f"{', '.join(MODEL_SUFFIXES)} (metatomic models or symprobe PET-style models); other forms: {SPEC_FORMS}"
        )
    if _is_metatomic(path):
        return _load_metatomic(spec, path, dtype)
    from symprobe.models.pet import pet_model

    try:
        return pet_model(path, dtype=dtype or torch.float32)
    except Exception as error:  # torch.load and the state dict raise many types
        raise ModelSpecError(
            f"{spec!r}: neither a metatomic model nor a symprobe PET-style model file ({type(error).__name__}: {error})"
        ) from error


def _is_metatomic(path: Path) -> bool:
    from metatomic.torch import check_atomistic_model

    try:
        check_atomistic_model(str(path))
    except Exception:  # not a TorchScript archive exported by metatomic
        return False
    return True


def _load_metatomic(spec: str, path: Path, dtype: torch.dtype | None) -> "MetatomicModel":
    if not path.exists():
        raise ModelSpecError(f"{spec!r}: no such metatomic model file {str(path)!r}")
    try:
        return MetatomicModel(path, dtype=dtype)
    except Exception as error:  # metatomic raises RuntimeError/ValueError for bad archives
        raise ModelSpecError(f"{spec!r}: cannot load as a metatomic model ({type(error).__name__}: {error})") from error


def _load_object(spec: str) -> Model:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelSpecError(f"{spec!r}: cannot import module {module_name!r} ({error}); model specs: {SPEC_FORMS}") from error
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelSpecError(f"{spec!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if isinstance(target, (Model, Calculator)):
        return _as_model(spec, target)
    if not callable(target):
        raise ModelSpecError(
            f"{spec!r}: {type(target).__name__} is neither a Model, an ASE calculator nor a factory returning one"
        )
    try:
        made = target()
    except Exception as error:  # user code may raise anything
        raise ModelSpecError(f"{spec!r}: calling {attribute}() failed ({type(error).__name__}: {error})") from error
    return _as_model(spec, made)


def _as_model(spec: str, obj: object) -> Model:
    if isinstance(obj, Model):
        return obj
    if isinstance(obj, Calculator):
        return CalculatorModel(obj, name=spec)
    raise ModelSpecError(f"{spec!r}: got a {type(obj).__name__}, expected a symprobe Model or an ASE calculator")


class MetatomicModel(Model):
    """A metatomic model file evaluated through metatomic-ase, many structures per model call.

    ``dtype`` None runs the model in its exported precision; another dtype casts the weights (e.g. a float32
    metatrain model evaluated in float64 to separate round-off from learned symmetry breaking).
    ``chunk_atoms`` bounds the atoms of rotated copies evaluated in one call. The stress is the symmetric
    part of (1/V) ∂E/∂ε, as ASE reports it.
    """

    def __init__(self, path: str | Path, dtype: torch.dtype | None = None, chunk_atoms: int = 20_000):
        from metatomic.torch import load_atomistic_model
        from metatomic_ase import MetatomicCalculator

        self.path = Path(path)
        model = load_atomistic_model(str(self.path))
        capabilities = model.capabilities()
        if "energy" not in capabilities.outputs:
            raise ValueError(f"{self.path}: the model has no 'energy' output (outputs: {list(capabilities.outputs)})")
        if dtype is not None and capabilities.dtype != _DTYPE_NAMES[dtype]:
            model = _cast_atomistic_model(model, dtype)
        self.calculator = MetatomicCalculator(model, device="cpu")
        self.dtype = dtype or getattr(torch, capabilities.dtype)
        self.name = model.metadata().name or self.path.stem
        self.species = frozenset(int(z) for z in capabilities.atomic_types)
        self.cutoff = float(capabilities.interaction_range)
        self.chunk_atoms = chunk_atoms

    def _evaluate(self, frames: list[Atoms]) -> list[Prediction]:
        results = self.calculator.compute_energy(frames, compute_forces_and_stresses=True)
        stresses = results.get("stress")
        return [
            Prediction(
                float(results["energy"][k]),
                np.asarray(results["forces"][k], dtype=np.float64),
                None if stresses is None else 0.5 * (stresses[k] + stresses[k].T),
            )
            for k in range(len(frames))
        ]

    def _predict(self, atoms: Atoms) -> Prediction:
        return self._evaluate([atoms])[0]

    def _predict_rotated(self, atoms: Atoms, rotations: np.ndarray) -> BatchPrediction:
        per_chunk = max(1, self.chunk_atoms // len(atoms))
        results: list[Prediction] = []
        for start in range(0, len(rotations), per_chunk):
            results += self._evaluate([rotate(atoms, R) for R in rotations[start : start + per_chunk]])
        return stack_rotated_back(results, rotations)


_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def _cast_atomistic_model(model, dtype: torch.dtype):
    """The loaded metatomic model with weights and declared precision changed to ``dtype``."""
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"metatomic models run in float32 or float64, not {dtype}")
    model = model.to(dtype)
    model._model_dtype = dtype
    model.capabilities().dtype = _DTYPE_NAMES[dtype]
    return model
