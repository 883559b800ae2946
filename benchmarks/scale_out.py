"""Farming on Dask against one process, and faults: ``results/scale_out.json``.

    .venv/bin/python benchmarks/scale_out.py                 # the measurement (run it on an otherwise idle machine)
    .venv/bin/python benchmarks/scale_out.py --toy --out /tmp/s   # the same at toy size (seconds; what the test runs)

(a) overhead: ``symprobe audit`` of water boxes with ``--cluster local:2`` (2 workers × 1 torch thread) against the
    same audit in one process with 2 torch threads (equal cores), cluster start and stop included;
(b) 4 liquid replicas (raw, 64 H2O, the study's NVT) as 4 tasks on 2 workers × 1 thread, against the same 4 tasks in
    turn in one process with 2 threads, and against the study's default (the 4 replicas batched in one process, 2
    threads);
(c) faults: liquid-replica tasks on 2 workers while random running workers are SIGKILLed (``--kills`` times, at random
    moments); counts the tasks lost (no result) or counted twice (finished by two attempts), and checks the results
    against the tasks run in turn (goal: 0, 0, equal).
Wall times depend on the machine and its load: the JSON records the CPU count and the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = {  # (audit boxes, molecules per side of a box, audit grid, liquid steps, liquid model, fault tasks)
    "full": {"boxes": 8, "side": 4, "grid": "3i", "steps": 400, "model": "builtin:water-pet", "fault_tasks": 12, "fault_steps": 400},
    "toy": {"boxes": 2, "side": 2, "grid": "T", "steps": 20, "model": "builtin:qtip4pf", "fault_tasks": 4, "fault_steps": 60},
}


PART_KEYS = {"a": "overhead_audit", "b": "replicas_workers_vs_threads", "c": "worker_kills"}


def _size_name(args: argparse.Namespace) -> str:
    return "toy" if args.toy else "full"


def _timed(call) -> float:
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin


def audit_overhead(size: dict, work: Path) -> dict:
    """(a): wall time of the audit in one process with 2 threads and on ``local:2``, and the overhead."""
    from ase.io import write

    from symprobe.cli import main
    from symprobe.structures import water_box

    boxes = work / "boxes.extxyz"
    write(boxes, [water_box(size["side"], seed=seed) for seed in range(size["boxes"])])
    argv = ["audit", size["model"], str(boxes), "--grid", size["grid"], "--lmax", "1", "--convergence", "none"]
    torch.set_num_threads(2)
    serial = _timed(lambda: _check(main([*argv, "--out", str(work / "a-serial")])))
    farmed = _timed(lambda: _check(main([*argv, "--out", str(work / "a-farmed"), "--cluster", "local:2"])))
    same = json.loads((work / "a-serial" / "audit.json").read_text()) == json.loads((work / "a-farmed" / "audit.json").read_text())
    return {"structures": size["boxes"], "atoms_each": 3 * size["side"] ** 3, "grid": size["grid"], "model": size["model"],
            "one_process_2_threads_s": serial, "local_2_workers_1_thread_s": farmed, "overhead": farmed / serial - 1.0,
            "results_equal": same}


def _check(code: int) -> None:
    if code != 0:
        raise SystemExit(f"scale_out: a symprobe command failed with exit code {code}")


def _liquid(size: dict, steps: int, out: Path, cluster, farmed: bool = True, tasks: int = 4) -> dict:
    """The study's liquid runs of ``tasks`` raw replicas, as tasks (on ``cluster``, or in turn) or batched."""
    from symprobe.models.external import load_model
    from symprobe.structures import water_box
    from symprobe.study.liquid import liquid_runs
    from symprobe.study.tasks import StudyFarm, group_farm

    starts = {"raw": [water_box(size["side"], seed=seed) for seed in range(tasks)]}
    settings = {"steps": steps, "equilibration_steps": steps // 5, "grid": "2i", "n_inner": 10, "seed": 0,
                "trajectory_stride": max(1, steps // 40), "n_blocks": 4, "progress": False}
    if not farmed:
        return liquid_runs(load_model(size["model"]), starts, out, **settings)
    farm = StudyFarm(size["model"], cluster=cluster, progress=False)
    return liquid_runs(None, starts, out, runner=group_farm(farm, out / "tasks", "liquid"), **settings)


def replicas_workers_or_threads(size: dict, work: Path) -> dict:
    """(b): 4 replicas on 2 workers × 1 thread, in turn with 2 threads, batched with 2 threads."""
    from symprobe.cluster import parse_cluster

    torch.set_num_threads(2)
    in_turn = _timed(lambda: _liquid(size, size["steps"], work / "b-in-turn", None))
    batched = _timed(lambda: _liquid(size, size["steps"], work / "b-batched", None, farmed=False))
    workers = _timed(lambda: _liquid(size, size["steps"], work / "b-workers", parse_cluster("local:2")))
    return {"replicas": 4, "molecules": size["side"] ** 3, "steps": size["steps"], "model": size["model"],
            "workers_2x1_thread_s": workers, "one_process_2_threads_tasks_in_turn_s": in_turn,
            "one_process_2_threads_batched_s": batched}


def faults(size: dict, work: Path, kills: int, seed: int) -> dict:
    """(c): liquid-replica tasks on local:2 with ``kills`` random worker kills; lost and doubly counted tasks."""
    import dask

    from symprobe.cluster import parse_cluster
    from symprobe.cluster.log import read_attempts

    torch.set_num_threads(1)
    reference = _liquid(size, size["fault_steps"], work / "c-in-turn", None, tasks=size["fault_tasks"])
    out, result, landed = work / "c-farmed", {}, []
    rng = random.Random(seed)

    def kill_some() -> None:
        while len(landed) < kills and not result:
            running = [r for path in (out / "tasks").glob("*/attempts.jsonl")
                       for r in read_attempts(path.parent) if r["end"] is None]
            if running:
                victim = rng.choice(running)
                try:
                    os.kill(victim["pid"], signal.SIGKILL)
                    landed.append(victim["task"])
                except ProcessLookupError:
                    pass
                time.sleep(rng.uniform(0.5, 3.0))
            else:
                time.sleep(0.05)

    killer = threading.Thread(target=kill_some, daemon=True)
    with dask.config.set({"distributed.scheduler.allowed-failures": kills + 1}):  # a task may be hit by every kill
        killer.start()
        result.update(_liquid(size, size["fault_steps"], out, parse_cluster("local:2"), tasks=size["fault_tasks"]))
    killer.join(timeout=10)
    task_dirs = sorted(path for path in (out / "tasks").iterdir() if path.is_dir())
    finished = {path.name: [r for r in read_attempts(path) if r["outcome"] == "done"] for path in task_dirs}
    result.pop("wall_s"), reference.pop("wall_s")
    return {"tasks": size["fault_tasks"], "steps": size["fault_steps"], "kills_requested": kills, "kills_landed": len(landed),
            "tasks_hit": sorted(set(landed)), "lost": sum(1 for done in finished.values() if not done),
            "counted_twice": sum(1 for done in finished.values() if len(done) > 1),
            "attempts": sum(len(read_attempts(path)) for path in task_dirs), "results_equal_in_turn": result == reference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", action="store_true", help="toy sizes (seconds), for the test")
    parser.add_argument("--out", default=str(REPO / "results"), help="directory of scale_out.json (default results/)")
    parser.add_argument("--kills", type=int, default=None, help="random worker kills in (c) (default 20; toy 2)")
    parser.add_argument("--parts", default="a,b,c", help="which parts to run (comma-separated of a, b, c)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times and victims")
    args = parser.parse_args(argv)
    size = SIZES["toy" if args.toy else "full"]
    kills = args.kills if args.kills is not None else (2 if args.toy else 20)
    parts = {part.strip() for part in args.parts.split(",")}
    if not parts <= set(PART_KEYS):
        parser.error(f"--parts {args.parts}: parts are a, b and c")
    target = Path(args.out) / "scale_out.json"
    earlier = json.loads(target.read_text()) if target.exists() else {}
    document: dict = {"size": _size_name(args), "cpus": os.cpu_count(), "python": sys.version.split()[0], "torch": torch.__version__}
    if earlier.get("size") == document["size"]:  # a run of some parts keeps the other parts of an earlier run of the same size
        loads = {key: earlier[key] for key in ("load_average_at_start", "load_average_at_end") if key in earlier}  # older files: one load per run
        document.update({key: {**loads, **earlier[key]} for key in PART_KEYS.values() if key in earlier})
    measures = {"a": lambda work: audit_overhead(size, work), "b": lambda work: replicas_workers_or_threads(size, work),
                "c": lambda work: faults(size, work, kills, args.seed)}
    with tempfile.TemporaryDirectory(prefix="scale_out-") as tmp:
        for part in sorted(parts):
            load_at_start = os.getloadavg()
            measured = measures[part](Path(tmp))
            document[PART_KEYS[part]] = {**measured, "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}
    from symprobe.files import write_json

    path = write_json(target, document)
    print(json.dumps(document, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
