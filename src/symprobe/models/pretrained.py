"""Pretrained universal potentials whose weights ship inside their PyPI wheels (the ``pretrained`` extra), so
they load without a network:

* ``sevenn:NAME``: SevenNet (e3nn-equivariant; float32), NAME one of :data:`SEVENN_BUNDLED` (default ``7net-0``);
* ``chgnet:VERSION``: CHGNet (invariant; float32), VERSION one of :data:`CHGNET_BUNDLED` (default ``0.3.0``).

Rotated copies are evaluated in batches, in each model's own batch mode (:class:`PretrainedModel`).
Names whose weights the installed wheel lacks are refused rather than downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from symprobe.models.base import BatchPrediction, CalculatorModel, Prediction, stack_rotated_back, voigt_to_matrix
from symprobe.structures import rotate

SEVENN_BUNDLED = {"7net-0": "SEVENNET_0_11Jul2024", "7net-0_22may2024": "SEVENNET_0_22May2024", "7net-l3i5": "SEVENNET_l3i5"}
CHGNET_BUNDLED = ("0.3.0", "0.2.0", "r2scan")
CHGNET_SPECIES = frozenset(range(1, 95))  # CHGNet's atom embedding: H to Pu
VACUUM = 10.0  # Å of vacuum around an isolated structure given to CHGNet, which needs a cell
ATOMS_PER_PASS = 64  # rotated copies batched in one pass, up to this many atoms in all (at least one copy)


class PretrainedError(ValueError):
    """A pretrained model that cannot be loaded here; the message names the spec."""


class PretrainedModel(CalculatorModel):
    """A pretrained model with its ASE calculator, species, cutoff (Å) and precision (``dtype``). Rotated copies
    go through the network in the model's own batch mode (:meth:`_pass`), as many at a time as hold
    ``ATOMS_PER_PASS`` atoms: on a CPU that is 4–9x faster than one calculator call per copy for a small molecule,
    while for cells of tens of atoms batching gains nothing and costs memory (16 copies of 81 atoms: 16 GB for
    CHGNet), so they go one at a time. The results are those of the calculator, to float32 round-off."""

    def __init__(self, calculator, name: str, species: frozenset[int], cutoff: float):
        super().__init__(calculator, name=name, species=species)
        self.cutoff = float(cutoff)
        self.dtype = torch.float32

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        out = []
        for atoms, Rs in zip(structures, rotations):
            per_pass = max(1, ATOMS_PER_PASS // len(atoms))
            out.append(stack_rotated_back([p for start in range(0, len(Rs), per_pass)
                                           for p in self._pass([rotate(atoms, R) for R in Rs[start:start + per_pass]])], Rs))
        return out

    def _pass(self, copies: list[Atoms]) -> list[Prediction]:
        """Energy, forces and stress (periodic cells) of each copy, in one batched pass."""
        raise NotImplementedError


class SevenNetModel(PretrainedModel):
    """SevenNet: the copies' graphs batched with torch_geometric, as SevenNet trains."""

    def _pass(self, copies: list[Atoms]) -> list[Prediction]:
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        calculator = self.calculator
        graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, calculator.cutoff, with_shift=False)) for a in copies]
        calculator.model.set_is_batch_data(True)
        try:
            output = calculator.model(Batch.from_data_list(graphs).to(calculator.device))
        finally:
            calculator.model.set_is_batch_data(False)
        energies = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().astype(np.float64).reshape(-1)
        forces = output[KEY.PRED_FORCE].detach().cpu().numpy().astype(np.float64).reshape(len(copies), -1, 3)
        stress = -output[KEY.PRED_STRESS].detach().cpu().numpy().astype(np.float64).reshape(len(copies), 6)[:, [0, 1, 2, 4, 5, 3]]  # as its calculator
        return [Prediction(float(e), f, voigt_to_matrix(v) if a.pbc.all() else None) for e, f, v, a in zip(energies, forces, stress, copies)]


class CHGNetModel(PretrainedModel):
    """CHGNet: the copies' crystal graphs through ``predict_graph`` in batches. CHGNet needs a cell, so an isolated
    structure (no periodic direction) is placed in a cube about its centroid with ``VACUUM`` Å of vacuum plus the
    cutoff around it, the same cube for every orientation."""

    def _pass(self, copies: list[Atoms]) -> list[Prediction]:
        from ase.units import GPa
        from pymatgen.io.ase import AseAtomsAdaptor

        model = self.calculator.model
        graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(self._boxed(a))) for a in copies]
        outputs = model.predict_graph([g.to(self.calculator.device) for g in graphs], task="efs", batch_size=len(copies))
        outputs = outputs if isinstance(outputs, list) else [outputs]
        factor = [len(a) if model.is_intensive else 1 for a in copies]  # CHGNet's energy is per atom
        return [Prediction(float(o["e"]) * n, np.asarray(o["f"], dtype=np.float64),
                           np.asarray(o["s"], dtype=np.float64).reshape(3, 3) * GPa if a.pbc.all() else None)
                for o, n, a in zip(outputs, factor, copies)]

    def _boxed(self, atoms: Atoms) -> Atoms:
        if atoms.pbc.any():
            return atoms
        atoms = atoms.copy()
        centre = atoms.positions.mean(axis=0)
        half = float(np.linalg.norm(atoms.positions - centre, axis=1).max()) + VACUUM + self.cutoff
        atoms.set_cell(np.eye(3) * 2 * half)
        atoms.positions += half - centre
        return atoms


def _require(package: str, spec: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise PretrainedError(f"{spec!r}: the {package} package is not installed (pip install 'symprobe[pretrained]')")


def sevenn_model(name: str, device: torch.device, spec: str) -> PretrainedModel:
    """SevenNet ``name`` (a key of :data:`SEVENN_BUNDLED`) on ``device``."""
    _require("sevenn", spec)
    key = (name or "7net-0").lower()
    if key not in SEVENN_BUNDLED:
        raise PretrainedError(f"{spec!r}: not a SevenNet model whose weights ship in the sevenn wheel "
                              f"(available: {', '.join(SEVENN_BUNDLED)}; others would need a download)")
    from sevenn import _const
    from sevenn.calculator import SevenNetCalculator

    path = Path(getattr(_const, SEVENN_BUNDLED[key]))
    if not path.is_file():
        raise PretrainedError(f"{spec!r}: the installed sevenn lacks its weights at {path}")
    calculator = SevenNetCalculator(model=str(path), device=str(device))
    species = frozenset(int(z) for z in calculator.type_map)
    return SevenNetModel(calculator, name=f"sevenn:{key}", species=species, cutoff=calculator.cutoff)


def chgnet_model(version: str, device: torch.device, spec: str) -> PretrainedModel:
    """CHGNet ``version`` (one of :data:`CHGNET_BUNDLED`) on ``device``."""
    _require("chgnet", spec)
    version = version or "0.3.0"
    if version not in CHGNET_BUNDLED:
        raise PretrainedError(f"{spec!r}: not a CHGNet version whose weights ship in the chgnet wheel (available: {', '.join(CHGNET_BUNDLED)})")
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = CHGNet.load(model_name=version, use_device=str(device), verbose=False)
    calculator = CHGNetCalculator(model=model, use_device=str(device), on_isolated_atoms="ignore")
    return CHGNetModel(calculator, name=f"chgnet:{version}", species=CHGNET_SPECIES, cutoff=float(model.graph_converter.atom_graph_cutoff))
