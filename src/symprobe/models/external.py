"""Models named by a spec string (the CLI's MODEL argument) and the metatomic adapter.

Spec forms:

* ``builtin:NAME``: a model shipped with symprobe (:func:`builtin_names`);
* ``metatomic:FILE.pt``: an exported metatomic model (from metatrain, ``symprobe export``, …);
* ``FILE.pt``: a metatomic model, or a symprobe PET-style model file (``symprobe train`` output);
* ``sevenn:NAME`` and ``chgnet:VERSION``: pretrained universal potentials whose weights ship in their wheels
  (:mod:`symprobe.models.pretrained`, the ``pretrained`` extra);
* ``module:attribute``: any importable object: a :class:`~symprobe.models.base.Model`, an ASE calculator,
  or a zero-argument factory (a class or function) returning either; calculators are wrapped in
  :class:`~symprobe.models.base.CalculatorModel`. A module that is not on the import path is looked for in
  the current directory, as ``python -m`` and pytest do;
* ``FILE.py:attribute``: the same object from a Python file (e.g. ``./mycalc.py:make_calc``).
"""

from __future__ import annotations

import importlib
import math
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator

from symprobe.models.base import BatchPrediction, CalculatorModel, Model, Prediction, stack_rotated_back
from symprobe.models.device import resolve_device

SPEC_FORMS = ("builtin:NAME, metatomic:FILE.pt, a model file (.pt), sevenn:NAME, chgnet:VERSION, module:attribute or "
              "FILE.py:attribute")
MODEL_SUFFIXES = (".pt",)
OBJECT_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
FILE_OBJECT_SPEC = re.compile(r"(.+\.py):([A-Za-z_][\w.]*)")


class ModelSpecError(ValueError):
    """A model spec that cannot be loaded; the message names the spec and the valid forms."""


Loader = Callable[[torch.dtype | None, torch.device], Model]


def _qtip4pf(dtype: torch.dtype | None, device: torch.device) -> Model:
    from symprobe.models.qtip4pf import qtip4pf

    return qtip4pf(dtype=dtype or torch.float64, device=device)


def _pet(name: str) -> Loader:
    def load(dtype: torch.dtype | None, device: torch.device) -> Model:
        from symprobe.models.pet import pet_model

        return pet_model(name, dtype=dtype or torch.float32, device=device)

    return load


BUILTIN: dict[str, Loader] = {
    "qtip4pf": _qtip4pf,
    "water-pet": _pet("water-pet"),
    "water-pet-twin": _pet("water-pet-twin"),
}


def builtin_names() -> list[str]:
    """Names accepted by ``builtin:NAME``."""
    return list(BUILTIN)


def load_model(spec: str | os.PathLike, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Model:
    """The model named by ``spec`` (see the module docstring for the forms).

    ``dtype`` sets the evaluation precision where the engine allows it (built-in models, symprobe PET
    files, metatomic models); None keeps each model's default. ``device`` (cpu, cuda, cuda:N; None: cpu)
    is where those models run; ``module:attribute`` objects run as they are. Raises :class:`ModelSpecError`,
    or :class:`~symprobe.models.device.DeviceError` for a device that is not available.
    """
    device = resolve_device(device)
    spec = os.fspath(spec).strip() if isinstance(spec, (str, os.PathLike)) else ""
    if not spec:
        raise ModelSpecError(f"empty model spec; expected {SPEC_FORMS}")
    if spec.startswith("builtin:"):
        return _load_builtin(spec, spec.removeprefix("builtin:"), dtype, device)
    if spec.startswith("metatomic:"):
        return _load_metatomic(spec, Path(spec.removeprefix("metatomic:")).expanduser(), dtype, device)
    if spec.startswith(("sevenn:", "chgnet:")):
        return _load_pretrained(spec, device)
    path = Path(spec).expanduser()
    if not path.exists() and FILE_OBJECT_SPEC.fullmatch(spec):
        return _load_object(spec, _import_file(spec, Path(FILE_OBJECT_SPEC.fullmatch(spec).group(1)).expanduser()))
    if not path.exists() and OBJECT_SPEC.fullmatch(spec):
        return _load_object(spec, _import_module(spec, spec.partition(":")[0]))
    return _load_file(spec, path, dtype, device)


def _load_builtin(spec: str, name: str, dtype: torch.dtype | None, device: torch.device) -> Model:
    if name not in BUILTIN:
        raise ModelSpecError(f"{spec!r}: unknown built-in model {name!r} (available: {', '.join(BUILTIN)})")
    return BUILTIN[name](dtype, device)


def _load_pretrained(spec: str, device: torch.device) -> Model:
    from symprobe.models.pretrained import PretrainedError, chgnet_model, sevenn_model

    family, _, name = spec.partition(":")
    try:
        return (sevenn_model if family == "sevenn" else chgnet_model)(name.strip(), device, spec)
    except PretrainedError as error:
        raise ModelSpecError(str(error)) from error


def _load_file(spec: str, path: Path, dtype: torch.dtype | None, device: torch.device) -> Model:
    if not path.exists():
        hint = f"; did you mean 'builtin:{spec}'?" if spec in BUILTIN else ""
        raise ModelSpecError(f"{spec!r}: no such model file (model specs: {SPEC_FORMS}){hint}")
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelSpecError(
            f"{spec!r}: unsupported model file suffix {path.suffix or '(none)'!r}; supported: "
            f"{', '.join(MODEL_SUFFIXES)} (metatomic models or symprobe PET-style models); other forms: {SPEC_FORMS}"
        )
    if _is_metatomic(path):
        return _load_metatomic(spec, path, dtype, device)
    from symprobe.models.pet import pet_model

    try:
        return pet_model(path, dtype=dtype or torch.float32, device=device)
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


def _load_metatomic(spec: str, path: Path, dtype: torch.dtype | None, device: torch.device) -> "MetatomicModel":
    if not path.exists():
        raise ModelSpecError(f"{spec!r}: no such metatomic model file {str(path)!r}")
    try:
        return MetatomicModel(path, dtype=dtype, device=device)
    except Exception as error:  # metatomic raises RuntimeError/ValueError for bad archives
        raise ModelSpecError(f"{spec!r}: cannot load as a metatomic model ({type(error).__name__}: {error})") from error


def _import_module(spec: str, name: str):
    """The module ``name``, looked for on the import path and then in the current directory."""
    import sys

    try:
        return importlib.import_module(name)
    except ImportError as error:
        here = os.getcwd()
        missing = isinstance(error, ModuleNotFoundError) and error.name == name.partition(".")[0]
        if not missing or here in sys.path or not _is_module_here(name):
            raise ModelSpecError(_import_failed(spec, name, error)) from error
    sys.path.append(here)  # appended: a module of the current directory never shadows an installed one
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ModelSpecError(_import_failed(spec, name, error)) from error


def _is_module_here(name: str) -> bool:
    top = Path(name.partition(".")[0])
    return top.with_suffix(".py").is_file() or (top / "__init__.py").is_file()


def _import_failed(spec: str, name: str, error: ImportError) -> str:
    return (f"{spec!r}: cannot import module {name!r} ({error}); run from the directory that holds it, give its file "
            f"(./{name.replace('.', '/')}.py:{spec.partition(':')[2]}) or add its directory to PYTHONPATH; model specs: {SPEC_FORMS}")


def _import_file(spec: str, path: Path):
    """The Python file ``path`` imported as a module named after it (under a longer name when another module holds
    that one); its directory joins the import path, so that its own imports of modules beside it work."""
    import hashlib
    import importlib.util
    import sys

    if not path.is_file():
        raise ModelSpecError(f"{spec!r}: no such Python file {str(path)!r}")
    path = path.resolve()
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return loaded
    if loaded is not None:
        name = f"{name}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
        if name in sys.modules:
            return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # user code may raise anything
        del sys.modules[name]
        raise ModelSpecError(f"{spec!r}: importing {path} failed ({type(error).__name__}: {error})") from error
    return module


def _load_object(spec: str, module) -> Model:
    module_name, _, attribute = spec.rpartition(":")
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
    """A metatomic model file, evaluated on lists of systems, many per model call, on ``device``.

    ``dtype`` None runs the model in its exported precision; another dtype casts the weights (e.g. a float32
    metatrain model evaluated in float64 to separate round-off from learned symmetry breaking). Each
    structure's neighbour lists are computed once (vesin) and shared by its rotated copies; pair vectors are
    formed in float64 from the positions, then cast, so forces and stress come by autograd from float64
    positions and cell. The stress is the symmetric part of (1/V) ∂E/∂ε, as ASE reports it.
    """

    def __init__(self, path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
        from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model

        self.path = Path(path)
        self.device = resolve_device(device)
        model = load_atomistic_model(str(self.path))
        capabilities = model.capabilities()
        if "energy" not in capabilities.outputs:
            raise ValueError(f"{self.path}: the model has no 'energy' output (outputs: {list(capabilities.outputs)})")
        if dtype is not None and capabilities.dtype != _DTYPE_NAMES[dtype]:
            model = _cast_atomistic_model(model, dtype)
        self.model = model.to(self.device)
        self.dtype = dtype or getattr(torch, capabilities.dtype)
        self.name = model.metadata().name or self.path.stem
        self.species = frozenset(int(z) for z in capabilities.atomic_types)
        self.cutoff = float(capabilities.interaction_range)
        self.requests = list(model.requested_neighbor_lists())
        output = ModelOutput(unit="eV", explicit_gradients=[])
        output.sample_kind = "atom" if capabilities.outputs["energy"].sample_kind == "atom" else "system"
        self.options = ModelEvaluationOptions(length_unit="angstrom", outputs={"energy": output})
        self._bytes_per_atom: float | None = None

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        from symprobe.models.device import memory_budget
        from symprobe.models.torch_model import chunks, saved_bytes

        lists = [[self._neighbours(atoms, options) for options in self.requests] for atoms in structures]
        copies = [(s, R) for s, Rs in enumerate(rotations) for R in Rs]
        n_atoms = np.array([len(structures[s]) for s, _ in copies], dtype=np.float64)
        if self._bytes_per_atom is None:
            s, R = copies[0]
            self._bytes_per_atom = saved_bytes(lambda: self._evaluate([(structures[s], lists[s], R)])) / len(structures[s])
        results = []
        for part in chunks(n_atoms, memory_budget(self.device) / self._bytes_per_atom):
            results += self._evaluate([(structures[s], lists[s], R) for s, R in copies[part]])
        out, k = [], 0
        for atoms, Rs in zip(structures, rotations):
            out.append(stack_rotated_back(results[k : k + len(Rs)], Rs))
            if not atoms.pbc.all():
                out[-1].stress = None
            k += len(Rs)
        return out

    def _neighbours(self, atoms: Atoms, options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One of the neighbour lists the model requests, (i, j, shifts), sorted by (i, j, shift)."""
        from vesin import NeighborList

        from symprobe.structures import neighbour_box

        box, periodic = neighbour_box(atoms)
        i, j, S = NeighborList(cutoff=float(options.engine_cutoff("angstrom")), full_list=bool(options.full_list)).compute(
            atoms.get_positions(), box, periodic, quantities="ijS")
        order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
        return i[order].astype(np.int64), j[order].astype(np.int64), S[order].astype(np.int64)

    def _evaluate(self, copies: list[tuple[Atoms, list, np.ndarray]]) -> list[Prediction]:
        """Energy, forces and stress of copies (structure, its neighbour lists, R), in the copy's frame.

        Periodic copies are one system each. Isolated copies share one system when the model gives per-atom
        energies and a finite interaction range: side by side along x, farther apart than that range, so by
        the model's own declaration they do not interact (fewer systems: metatomic's cost per system dominates
        for small molecules)."""
        from metatomic.torch import System

        f64 = dict(dtype=torch.float64, device=self.device)
        leaves = []
        for atoms, _, R in copies:
            rotation = torch.as_tensor(R, **f64)
            cell = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
            leaves.append(((torch.as_tensor(atoms.get_positions(), **f64) @ rotation.T).requires_grad_(True),
                           (torch.as_tensor(cell, **f64) @ rotation.T).requires_grad_(True)))
        joinable = self.options.outputs["energy"].sample_kind == "atom" and math.isfinite(self.cutoff)
        isolated = [k for k, (atoms, _, _) in enumerate(copies) if joinable and not atoms.pbc.any()]
        groups = [[k] for k in range(len(copies)) if k not in set(isolated)] + ([isolated] if isolated else [])
        systems, atom_copy = [], []
        for group in groups:
            spacing = self.cutoff + 1.0 + 2 * max(float(np.ptp(copies[k][0].positions, axis=0).max()) for k in group)
            positions = torch.cat([leaves[k][0] + torch.tensor([n * spacing, 0.0, 0.0], **f64) for n, k in enumerate(group)])
            atoms = copies[group[0]][0]
            system = System(torch.as_tensor(np.concatenate([copies[k][0].numbers for k in group]), dtype=torch.int32, device=self.device),
                            positions.to(self.dtype), leaves[group[0]][1].to(self.dtype), torch.as_tensor(atoms.pbc, device=self.device))
            for r, options in enumerate(self.requests):
                system.add_neighbor_list(options, self._pairs([(copies[k][1][r], *leaves[k]) for k in group]))
            systems.append(system)
            atom_copy += [k for k in group for _ in range(len(copies[k][0]))]
        energy = self.model(systems, self.options, check_consistency=False)["energy"].block()
        samples = energy.samples.values.to(torch.long)
        if self.options.outputs["energy"].sample_kind == "atom":
            starts = torch.tensor(np.cumsum([0] + [len(system) for system in systems])[:-1], device=self.device)
            owner = torch.as_tensor(atom_copy, device=self.device)[starts[samples[:, 0]] + samples[:, 1]]
        else:
            owner = torch.as_tensor([group[0] for group in groups], device=self.device)[samples[:, 0]]
        energies = torch.zeros(len(copies), **f64).index_add(0, owner, energy.values.reshape(-1).to(torch.float64))
        grads = torch.autograd.grad(energies.sum(), [x for pair in leaves for x in pair], allow_unused=True)
        energies = energies.detach().cpu().numpy()
        out = []
        for k, ((atoms, _, _), (positions, cell)) in enumerate(zip(copies, leaves)):
            g_x, g_h = (torch.zeros_like(t) if g is None else g for g, t in zip(grads[2 * k : 2 * k + 2], (positions, cell)))
            stress = None
            if atoms.pbc.all():
                w = positions.detach().T @ g_x + cell.detach().T @ g_h
                stress = (0.5 * (w + w.T) / abs(atoms.cell.volume)).cpu().numpy()
            out.append(Prediction(float(energies[k]), -g_x.cpu().numpy(), stress))
        return out

    def _pairs(self, parts: list[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], torch.Tensor, torch.Tensor]]):
        """One neighbour-list block of copies joined into one system: ``parts`` are (pairs (i, j, shifts),
        positions, cell) of each copy; the pair vectors come from each copy's own float64 positions."""
        from metatensor.torch import Labels, TensorBlock

        vectors, samples, offset = [], [], 0
        for (i, j, S), positions, cell in parts:
            vectors.append(positions[j] - positions[i] + torch.as_tensor(S, dtype=torch.float64, device=self.device) @ cell)
            samples.append(np.column_stack([i + offset, j + offset, S]))
            offset += len(positions)
        labels = Labels(["first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"],
                        torch.as_tensor(np.concatenate(samples), dtype=torch.int32, device=self.device))
        return TensorBlock(torch.cat(vectors).to(self.dtype).reshape(-1, 3, 1), labels,
                           [Labels.range("xyz", 3).to(self.device)], Labels.range("distance", 1).to(self.device))


_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def _cast_atomistic_model(model, dtype: torch.dtype):
    """The loaded metatomic model with weights and declared precision changed to ``dtype``."""
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"metatomic models run in float32 or float64, not {dtype}")
    model = model.to(dtype)
    model._model_dtype = dtype
    model.capabilities().dtype = _DTYPE_NAMES[dtype]
    return model
