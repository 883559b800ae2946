"""Pretrained universal potentials whose weights ship inside their PyPI wheels (the ``pretrained`` extra), so
they load without a network:

* ``sevenn:NAME``: SevenNet (e3nn-equivariant; float32), NAME one of :data:`SEVENN_BUNDLED` (default ``7net-0``);
* ``chgnet:VERSION``: CHGNet (invariant; float32), VERSION one of :data:`CHGNET_BUNDLED` (default ``0.3.0``).

Both are evaluated through their ASE calculators, one copy at a time (:class:`~symprobe.models.base.CalculatorModel`).
Names whose weights the installed wheel lacks are refused rather than downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from symprobe.models.base import CalculatorModel, Prediction

SEVENN_BUNDLED = {"7net-0": "SEVENNET_0_11Jul2024", "7net-0_22may2024": "SEVENNET_0_22May2024", "7net-l3i5": "SEVENNET_l3i5"}
CHGNET_BUNDLED = ("0.3.0", "0.2.0", "r2scan")
CHGNET_SPECIES = frozenset(range(1, 95))  # CHGNet's atom embedding: H to Pu
VACUUM = 10.0  # Å of vacuum around an isolated structure given to CHGNet, which needs a cell


class PretrainedError(ValueError):
    """A pretrained model that cannot be loaded here; the message names the spec."""


class PretrainedModel(CalculatorModel):
    """A pretrained model's ASE calculator with its species, cutoff (Å) and precision (``dtype``).

    ``box_isolated``: an isolated structure (no periodic direction) is evaluated in a cubic cell about its centroid
    with ``VACUUM`` Å of vacuum plus the cutoff around it, for calculators that need a cell."""

    def __init__(self, calculator, name: str, species: frozenset[int], cutoff: float, box_isolated: bool = False):
        super().__init__(calculator, name=name, species=species)
        self.cutoff = float(cutoff)
        self.dtype = torch.float32
        self.box_isolated = box_isolated

    def _predict(self, atoms: Atoms) -> Prediction:
        if self.box_isolated and not atoms.pbc.any():
            atoms = atoms.copy()  # a cube about the centroid, the same for every orientation of the structure
            centre = atoms.positions.mean(axis=0)
            half = float(np.linalg.norm(atoms.positions - centre, axis=1).max()) + VACUUM + self.cutoff
            atoms.set_cell(np.eye(3) * 2 * half)
            atoms.positions += half - centre
        return super()._predict(atoms)


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
    return PretrainedModel(calculator, name=f"sevenn:{key}", species=species, cutoff=calculator.cutoff)


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
    return PretrainedModel(calculator, name=f"chgnet:{version}", species=CHGNET_SPECIES,
                           cutoff=float(model.graph_converter.atom_graph_cutoff), box_isolated=True)
