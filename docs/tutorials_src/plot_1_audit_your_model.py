"""
Audit your model
================

``symprobe audit`` asks one question of a model: how far are its energies and forces from those of the same
structure rotated? It evaluates the structure under every rotation of a quadrature (a *grid*), averages the
back-rotated predictions, and reports how far the raw prediction is from that average, with the λ spectrum of
the energy over rotations and the convergence with grid size.

A model is given as a *spec*. This tutorial audits the same water molecule through four kinds of spec:

* an ASE calculator, any object with ``get_potential_energy``;
* a metatomic file (``metatomic:FILE.pt``), as exported by metatrain or ``symprobe export``;
* a pretrained universal potential (``sevenn:7net-0``, ``chgnet:0.3.0``);
* ``module:attribute`` or ``FILE.py:attribute``: your own calculator, factory or symprobe ``Model``.
"""

# %%
# An ASE calculator
# -----------------
# ASE's TIP3P is rigorously invariant, so its rotational error is round-off: the *numerical floor*
# (:doc:`/concepts/plot_3_numerical_floor`). :class:`~symprobe.models.CalculatorModel` wraps any ASE calculator;
# we audit a water dimer with the octahedral grid plus inversion (48 rotations).
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from ase.calculators.tip3p import TIP3P

from symprobe.audit import audit
from symprobe.models import CalculatorModel
from symprobe.models.external import load_model
from symprobe.structures import water_monomer

molecule = water_monomer()
dimer = molecule.copy()
dimer.extend(molecule.copy())
dimer.positions[3:] += [2.9, 0.3, 0.1]  # Å
tip3p = CalculatorModel(TIP3P(rc=6.0))
report = audit(tip3p, [dimer], grid="O+i", convergence_grids=[])
floor = report.structures[0].force_deviation_rms_meV_per_A
print(f"TIP3P: force deviation {floor:.2e} meV/Å")

# %%
# The bundled PET-style model
# ---------------------------
# ``builtin:water-pet`` learns symmetry from augmentation only. Audited in float64, so that what we see is the
# model's own breaking and not round-off:
import torch

pet = load_model("builtin:water-pet", dtype=torch.float64)
report = audit(pet, [molecule], grid="O+i", convergence_grids=["T", "O", "O+i"])
result = report.structures[0]
print(f"water-pet: energy deviation {result.energy_deviation_meV:.3f} meV")
print(f"force deviation {result.force_deviation_rms_meV_per_A:.3f} meV/Å (RMS)")
print(f"net torque {result.torque_raw_eV:.2e} eV")

# %%
# The energy over the 48 rotations, and the λ spectrum of that function of the rotation: λ = 0 (even) is the
# invariant part, everything else is breaking.
spectrum = result.spectrum
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
energies = 1000 * (np.array(result.energies_eV) - np.mean(result.energies_eV))  # meV
left.plot(energies, "o", ms=4)
left.set(xlabel="rotation of the O+i grid", ylabel="E(R x) − mean (meV)")
left.set_title("energy over rotations")
lam = np.arange(len(spectrum.power_eV2))
right.bar(lam - 0.2, spectrum.power_even_eV2, width=0.4, label="even")
right.bar(lam + 0.2, spectrum.power_odd_eV2, width=0.4, label="odd")
right.set(
    yscale="log", xlabel="λ", ylabel="power (eV²)", title="λ spectrum", xticks=lam
)
right.legend()
fig.tight_layout()

# %%
# A metatomic file
# ----------------
# Any metatomic model loads as ``metatomic:FILE.pt``. Here we export the bundled model ourselves, as
# ``symprobe export builtin:water-pet water-pet.pt`` would, and audit the file; the result equals the
# in-memory model's.
from symprobe.models.export import export_metatomic

workdir = Path(tempfile.mkdtemp())
export_metatomic(load_model("builtin:water-pet"), workdir / "water-pet.pt")
exported = load_model(f"metatomic:{workdir / 'water-pet.pt'}", dtype=torch.float64)
from_file = audit(exported, [molecule], grid="O+i", convergence_grids=[])
print(f"metatomic file: {from_file.structures[0].energy_deviation_meV:.3f} meV")

# %%
# ``module:attribute``
# --------------------
# Your own code needs no plug-in: name an importable attribute. A module in the current directory is found
# without ``PYTHONPATH``, and ``FILE.py:attribute`` names a file directly. The attribute may be a calculator,
# a function returning one, or a symprobe ``Model``:
(workdir / "mycalc.py").write_text(
    "from ase.calculators.tip3p import TIP3P\n\n\n"
    "def make_calc():\n"
    "    return TIP3P(rc=4.0)\n"
)
mine = load_model(f"{workdir / 'mycalc.py'}:make_calc")
print(type(mine).__name__, "from", f"{workdir.name}/mycalc.py:make_calc")

# %%
# Pretrained universal potentials
# -------------------------------
# With the ``pretrained`` extra (``pip install symprobe[pretrained]``; weights ship in the wheels, nothing is
# downloaded), SevenNet and CHGNet are specs like any other. On the command line::
#
#    symprobe audit sevenn:7net-0 structures.extxyz --grid O+i --out audit-7net
#    symprobe audit chgnet:0.3.0 structures.extxyz --grid O+i --out audit-chgnet
#
# ``symprobe audit`` writes ``audit.json`` (:doc:`/audit-schema`) and the figures, prints the grids, the
# evaluations per structure and an estimated time first, and resumes an interrupted audit with ``--resume``.
