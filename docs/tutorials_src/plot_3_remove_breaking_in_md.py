"""
Remove the breaking in MD
=========================

Three ways to run dynamics with a model that is not exactly rotationally invariant, each a ``symmetrizer:``
of an MD config (:doc:`/reference/config`):

* ``{kind: grid, grid: T}``: the grid average E(x) = Σ_k w_k E(R_k x), exact to the grid's degree, at K
  evaluations per step;
* ``{kind: random}``: one random rotation per step; invariant on average, but it heats NVE runs;
* ``{kind: mts, grid: T, n_inner: 14}``: multiple time stepping, the raw model every inner step and the
  correction (average − raw) every ``n_inner`` steps, as in the paper.

The same config runs on three engines: ``engine: ase`` (ASE's integrators), ``engine: batched`` (symprobe's
batched engine: many replicas in one state) and ``engine: ipi`` (i-PI in-process, with its thermostats and
``<nmts>``). For LAMMPS, export the averaged model.
"""

# %%
# Four short NVE runs of one molecule
# -----------------------------------
# 0.5 fs steps of the bundled PET-style model, the same start for each symmetrizer (a few seconds each; the
# 10 ps runs behind :doc:`/results` are read below).
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from symprobe.md import read_log, run_md

workdir = Path(tempfile.mkdtemp())
symmetrizers = {
    "raw": {"kind": "none"},
    "averaged T": {"kind": "grid", "grid": "T"},
    "random": {"kind": "random"},
    "MTS T/14": {"kind": "mts", "grid": "T", "n_inner": 14},
}
logs = {}
for name, symmetrizer in symmetrizers.items():
    config = {
        "structure": "builtin:water-monomer",
        "model": "builtin:water-pet",
        "symmetrizer": symmetrizer,
        "ensemble": {"kind": "nve"},
        "initial_temperature_K": 300,
        "timestep_fs": 0.5,
        "steps": 280,
        "seed": 0,
        "engine": "ase",
        "output": {
            "directory": str(workdir / name.replace(" ", "_").replace("/", "-")),
            "log_stride": 14,
            "trajectory_stride": 140,
            "checkpoint_stride": 280,
            "progress": False,
        },
    }
    logs[name] = read_log(run_md(config))
for name, log in logs.items():
    change = 1000 * (log["conserved_eV"][-1] - log["conserved_eV"][0])
    print(f"{name:>10}: conserved energy changed by {change:+.2f} meV in 140 fs")

# %%
# The conserved energy along each run. A random rotation per step changes the model the integrator sees
# at every step, so the conserved energy jumps; MTS applies its correction every 14 steps (7 fs), and its
# error oscillates with that period; the grid average behaves like a smooth model. The drift each
# symmetrizer causes shows over picoseconds, below.
fig, ax = plt.subplots(figsize=(6, 3.2))
for (name, log), style in zip(logs.items(), ("-", "--", "-", "-")):
    energy = 1000 * (log["conserved_eV"] - log["conserved_eV"][0])
    ax.plot(log["time_fs"], energy, style, label=name)
ax.set(xlabel="time (fs)", ylabel="conserved energy − start (meV)")
ax.set_title("140 fs of NVE, one molecule")
ax.legend()
fig.tight_layout()

# %%
# Ten picoseconds, read from the committed result
# -----------------------------------------------
# ``python benchmarks/symmetrize_cost.py --parts d --long --systems molecule`` ran the same four for 10 ps
# (hours on 2 cores); its JSON holds the conserved-energy traces:
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir())
saved = json.loads((ROOT / "results/symmetrize_cost_molecule_10ps.json").read_text())
runs = saved["dynamics"]
fig, ax = plt.subplots(figsize=(8, 3.4))
for run in runs:
    trace = run["trace"]
    label = f"{run['strategy']}: {run['drift_meV_per_molecule_per_ps']:.2g} meV/ps"
    ax.plot(trace["time_ps"], trace["conserved_meV_per_molecule"], label=label)
ax.set(xlabel="time (ps)", ylabel="conserved energy (meV per molecule)", yscale="symlog")
ax.set_title("10 ps of NVE, one molecule")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="drift")
fig.tight_layout()

# %%
# In ASE directly
# ---------------
# Every symmetrizer is itself a model, and every model is an ASE calculator:
from symprobe import so3
from symprobe.models.external import load_model
from symprobe.structures import water_monomer
from symprobe.symmetrize import GridAverage

atoms = water_monomer()
atoms.calc = GridAverage(
    load_model("builtin:water-pet"), so3.smallest(3, improper=True)
).as_calculator()
print(
    f"averaged over O+i: E = {atoms.get_potential_energy():.6f} eV, |F| max = "
    f"{np.abs(atoms.get_forces()).max():.4f} eV/Å"
)

# %%
# In i-PI
# -------
# ``engine: ipi`` runs the same config inside i-PI (``<ffdirect>`` force fields calling symprobe models, i-PI's
# SVR, Langevin and GLE thermostats, its ``<nmts>`` multiple time stepping). The committed example:
print((ROOT / "configs" / "md_gas_mts_ipi.yaml").read_text())

# %%
# In LAMMPS, through the exported averaged model
# ----------------------------------------------
# ``symprobe export MODEL FILE --grid NAME`` writes a metatomic model that averages over the grid inside the
# TorchScript file, so any engine with a metatomic interface runs the symmetrized model without symprobe:
from symprobe.models.export import export_metatomic

path = export_metatomic(
    load_model("builtin:water-pet"), workdir / "water-pet-T.pt", grid="T"
)
averaged = load_model(f"metatomic:{path}")
print(
    path.name,
    f"{path.stat().st_size / 1e6:.1f} MB;",
    "E =",
    averaged.predict(water_monomer()).energy,
    "eV",
)

# %%
# and in a LAMMPS input built with metatomic support (``pair_style metatomic``)::
#
#    units metal
#    atom_style full
#    read_data water.data
#    pair_style metatomic water-pet-T.pt device cpu
#    pair_coeff * * 1 8
#    fix 1 all nve
#    run 1000
#
# The same file runs in i-PI's ``metatomic`` driver and in ASE's ``metatomic_ase.MetatomicCalculator``.
