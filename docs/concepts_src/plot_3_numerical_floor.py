"""
The numerical floor in float32 and float64
==========================================

An exactly invariant model, evaluated on a computer, still shows a rotational "error": round-off. Rotating a
structure changes the floating-point numbers that go in, so the energies of rotated copies differ by a few
units of the last place. This **numerical floor** is the smallest breaking an audit can resolve; anything
near it is not the model's. In float32 (relative precision ≈ 1e-7) it is large enough to hide a small learned
breaking, which is why audits run in float64 (``--dtype float64``, the default; :doc:`/conventions`).
"""

# %%
import matplotlib.pyplot as plt
import torch

from symprobe.audit import audit
from symprobe.models.external import load_model
from symprobe.structures import water_box

box = water_box(2)  # 8 molecules, periodic
floors = {}
for model in ("builtin:water-pet-twin", "builtin:water-pet"):
    for dtype in (torch.float32, torch.float64):
        report = audit(
            load_model(model, dtype=dtype), [box], grid="T", convergence_grids=[]
        )
        floors[(model.split(":")[1], str(dtype).split(".")[1])] = report.structures[
            0
        ].force_deviation_rms_meV_per_A
for key, value in floors.items():
    print(key, f"{value:.3g} meV/Å")

# %%
# The invariant twin's deviation is its floor, orders of magnitude lower in float64 than in float32 (printed
# above). The PET-style model's learned breaking stands far above either, so for it float32 would do; a model
# that learned its symmetry well needs float64 to be told apart from round-off.
fig, ax = plt.subplots(figsize=(6, 3.4))
labels = [f"{m}\n{d}" for m, d in floors]
colours = ["tab:blue", "tab:cyan", "tab:red", "tab:orange"]
ax.bar(labels, list(floors.values()), color=colours)
ax.set(yscale="log", ylabel="rotational force deviation (meV/Å)")
ax.set_title("8 water molecules, grid T")
ax.tick_params(axis="x", labelsize=8)
fig.tight_layout()
