"""
Running past one machine
========================

An audit, a bench and the paper's study are made of independent pieces: one structure, one model on one
structure, one liquid replica, one batch of gas molecules. ``--cluster`` farms them on Dask, and the merged
result equals the run in one process (same seeds)::

    symprobe audit MODEL structures.extxyz --cluster local:4            # 4 worker processes here
    symprobe bench MODEL --cluster tcp://10.0.0.5:8786                  # a running Dask scheduler
    symprobe study --cluster slurm:slurm.yaml --out study               # SLURM batch jobs (dask-jobqueue)

Each task writes its result into its own subdirectory of ``--out`` (``tasks/``), so a run stopped by a wall-time
limit continues with ``--resume`` and reruns only the unfinished tasks. This page runs a small audit both ways on
two local workers, shows the SLURM and i-PI socket parts as commands, and reads the measurements committed in
``results/``. The step-by-step SLURM guide is :doc:`/cluster`.
"""

# %%
# One audit, in one process and on two local workers
# --------------------------------------------------
# Four small water boxes, the bundled PET-style model and a 24-rotation grid: each box is one task. The audit in one
# process runs here through :func:`symprobe.cli.main`; the farmed one runs as a user types it, since Dask starts its
# worker processes from the ``symprobe`` command:
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from ase.io import write

import symprobe
from symprobe.cli import main
from symprobe.cluster import parse_cluster
from symprobe.structures import water_box

workdir = Path(tempfile.mkdtemp())
boxes = workdir / "boxes.extxyz"
write(boxes, [water_box(2, seed=seed) for seed in range(4)])
audit = ["audit", "builtin:water-pet", str(boxes), "--grid", "T+i", "--lmax", "1", "--convergence", "none"]
print("exit code", main([*audit, "--out", str(workdir / "serial")]))
environment = {**os.environ, "PYTHONPATH": str(Path(symprobe.__file__).parents[1])}  # the symprobe of this page
farmed = [sys.executable, "-m", "symprobe", *audit, "--cluster", "local:2", "--out", str(workdir / "farmed")]
print("exit code", subprocess.run(farmed, env=environment, capture_output=True, timeout=300, check=False).returncode)

# %%
# The two audits agree to round-off: each task loaded the model from its spec on its worker and audited its
# structure with the same seeds. The task log in ``tasks/log.jsonl`` records which worker ran what.
serial, farmed = (json.loads((workdir / name / "audit.json").read_text())["summary"] for name in ("serial", "farmed"))
for key in ("rotational_force_mae_meV_per_A", "rotational_energy_mae_meV_per_atom"):
    print(f"{key}: {serial[key]:.12g} (one process), {farmed[key]:.12g} (local:2)")
log = (workdir / "farmed" / "tasks" / "log.jsonl").read_text().splitlines()
print(len(log), "tasks:", ", ".join(sorted(json.loads(line)["task"] for line in log)))

# %%
# On a SLURM cluster
# ------------------
# A YAML file describes the batch jobs (every key: :doc:`/reference/config`; ``symprobe schema slurm`` prints its
# JSON schema):
slurm = """\
cores: 32              # CPUs per SLURM job
memory: 64GB
walltime: "24:00:00"
jobs: 4                # 4 jobs × 16 workers of 2 threads
threads_per_worker: 2
job_script_prologue:
  - source ~/symprobe-venv/bin/activate
"""
(workdir / "slurm.yaml").write_text(slurm)
settings = parse_cluster(f"slurm:{workdir / 'slurm.yaml'}").slurm
print(f"{settings.jobs} jobs of {settings.cores} CPUs, {settings.processes} workers each")

# %%
# Then one command from a login node plans the paper's protocols on those workers and runs them; after a wall-time
# kill the same command with ``--resume`` keeps every finished task::
#
#     symprobe study --plan --cluster slurm:slurm.yaml
#     symprobe study --cluster slurm:slurm.yaml --out study
#     symprobe study --cluster slurm:slurm.yaml --out study --resume
#
# Averaged MD over i-PI sockets
# -----------------------------
# The paper averaged over rotations by sending each rotated copy to one of many i-PI clients. With ``engine: ipi``
# and ``clients: N`` in an MD config, ``symprobe md`` starts i-PI with ``<ffrotations>`` around an ``<ffsocket>``
# and N ``symprobe serve`` clients, and stops them all at the end (``configs/md_liquid_ipi_clients.yaml``)::
#
#     symprobe md configs/md_liquid_ipi_clients.yaml
#     symprobe serve builtin:water-pet --structure builtin:water-box --unix NAME   # one client, started by hand
#
# What was measured
# -----------------
# ``benchmarks/scale_out.py`` timed the farming against one process on this machine's 2 cores, and
# ``benchmarks/ipi_sockets.py`` the socket clients against i-PI running the model in-process (``<ffdirect>``):
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir())  # the repository
scale = json.loads((ROOT / "results" / "scale_out.json").read_text())
sockets = json.loads((ROOT / "results" / "ipi_sockets.json").read_text())
audit, replicas = scale["overhead_audit"], scale["replicas_workers_vs_threads"]
print(f"audit of {audit['structures']} boxes: overhead of local:2 {100 * audit['overhead']:+.1f} %")
rates = {("i-PI in-process\n(<ffdirect>)" if row["clients"] == 0 else f"{row['clients']} clients, {row['transport']}"
          + (f",\nbatches of {row['batch_size']}" if row["batch_size"] > 1 else "")): row["steps_per_s"]
         for row in sockets["rows"]}

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
bars = {"2 workers × 1 thread": replicas["workers_2x1_thread_s"],
        "1 process × 2 threads,\nin turn": replicas["one_process_2_threads_tasks_in_turn_s"],
        "1 process × 2 threads,\nbatched": replicas["one_process_2_threads_batched_s"]}
left.barh(list(bars), list(bars.values()), color=["tab:blue", "tab:gray", "tab:gray"])
left.set(xlabel="wall time (s)", title=f"{replicas['replicas']} liquid replicas, {replicas['steps']} steps")
right.bar(list(rates), list(rates.values()), color=["tab:gray"] + ["tab:blue"] * (len(rates) - 1))
right.set(ylabel="MD steps per second", title=f"64 H2O, i-PI's {sockets['grid']} average")
right.tick_params(axis="x", labelsize=7)
fig.tight_layout()
