"""Farming audits and benches on Dask (``--cluster local:2``, loopback only): results equal to the serial run, a worker
killed mid-task, the client killed and the run resumed, bad input in one task, cluster specs; SLURM when it can start."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.build import molecule
from ase.io import write

from symprobe import cli
from symprobe.cluster import ClusterError, parse_cluster
from symprobe.structures import water_box

pytest.importorskip("distributed")

SRC = Path(__file__).resolve().parents[1] / "src"
FAST = ("--grid", "T+i", "--lmax", "1", "--convergence", "paper-0")
SLOW = ("--grid", "2i", "--lmax", "1", "--convergence", "none")  # about half a second per 81-atom box on one core


def assert_same(a, b, rel: float = 1e-12, path: str = "") -> None:
    """``a`` and ``b`` equal, floats to ``rel`` relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], rel, f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, rel, f"{path}[{k}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b, f"{path}: {a} != {b}"
    else:
        assert a == b, path


def _audit(*argv) -> int:
    return cli.main(["audit", "builtin:qtip4pf", *map(str, argv)])


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "tasks" / "log.jsonl").read_text().splitlines()]


def _started(out: Path) -> list[dict]:
    """Attempts running now, from the tasks' own attempt files."""
    running = []
    for path in (out / "tasks").glob("*/attempts.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
        latest = {r["attempt"]: r for r in lines}
        running += [r for r in latest.values() if r["end"] is None]
    return running


def _cli_process(*argv) -> subprocess.Popen:
    """``symprobe`` in its own session (so that its cluster can be killed with it), on this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "symprobe.cli", *map(str, argv)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, timeout: float = 60.0, what: str = ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def scheduler() -> str:
    """A running scheduler of two one-thread worker processes on the loopback interface, for ``--cluster tcp://…``."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("structures") / "boxes.extxyz"
    write(path, [water_box(3, seed=seed) for seed in range(4)])
    return path


@pytest.fixture(scope="module")
def serial_slow(boxes, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("serial")
    assert _audit(boxes, *SLOW, "--out", out) == 0
    return json.loads((out / "audit.json").read_text())


def test_cluster_specs_and_bad_specs_exit_2(tmp_path, capsys):
    assert parse_cluster("local:3").workers == 3 and parse_cluster("local:2", 4).threads_per_task == 4
    assert parse_cluster("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"
    yaml = tmp_path / "slurm.yaml"
    yaml.write_text("cores: 8\nmemory: 16GB\nwalltime: '02:00:00'\njobs: 4\nthreads_per_worker: 2\n"
                    "job_script_prologue: ['source ~/venv/bin/activate']\n")
    settings = parse_cluster(f"slurm:{yaml}").slurm
    assert (settings.cores, settings.jobs, settings.processes, settings.job_script_prologue) == (8, 4, 4, ("source ~/venv/bin/activate",))
    yaml.write_text("cores: 8\nmemory: lots\nwalltime: '02:00:00'\njobs: 4\n")
    for spec, message in [("local:0", "N ≥ 1"), ("loc:2", "not a cluster spec"), ("tcp://nohost", "tcp://HOST:PORT"),
                          (f"slurm:{yaml}", "memory must look like 16GB"), (f"slurm:{tmp_path}/none.yaml", "no such file")]:
        with pytest.raises(ClusterError, match=message):
            parse_cluster(spec)
    assert _audit(*FAST, "--out", tmp_path / "a", "--cluster", "local:zero") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symprobe audit: error: --cluster local:zero") and "\n" not in err
    assert not (tmp_path / "a").exists()  # refused before anything is written


def test_audit_and_bench_on_a_cluster_equal_the_serial_run(scheduler, tmp_path, capsys):
    assert _audit(*FAST, "--out", tmp_path / "serial") == 0
    assert _audit(*FAST, "--out", tmp_path / "farmed", "--cluster", scheduler) == 0
    serial, farmed = (json.loads((tmp_path / name / "audit.json").read_text()) for name in ("serial", "farmed"))
    assert_same(serial, farmed)
    log = _log(tmp_path / "farmed")
    assert sorted(r["task"] for r in log) == ["structure-000000", "structure-000001"] and {r["outcome"] for r in log} == {"done"}
    bench = ("bench", "builtin:qtip4pf", "--structures", "H2O,water liquid,CH4", "--grid", "T")
    assert cli.main([*bench, "--out", str(tmp_path / "bench-serial")]) == 0
    assert cli.main([*bench, "--out", str(tmp_path / "bench-farmed"), "--cluster", scheduler]) == 0
    serial, farmed = (json.loads((tmp_path / name / "bench.json").read_text()) for name in ("bench-serial", "bench-farmed"))
    assert serial.pop("seconds").keys() == farmed.pop("seconds").keys()
    assert_same(serial, farmed)
    assert [s["structure"] for s in farmed["models"]["builtin:qtip4pf"]["skipped"]] == ["CH4"]
    tasks = tmp_path / "bench-farmed" / "tasks"
    (tasks / "00-001" / "result.json").unlink()  # as if the run had stopped before this pair finished
    assert cli.main([*bench, "--out", str(tmp_path / "bench-farmed"), "--cluster", scheduler, "--resume"]) == 0
    attempts = {name: [r["attempt"] for r in _log(tmp_path / "bench-farmed") if r["task"] == name] for name in ("00-000", "00-001")}
    assert attempts == {"00-000": [1], "00-001": [1, 2]}  # only the unfinished pair ran again
    resumed = json.loads((tmp_path / "bench-farmed" / "bench.json").read_text())
    resumed.pop("seconds")
    assert_same(serial, resumed)


def test_the_client_killed_then_resume_reruns_only_unfinished_tasks(scheduler, boxes, serial_slow, tmp_path):
    out = tmp_path / "farmed"
    process = _cli_process("audit", "builtin:qtip4pf", boxes, *SLOW, "--out", out, "--cluster", "local:2")
    try:
        _wait_for(lambda: len(list(out.glob("tasks/*/result.json"))) >= 1, what="a finished task")
        os.killpg(process.pid, signal.SIGKILL)  # the client, its scheduler and its workers
        process.wait(timeout=30)
    finally:
        _stop(process)
    finished = {path.parent.name for path in out.glob("tasks/*/result.json")}
    assert 1 <= len(finished) < 4 and not (out / "audit.json").exists()
    kept = {name: (out / "tasks" / name / "result.json").read_bytes() for name in finished}
    assert _audit(boxes, *SLOW, "--out", out, "--cluster", scheduler) == 2  # a used directory needs --resume
    assert _audit(boxes, *SLOW, "--out", out, "--cluster", scheduler, "--resume") == 0
    assert_same(serial_slow, json.loads((out / "audit.json").read_text()))
    log = _log(out)
    for name in finished:
        assert [r["outcome"] for r in log if r["task"] == name] == ["done"]  # not rerun
        assert (out / "tasks" / name / "result.json").read_bytes() == kept[name]
    assert {r["task"] for r in log if r["outcome"] == "done"} == {f"structure-{k:06d}" for k in range(4)}


def test_bad_input_in_one_task_fails_the_run_naming_the_task(scheduler, tmp_path, capsys):
    path = tmp_path / "bad.extxyz"
    write(path, [molecule("H2O"), molecule("H2O")[[1, 0, 2]]])  # the second ordered H, O, H: refused by the model
    assert _audit(path, *FAST, "--out", tmp_path / "out", "--cluster", scheduler) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("symprobe audit: error: task structure-000001: ") and "ordered O, H, H" in err and "\n" not in err
    failed = [r for r in _log(tmp_path / "out") if r["task"] == "structure-000001"]
    assert len(failed) == 1 and failed[0]["outcome"].startswith("failed: ")  # not retried


def _stop(process: subprocess.Popen) -> None:
    """Kill ``process``'s session if anything of it is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


LIQUID = {"steps": 120, "equilibration_steps": 20, "grid": "2i", "n_inner": 10, "mts_grid": "T", "seed": 0,
          "trajectory_stride": 10, "n_blocks": 4, "progress": False}


def _checkpoint_step(path: Path) -> int:
    from symprobe.md.run import read_checkpoint

    try:
        return int(read_checkpoint(path)[1]["nsteps"])
    except (OSError, ValueError, KeyError):  # not there yet
        return -1


def test_liquid_replicas_on_a_cluster_equal_in_turn_and_a_killed_worker_resumes_from_its_checkpoint(scheduler, tmp_path):
    import threading

    from symprobe.cluster import parse_cluster
    from symprobe.study.liquid import liquid_runs
    from symprobe.study.tasks import StudyFarm, group_farm

    starts = {"raw": [water_box(2, seed=seed) for seed in range(2)]}

    def run(out: Path, cluster) -> dict:
        farm = StudyFarm("builtin:qtip4pf", cluster=cluster, progress=False)
        result = liquid_runs(None, starts, out, runner=group_farm(farm, out / "tasks", "liquid"), **LIQUID)
        result.pop("wall_s")
        return result

    in_turn = run(tmp_path / "in-turn", None)
    out, farmed = tmp_path / "farmed", {}
    thread = threading.Thread(target=lambda: farmed.update(run(out, parse_cluster(scheduler))))
    thread.start()
    try:
        def checkpointed() -> list[dict]:  # running replicas whose MD checkpoint is past step 0
            running = _started(out) if (out / "tasks").exists() else []
            return [r for r in running if _checkpoint_step(out / "tasks" / r["task"] / "checkpoint.npz") > 0]

        victim = _wait_for(checkpointed, what="a replica with an MD checkpoint")[0]
        os.kill(victim["pid"], signal.SIGKILL)
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive() and farmed
    assert_same(in_turn, farmed)
    attempts = [r for r in _log(out) if r["task"] == victim["task"]]
    assert [(r["attempt"], r["outcome"]) for r in attempts] == [(1, "lost"), (2, "done")]
    assert json.loads((out / "tasks" / victim["task"] / "result.json").read_text())["resumed_from_step"] > 0


def test_the_plan_on_n_workers_schedules_the_liquid_replicas_longest_first(tmp_path, capsys):
    from symprobe.md import load_model
    from symprobe.study.plan import (
        costs_key,
        estimate_on_workers,
        estimate_s,
        gas_task_s,
        liquid_task_s,
        make_plan,
        makespan_s,
    )

    assert makespan_s([3, 3, 2, 2, 2], 2) == 7 and makespan_s([3, 3, 2, 2, 2], 5) == 3 and makespan_s([4, 1], 1) == 5
    costs = json.loads((Path(__file__).resolve().parents[1] / "results" / "study_plan.json").read_text())["cpu"]["costs_s_per_call"]
    plan = make_plan(False, costs)
    tasks = liquid_task_s(plan, costs)
    assert len(tasks) == len(plan.liquid_variants) * plan.liquid_replicas
    assert math.isclose(sum(tasks), estimate_s(plan, costs)["liquid"], rel_tol=1e-12)  # one worker: the serial estimate
    assert estimate_on_workers(plan, costs, 1000)["liquid"] == max(tasks)  # enough workers: the longest replica
    model = load_model("builtin:water-pet")
    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "costs.json").write_text(json.dumps({"stage": "costs", "key": costs_key(model, "2i", 10), "seconds": 1.0,
                                                   "result": costs}))
    assert cli.main(["study", "--plan", "--workers", "32", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "plan.json").read_text())
    assert written["workers"] == 32 and written["on_workers_s"]["liquid"] == max(tasks)
    gas = gas_task_s(plan, estimate_s(plan, costs)["gas_nvt"], "gas_nvt")
    assert len(gas) == 5 and math.isclose(sum(gas), estimate_s(plan, costs)["gas_nvt"], rel_tol=1e-12)
    assert written["on_workers_s"]["gas_nvt"] == max(gas)  # a variant's molecules per task: the averaged one is longest
    assert written["on_workers_s"]["rotational_errors"] == written["estimate_s"]["rotational_errors"]  # not farmed
    assert "32 workers" in capsys.readouterr().out
    assert cli.main(["study", "--workers", "4", "--out", str(tmp_path)]) == 2  # --workers goes with --plan


def test_gas_batches_on_a_cluster_equal_in_turn(scheduler, tmp_path):
    from symprobe.study.gas import angular_momentum_runs
    from symprobe.study.tasks import StudyFarm, group_farm

    def run(out: Path, cluster) -> dict:
        farm = StudyFarm("builtin:qtip4pf", cluster=cluster, progress=False)
        return angular_momentum_runs(None, out, ("raw", "mts", "raw-repeat"), n_molecules=4, steps=40, grid="2i", n_inner=10,
                                     mts_grid="T", seed=0, trajectory_stride=4, progress=False,
                                     runner=group_farm(farm, out / "tasks", "gas_nve"))

    in_turn, farmed = run(tmp_path / "in-turn", None), run(tmp_path / "farmed", parse_cluster(scheduler))
    assert_same(in_turn, farmed)
    assert sorted(r["task"] for r in _log(tmp_path / "farmed")) == ["gas_nve-mts", "gas_nve-raw", "gas_nve-raw-repeat"]


def test_ice_cells_on_a_cluster_equal_the_in_process_ice_study(scheduler, tmp_path):
    from symprobe import so3
    from symprobe.audit import in_float64
    from symprobe.models.qtip4pf import qtip4pf
    from symprobe.study.ice import combined_cells, ice_study
    from symprobe.study.tasks import StudyFarm, ice_farm
    from symprobe.symmetrize import GridAverage

    cells = [water_box(2, seed=seed) for seed in range(3)]
    for k, atoms in enumerate(cells):
        atoms.info["name"] = f"box {k}"
    labels = ("0", "i")
    grids = [so3.paper_grid(label) for label in labels]
    model = qtip4pf()
    serial = ice_study(model, GridAverage(model, so3.paper_grid("2i")), cells, 0.5, 3, grids, in_float64(model))
    farm = StudyFarm("builtin:qtip4pf", cluster=parse_cluster(scheduler), progress=False)
    farmed = combined_cells(ice_farm(farm, tmp_path / "tasks", cells, "2i", 0.5, 3, labels), 0.5, 3, grids)
    assert_same(serial, farmed)


def test_a_free_worker_takes_the_next_task_while_another_runs_a_long_one(tmp_path):
    """Tasks go to workers as they free up, none queued at submission behind a long one, with or without Dask's work
    stealing (which left a 35-minute MD task queued behind another for 7 minutes while a worker sat idle): on local:2
    without stealing, a task of 6 s and three of 0.3 s, the short ones all end before the long one does."""
    import dask

    from symprobe.cluster.farm import Task, run_tasks
    from symprobe.testing.delayed import sleeping_task

    tasks = [Task("long", sleeping_task, (6.0,))] + [Task(f"short-{k}", sleeping_task, (0.3,)) for k in range(3)]
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        run_tasks(tasks, tmp_path, parse_cluster("local:2"), progress=False)
    ends = {task.id: json.loads((tmp_path / task.id / "attempts.jsonl").read_text().splitlines()[-1])["end"] for task in tasks}
    assert all(ends[f"short-{k}"] < ends["long"] for k in range(3)), ends
