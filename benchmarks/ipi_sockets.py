"""Issue 27 (3): averaged MD on i-PI with socket clients against i-PI in-process, at equal cores.

The liquid (64 water molecules, ``builtin:water-box``) with the bundled PET-style model (``builtin:water-pet``)
averaged over the paper's 2i grid (36 rotated copies per step), NVT (SVR, 300 K), 0.5 fs, stepped by i-PI:

- ``ffdirect``: in-process ``<ffdirect>`` with symprobe's grid average (the 36 copies in one model call), torch
  on ``--cores`` threads;
- ``unix`` and ``inet``: ``<ffrotations>`` over an ``<ffsocket>`` (UNIX socket, then 127.0.0.1) served by 2
  ``symprobe serve`` clients of ``--cores``/2 threads each, one request per rotated copy;
- ``unix-batched``: ``unix`` with i-PI's socket batching, 18 copies per message (one message per client per
  step): the row that decides :data:`symprobe.md.ipi.SOCKET_BATCH_SIZE` (1 unless batching pays).

The benchmark pins itself (and so its clients) to ``--cores`` cores. Steps per second are timed after warm-up
steps; the start (clients loading the model, the first forces) is timed apart. Each row records the load
average before and after, and the CPU seconds per step of the i-PI process itself (its polling threads).
Measure on an otherwise idle machine:

    python benchmarks/ipi_sockets.py --out results/ipi_sockets.json
    python benchmarks/ipi_sockets.py --toy --out /tmp/ipi_sockets_toy.json   # 8 molecules, 2 steps: it runs
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from symprobe.files import write_json
from symprobe.md import ipi
from symprobe.md.config import validate_config
from symprobe.md.ipi_clients import ClientPool, threads_per_client
from symprobe.md.run import build_potential, load_model, load_structure, thermalized
from symprobe.structures import water_box

VARIANTS = {  # name: (clients, transport, structures per socket message)
    "ffdirect": (0, "unix", 1),
    "unix": (2, "unix", 1),
    "inet": (2, "inet", 1),
    "unix-batched": (2, "unix", 18),
}
MODEL, GRID = "builtin:water-pet", "2i"


def config(structure: Any, clients: int, transport: str) -> dict[str, Any]:
    run = {"structure": structure, "model": MODEL, "symmetrizer": {"kind": "grid", "grid": GRID},
           "ensemble": {"kind": "nvt-bussi", "temperature_K": 300, "tau_fs": 10}, "initial_temperature_K": 300,
           "timestep_fs": 0.5, "steps": 1, "seed": 0, "engine": "ipi", "output": {"progress": False}}
    return {**run, "clients": clients, "transport": transport} if clients else run


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, structure: Any, warmup: int, steps: int) -> dict[str, Any]:
    """One variant: start time, steps per second and the i-PI process's CPU seconds per step."""
    clients, transport, batch = VARIANTS[name]
    run = validate_config(config(structure, clients, transport))
    model = load_model(run.model, run.device)
    potential, slow = build_potential(model, run)
    atoms = thermalized(load_structure(run.structure), run.initial_temperature_K, run.seed)
    threads = threads_per_client(clients) if clients else torch.get_num_threads()
    pool = ClientPool(MODEL, atoms, clients, transport, threads=threads) if clients else None
    row: dict[str, Any] = {"variant": name, "clients": clients, "transport": transport if clients else None,
                           "threads_each": threads, "batch_size": batch if clients else None, "warmup_steps": warmup,
                           "steps": steps, "load_before": os.getloadavg()}
    ipi.SOCKET_BATCH_SIZE = batch
    begin = time.perf_counter()
    dyn = ipi.IpiDynamics(atoms, run, potential, slow, clients=pool)
    try:
        row["start_s"] = time.perf_counter() - begin
        for _ in range(warmup):
            dyn.step()
        begin, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(steps):
            dyn.step()
        wall = time.perf_counter() - begin
        row["steps_per_s"] = steps / wall
        row["ipi_process_cpu_s_per_step"] = (cpu_seconds() - cpu) / steps
    finally:
        dyn.close()
        ipi.SOCKET_BATCH_SIZE = 1
    row["load_after"] = os.getloadavg()
    print(f"{name:>13}: {row['steps_per_s']:.3g} steps/s (start {row['start_s']:.1f} s, load {row['load_before'][0]:.2f} "
          f"→ {row['load_after'][0]:.2f})", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/ipi_sockets.json"))
    parser.add_argument("--toy", action="store_true", help="8 molecules, 1 warm-up and 2 timed steps: checks that it runs")
    parser.add_argument("--cores", type=int, default=2, help="cores the benchmark and its clients may use (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= args.cores <= len(available):
        parser.error(f"--cores must be between 1 and {len(available)}, got {args.cores}")
    os.sched_setaffinity(0, available[: args.cores])
    torch.set_num_threads(args.cores)
    structure = water_box(2, seed=0) if args.toy else "builtin:water-box"
    warmup, steps = (1, 2) if args.toy else (2, args.steps)
    rows = [measure(name, structure, warmup, steps) for name in variants]
    rates = {row["variant"]: row["steps_per_s"] for row in rows}
    ratios = {f"{name}/ffdirect": rates[name] / rates["ffdirect"] for name in rates if "ffdirect" in rates and name != "ffdirect"}
    result = {"toy": args.toy, "structure": "water_box(2): 8 molecules" if args.toy else "builtin:water-box: 64 molecules",
              "model": MODEL, "grid": GRID, "cores": args.cores, "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__, "ipi": metadata.version("ipi"), "rows": rows, "speed_ratios": ratios}
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
