"""
The paper's study, and what each finding means
==============================================

Langer, Pozdnyakov & Ceriotti (MLST 2024) asked whether the small rotational breaking of an unconstrained
model (PET, trained with augmentation) changes the physics of water. ``symprobe study`` repeats their gas,
liquid and ice experiments on *your* model and tests each of their findings with an error bar and a verdict::

    symprobe study --plan                     # each stage's time on this machine, from measured call costs
    symprobe study --quick --out study        # about 5 minutes on 2 cores (what `make demo` runs)
    symprobe study --budget-min 60 --out study60   # quick-mode runs that fill 60 minutes: tighter error bars

The full protocols take days on a CPU (:doc:`/results`), so this page reads the committed result of a
60-minute run on 2 cores, ``results/study_60min/results.json`` (:doc:`/results-schema`).
"""

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt

ROOT = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir()
)  # the repository
study = json.loads((ROOT / "results" / "study_60min" / "results.json").read_text())
print(
    study["mode"],
    "study of",
    study["model"]["spec"] if isinstance(study["model"], dict) else study["model"],
    f"in {study['timings_s']['total_this_run'] / 60:.0f} min; variants:",
    ", ".join(study["variants"]),
)

# %%
# The findings
# ------------
# Each finding is a claim of the paper, tested on this model; ``holds`` is true, false, or null when the
# run could not decide (for instance when its null comparison, two runs of the same variant, failed).
MEANING = {
    "gas_angular_momentum_drifts_raw": (
        "a non-invariant model exerts a net torque on an isolated molecule: "
        "its angular momentum is not conserved, it spins up or down by itself"
    ),
    "gas_angular_momentum_fixed_by_averaging": (
        "the grid average removes that torque to the grid's degree"
    ),
    "gas_mts_reproduces_averaged": (
        "MTS applies the average only every n steps, yet keeps L as well"
    ),
    "gas_orientation_not_flat_raw": (
        "the raw model prefers some orientations in the lab frame: a bias that "
        "simulations of isolated molecules or surfaces would see"
    ),
    "gas_orientation_flat_averaged": "averaging removes the orientational bias",
    "gas_orientation_energy_flat_averaged": (
        "the same, on the static energy profile (no sampling noise)"
    ),
    "gas_orientation_flat_mts": "MTS removes the bias as the full average does",
    "torque_falls_with_grid": (
        "larger grids remove more of the breaking, as their degree predicts"
    ),
    "liquid_indistinguishable": (
        "in the bulk liquid the breaking changes neither structure nor dynamics "
        "within the error bars: the liquid averages it out"
    ),
    "ice_relative_energies_unchanged": (
        "averaging does not change the energy ordering of the ice cells"
    ),
}
VERDICT = {True: "holds", False: "does not hold", None: "no verdict"}
for finding in study["findings"]:
    print(f"[{VERDICT[finding['holds']]}] {finding['claim']}")
    print(f"    means: {MEANING[finding['id']]}\n")

# %%
# Torque against grid size
# ------------------------
# The RMS torque on the molecule falls by orders of magnitude as the grid's degree grows
# (:doc:`/concepts/plot_1_quadratures`):
rows = study["experiments"]["gas_torque"]["rows"]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.errorbar(
    [r["evaluations"] for r in rows],
    [r["rms_torque"]["value"] for r in rows],
    yerr=[r["rms_torque"]["error"] for r in rows],
    fmt="o-",
)
for r in rows:
    point = (r["evaluations"], r["rms_torque"]["value"])
    ax.annotate(r["grid"], point, textcoords="offset points", xytext=(4, 4))
ax.set(xscale="log", yscale="log", title="gas-phase torque against grid size")
ax.set(xlabel="evaluations per step", ylabel="RMS torque (eV)")
fig.tight_layout()

# %%
# Where the hour went
# -------------------
timings = {
    k: v / 60 for k, v in study["timings_s"].items() if k != "total_this_run"
}
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.barh(list(timings), list(timings.values()))
ax.set(xlabel="minutes on 2 CPU cores", title="stages of the 60-minute study")
fig.tight_layout()

# %%
# The HTML report of the same run is ``results/study_60min/report.html``; every observable there has its
# error bar, and the verdicts are calibrated (:doc:`/concepts/plot_4_verdicts`).
