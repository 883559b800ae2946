"""
Quadratures and their degree
============================

An average over rotations, Ē(x) = ∫ E(R x) dR, is computed as a weighted sum over a finite set of rotations,
a *quadrature* (a grid): Σ_k w_k E(R_k x). A quadrature has a **degree** L when it integrates exactly every
Wigner-D function of degree λ ≤ L; the symmetrized model is then exact for every part of the model's angular
content up to λ = L, and what remains is the content above L. symprobe proves the degree of every grid by
integrating the Wigner-D matrices (``so3.measured_degree``); ``symprobe grids`` lists them.

Families: Lebedev × in-plane (the paper's grids ``paper-2``, ``paper-2i``, ``paper-3``, ``paper-3i``),
Gauss–Legendre Euler, the point groups T, O, I (12, 24 and 60 rotations, degrees 2, 3 and 5), random Haar
rotations (no degree); ``+i`` adds inversion (twice the evaluations, the parity-odd part removed).
"""

# %%
import json
from operator import itemgetter
from pathlib import Path

import matplotlib.pyplot as plt

from symprobe import so3

names = ("identity", "T", "T+i", "O", "O+i", "I", "paper-2", "paper-2i", "paper-3i")
for name in names:
    q = so3.get(name)
    degree = so3.measured_degree(q, lmax=8)
    print(f"{name:>9}: {len(q.weights):4d} rotations, proven degree {degree}")

# %%
# Error against evaluations
# -------------------------
# ``benchmarks/symmetrize_cost.py`` part b measured, for the bundled PET-style model, the remaining rotational
# force error of each rule against a much larger reference rule, on a molecule and on liquid cells
# (``results/symmetrize_cost_b.json``). More evaluations of a rule of higher degree give less error, but
# the families differ: the point groups reach a degree with the fewest rotations.
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir())
errors = json.loads((ROOT / "results/symmetrize_cost_b.json").read_text())["errors"]
evaluations = itemgetter("evaluations")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, structures in zip(axes, sorted({e["structures"] for e in errors})):
    for family in sorted({e["family"] for e in errors}):
        key = (structures, family)
        ours = [e for e in errors if (e["structures"], e["family"]) == key]
        ours = sorted([e for e in ours if e["evaluations"] > 1], key=evaluations)
        x, y = [e["evaluations"] for e in ours], [e["force_meV_per_A"] for e in ours]
        ax.plot(x, y, "o-", label=family, ms=4)
    ax.set(xscale="log", yscale="log", title=structures)
    ax.set(xlabel="evaluations per structure", ylabel="force error (meV/Å)")
    ax.legend(fontsize=8)
fig.tight_layout()
