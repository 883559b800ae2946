"""
Your own system: a molecule, a liquid or solid, a crystal
==========================================================

The paper asked whether symmetry breaking changes the physics of water. ``symprobe study`` asks the same of your
system, with the same variants (raw, averaged over a grid, a random rotation per step, multiple time stepping), the
same calibrated comparisons and a report worded for your system::

    symprobe study --molecule ethanol.xyz --model MODEL --budget-min 10    # orientation bias, angular momentum
    symprobe study --bulk electrolyte.extxyz --model MODEL --budget-min 10 # g(r), MSD and D, molecular axes, density
    symprobe study --crystal quartz.cif --model MODEL --budget-min 10      # space group, breaking, Γ splittings

The three can be combined in one command; the report then has a section per system, and the null comparisons of all
of them form one Holm-corrected calibration gate. Elements the model does not know, and a bulk or crystal without a
cell, are refused before anything runs (one line, exit code 2). One page per kind: :doc:`/systems-molecule`,
:doc:`/systems-bulk`, :doc:`/systems-crystal`.

This page runs the crystal study on a model with a known answer, in seconds, and reads the committed bulk results.
"""

# %%
# A crystal with a known answer
# -----------------------------
# hcp magnesium made of a Morse pair potential plus a lab-frame term of angular degree ℓ = 2 (0.02 eV), turned away
# from the lab axes. The 2i grid is exact to degree 2, so its average removes the term; so does the average over the
# crystal's own point group (6/mmm, found by spglib). The raw model should relax the crystal off P6₃/mmc.
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from ase.build import bulk

from symprobe.study.crystal import crystal_figure, run_crystal
from symprobe.testing.pair import known_answer_pair_model

model = known_answer_pair_model(degree=2, amplitude=0.02, cutoff=3.3)
crystal = bulk("Mg", "hcp", a=2.6, c=2.6 * 1.633)
crystal.rotate(17, "x", rotate_cell=True)
crystal.rotate(33, "z", rotate_cell=True)
result = run_crystal(model, crystal, Path(tempfile.mkdtemp()), budget_s=60.0, progress=False)
experiment = result["experiments"]["crystal"]
for name, row in experiment["variants"].items():
    groups = ", ".join(f"{row['space_groups'][k]} at {v:g} Å" for k, v in experiment["tolerances_A"].items())
    print(f"{name:12s} displacement {row['displacement_A']:.2g} Å, strain {row['strain']:.2g}: {groups}")

# %%
# The findings say the same in words, for this crystal:
for finding in result["findings"]:
    print("holds" if finding["holds"] else "does not hold" if finding["holds"] is False else "not tested", "|", finding["claim"])

# %%
# The report's figure: the breaking displacement of each variant against spglib's tolerances, and the splitting of
# the E2g pair at Γ that the group makes degenerate.
crystal_figure(experiment)
plt.show()

# %%
# A molecular gas, from the committed results
# -------------------------------------------
# ``benchmarks/study_bulk.py`` ran the bulk study on an N2 gas with a lab-frame ℓ = 2 term (5 replicas per set and a
# second raw set as the null comparison). Its findings, from ``results/study_bulk/n2_gas_l2.json``:
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir())  # the repository
document = json.loads((ROOT / "results" / "study_bulk" / "n2_gas_l2.json").read_text())
print("calibration gate passed:", document["calibration_gate"]["passed"])
for finding in document["findings"]:
    print("holds" if finding["holds"] else "does not hold" if finding["holds"] is False else "not tested", "|", finding["claim"])
