"""Whether a model can be studied on water at all: it must take H and O, and its forces should be close to the
study's revPBE0-D3 reference (or, without the shared data, to those of water models on a water molecule)."""

from __future__ import annotations

import numpy as np

from symprobe.models.base import Model

WATER = frozenset({1, 8})
REFERENCE_FILE = "liquid/cheng2019_revPBE0-D3_liquid_test190.extxyz"
REFERENCE_CELLS = (0, 2, 3)  # 64 H2O each, intact molecules (each O with two H within 1.2 Å): rigid-water models take them
FORCE_MAE_LIMIT = 1.0  # eV/Å against the reference: a third of its mean |F| (3.0 eV/Å); water-pet 0.09, q-TIP4P/F 0.33, EMT 3.3
ENERGY_SPREAD_LIMIT = 0.23  # eV/H2O, offset removed: the reference's own spread of E/H2O over its 190 cells
MONOMER_FORCE_LIMIT = 3.0  # eV/Å on a water molecule at its experimental geometry: water-pet 0.74, q-TIP4P/F 1.25, EMT 8.6


def check_water_model(model: Model) -> list[str]:
    """Warnings (one line each) about ``model`` as a water model; raises ``ValueError`` when it cannot take water."""
    from symprobe.structures import water_monomer

    if model.species is not None and not WATER <= model.species:
        raise ValueError(f"model {model.name!r} covers the elements {_elements(model.species)}, but the study simulates "
                         "water: it needs H and O")
    try:
        monomer = model.predict(water_monomer())
    except Exception as error:  # a model of other elements raises whatever its code raises
        raise ValueError(f"model {model.name!r} cannot evaluate a water molecule ({type(error).__name__}: {error}); "
                         "the study simulates water and needs a model of H and O") from error
    reference = _reference_cells()
    if reference is None:
        largest = float(np.abs(monomer.forces).max())
        if largest > MONOMER_FORCE_LIMIT:
            return [(f"model {model.name!r}: forces on a water molecule at its experimental geometry reach {largest:.3g} eV/Å, "
                     f"where water models stay below {MONOMER_FORCE_LIMIT:g} eV/Å (q-TIP4P/F 1.25); is it a water model?")]
        return []
    errors = [(model.predict(cell), cell) for cell in reference]
    force_mae = float(np.mean([np.abs(p.forces - cell.get_forces()).mean() for p, cell in errors]))
    per_molecule = np.array([(p.energy - cell.get_potential_energy()) / (len(cell) // 3) for p, cell in errors])
    spread = float(np.abs(per_molecule - per_molecule.mean()).max())
    if force_mae > FORCE_MAE_LIMIT or spread > ENERGY_SPREAD_LIMIT:
        return [(f"model {model.name!r} is far from the study's revPBE0-D3 reference on {len(errors)} liquid cells: force MAE "
                 f"{force_mae:.3g} eV/Å (limit {FORCE_MAE_LIMIT:g}; the reference's mean |F| is 3.0), energy error "
                 f"{spread:.3g} eV/H2O after removing a mean offset of {per_molecule.mean():.4g} eV/H2O (limit "
                 f"{ENERGY_SPREAD_LIMIT:g}); the study's results would not describe water")]
    return []


def _elements(species: frozenset[int]) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[z] for z in sorted(species)) or "none"


def _reference_cells() -> list | None:
    """The reference cells with their DFT energies and forces, or None without the shared data."""
    from ase.io import read

    from symprobe.structures import shared_data_dir

    data = shared_data_dir()
    if data is None or not (data / REFERENCE_FILE).exists():
        return None
    return [read(data / REFERENCE_FILE, index=k) for k in REFERENCE_CELLS]
