"""``cluster:`` in an MD config (``symprobe md``, engine batched): each replica a task on Dask (``local:N``, loopback
only), its files equal to the replicas stepped together here in float64; refusals; ``--resume`` keeps finished replicas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.io import read, write

from symprobe import cli
from symprobe.structures import water_box

pytest.importorskip("distributed")

REPLICAS = 3
CONFIG = {"structure": "box.extxyz", "model": "builtin:qtip4pf", "engine": "batched", "replicas": REPLICAS, "seed": 3,
          "ensemble": {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 50}, "initial_temperature_K": 300,
          "symmetrizer": {"kind": "random", "inversion": True},  # each replica's own rotations (seed + k), in its checkpoint
          "timestep_fs": 0.5, "steps": 40,
          "output": {"trajectory": "trajectory.traj", "trajectory_stride": 10, "log_stride": 5, "checkpoint_stride": 20,
                     "progress": False}}


def _config(directory: Path, name: str, **changes) -> Path:
    """A config file ``name.yaml`` in ``directory`` writing to ``directory/name``."""
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "output": {**CONFIG["output"], "directory": str(directory / name)}, **changes}))
    return path


def _md(*argv) -> int:
    return cli.main(["md", *map(str, argv)])


def _attempts(out: Path) -> dict[str, list[tuple[int, str]]]:
    """(attempt, outcome) of every replica's task, from the run's task log."""
    attempts: dict[str, list[tuple[int, str]]] = {}
    for line in (out / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        attempts.setdefault(record["task"], []).append((record["attempt"], record["outcome"]))
    return {task: sorted(records) for task, records in attempts.items()}


def assert_same_replicas(a: Path, b: Path, rel: float = 1e-12, steps: int = CONFIG["steps"]) -> None:
    """Every replica's log and trajectory (positions, momenta, energy, forces) of ``steps`` in run directories ``a``
    and ``b`` equal, each quantity to ``rel`` of its largest magnitude."""
    def close(x, y, what: str) -> None:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        assert x.shape == y.shape, what
        np.testing.assert_allclose(x, y, rtol=rel, atol=rel * max(np.abs(x).max(), 1e-300), err_msg=what)

    for k in range(REPLICAS):
        logs = [np.loadtxt(run / f"replica-{k}" / "log.csv", delimiter=",", skiprows=1) for run in (a, b)]
        close(*logs, f"replica-{k} log")
        assert len(logs[0]) == steps // CONFIG["output"]["log_stride"] + 1
        frames = [read(run / f"replica-{k}" / "trajectory.traj", index=":") for run in (a, b)]
        assert len(frames[0]) == len(frames[1]) == steps // CONFIG["output"]["trajectory_stride"] + 1
        for name, value in (("positions", lambda f: f.positions), ("momenta", lambda f: f.get_momenta()),
                            ("energy", lambda f: f.get_potential_energy()), ("forces", lambda f: f.get_forces())):
            close([value(f) for f in frames[0]], [value(f) for f in frames[1]], f"replica-{k} {name}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The config's replicas stepped together here (``serial``) and each a task on ``local:2`` (``farmed``)."""
    directory = tmp_path_factory.mktemp("md-cluster")
    write(directory / "box.extxyz", water_box(2, seed=0))  # 8 H2O, periodic
    assert _md(_config(directory, "serial")) == 0
    assert _md(_config(directory, "farmed", cluster="local:2")) == 0
    return directory


def test_replicas_on_a_cluster_equal_the_replicas_stepped_together(runs):
    from symprobe.md import load_config, run_summary

    assert_same_replicas(runs / "serial", runs / "farmed")
    assert _attempts(runs / "farmed") == {f"replica-{k}": [(1, "done")] for k in range(REPLICAS)}
    for k in range(REPLICAS):
        result = json.loads((runs / "farmed" / f"replica-{k}" / "result.json").read_text())
        assert result == {"replica": k, "seed": CONFIG["seed"] + k, "steps": CONFIG["steps"], "resumed_from_step": 0}
        assert (runs / "farmed" / f"replica-{k}" / "checkpoint.npz").exists()
    assert not (runs / "farmed" / "checkpoint.npz").exists()  # each replica checkpoints in its own directory
    assert f"every attempt of its task in {runs / 'farmed' / 'log.jsonl'}" in run_summary(load_config(runs / "farmed.yaml"))


def test_resume_keeps_the_finished_replicas_and_continues_the_others_from_their_checkpoints(runs):
    from symprobe.md import load_config, load_model, load_structure
    from symprobe.md.run import replica_task, run_identity

    out, config = runs / "farmed", load_config(runs / "farmed.yaml")
    atoms = load_structure(config.structure)
    # replica 2 as a task killed after its step-20 checkpoint: its files up to there, no result
    for name in ("result.json", "checkpoint.npz", "log.csv", "trajectory.traj"):
        (out / "replica-2" / name).unlink()
    identity = run_identity(config, atoms, load_model(config.model))
    replica_task(out / "replica-2", config.model_copy(update={"steps": 20}), atoms, 2, identity)
    assert _md(runs / "farmed.yaml", "--resume", "--cluster", "local:1") == 0  # another cluster may resume
    assert _attempts(out) == {"replica-0": [(1, "done")], "replica-1": [(1, "done")],
                              "replica-2": [(1, "done"), (2, "done")]}  # replicas 0 and 1 not run again
    assert json.loads((out / "replica-2" / "result.json").read_text())["resumed_from_step"] == 20
    assert_same_replicas(runs / "serial", out)


def test_resume_with_more_steps_lengthens_every_replica_and_fewer_or_no_resume_are_refused(runs, capsys):
    """40 → 60 steps with --resume: each finished replica continues from its step-40 checkpoint, and the run equals the
    replicas stepped together for 60 steps; 20 steps, or a second run without --resume, exit 2 with one line."""
    assert _md(_config(runs, "serial-60", steps=60)) == 0
    longer = _config(runs, "farmed", cluster="local:2", steps=60)
    assert _md(longer, "--resume") == 0
    assert all(json.loads((runs / "farmed" / f"replica-{k}" / "result.json").read_text())["resumed_from_step"] == 40
               for k in range(REPLICAS))
    assert_same_replicas(runs / "serial-60", runs / "farmed", steps=60)
    assert _md(_config(runs, "farmed", cluster="local:2", steps=20), "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("replica-0: the run already made 60 steps, more than the 20 asked for; ask for at least 60") and "\n" not in err
    assert _md(longer) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize("changes, message", [
    ({"cluster": "loc:2"}, "cluster: 'loc:2': not a cluster spec"),
    ({"cluster": "local:0"}, "cluster: local:0: local:N needs a number of workers N ≥ 1"),
    ({"cluster": "slurm:none.yaml"}, "cluster: slurm:{directory}/none.yaml: no such file"),  # beside the config
    ({"cluster": "local:2", "engine": "ase", "replicas": 1},
     "cluster: local:2 runs the replicas of engine batched as tasks; it needs engine batched and replicas ≥ 2 (engine ase, replicas 1)"),
    ({"cluster": "local:2", "replicas": 1}, "it needs engine batched and replicas ≥ 2 (engine batched, replicas 1)"),
    ({"threads_per_worker": 2}, "threads_per_worker: the torch threads of each replica's task on a cluster; set cluster too"),
])
def test_a_bad_cluster_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, changes, message):
    assert _md(_config(tmp_path, "run", **changes)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symprobe md: error: ") and message.format(directory=tmp_path) in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()


def test_the_command_line_cluster_overrides_the_config_and_is_checked(tmp_path, capsys):
    config = _config(tmp_path, "run", cluster="local:2")
    assert _md(config, "--cluster", "tcp://nohost") == 2
    assert "cluster: tcp://nohost: a scheduler address is tcp://HOST:PORT" in capsys.readouterr().err
    assert _md(config, "--threads-per-worker", "0") == 2
    assert "threads_per_worker must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_slurm_file_is_read_beside_the_config_and_the_command_line_one_from_here(tmp_path, monkeypatch):
    from symprobe.md import load_config

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "slurm.yaml").write_text("cores: 8\nmemory: 16GB\nwalltime: '02:00:00'\njobs: 3\nthreads_per_worker: 4\n")
    config = load_config(_config(tmp_path, "run", cluster="slurm:jobs/slurm.yaml"))
    assert config.cluster == f"slurm:{tmp_path}/jobs/slurm.yaml"
    assert (config.cluster_spec.slurm.jobs, config.cluster_spec.threads_per_task) == (3, 4)
    monkeypatch.chdir(tmp_path / "jobs")
    assert load_config(_config(tmp_path, "run"), cluster="slurm:slurm.yaml").cluster_spec.slurm.jobs == 3
    assert load_config(_config(tmp_path, "run"), cluster="local:4", threads_per_worker=2).cluster_spec.threads_per_task == 2
