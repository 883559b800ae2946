"""Fault injection: signals in the middle of a run, used and unwritable output directories, a full disk, changed
configs on resume and bad input. Nothing computed is lost, nothing is silently overwritten, every message is
one line with a distinct exit code (docs/conventions.md, "Exit codes")."""

from __future__ import annotations

import errno
import filecmp
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from symprobe.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def md_config(directory: Path, steps: int, engine: str = "ase", **change) -> str:
    """A seeded Langevin run of the water monomer on q-TIP4P/F (about 1.5 ms a step) as YAML."""
    config = {"structure": "builtin:water-monomer", "model": "builtin:qtip4pf", "timestep_fs": 0.25, "steps": steps,
              "seed": 3, "initial_temperature_K": 300, "engine": engine,
              "ensemble": "{kind: nvt-langevin, temperature_K: 300, tau_fs: 20}", **change}
    lines = [f"{key}: {value}" for key, value in config.items()]
    lines.append(f"output: {{directory: {directory}, progress: false, log_stride: 1, trajectory_stride: 25, "
                 "checkpoint_stride: 100}")
    return "\n".join(lines) + "\n"


def write_config(path: Path, *args, **kwargs) -> Path:
    path.write_text(md_config(*args, **kwargs))
    return path


def one_line_error(err: str, command: str) -> str:
    """The single message line of a failed command: the last on stderr, after progress bars at most; no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    messages = [line for line in lines if line.startswith("symprobe ")]
    assert len(messages) == 1 and lines[-1] == messages[0] and messages[0].startswith(f"symprobe {command}: "), err
    return messages[0]


def same_run_files(a: Path, b: Path) -> None:
    for name in ("log.csv", "trajectory.extxyz"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    with np.load(a / "checkpoint.npz") as x, np.load(b / "checkpoint.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        assert all(np.array_equal(x[k], y[k]) for k in x.files if k != "state")


def log_rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.parametrize("sig, engine", [(signal.SIGINT, "ase"), (signal.SIGTERM, "batched")], ids=["INT-ase", "TERM-batched"])
def test_md_killed_mid_run_resumes_bit_identically(tmp_path, capsys, sig, engine):
    steps = 800
    whole = write_config(tmp_path / "whole.yaml", tmp_path / "whole", steps, engine)
    assert main(["md", str(whole)]) == 0
    parts = write_config(tmp_path / "parts.yaml", tmp_path / "parts", steps, engine)
    process = subprocess.Popen([sys.executable, "-m", "symprobe.cli", "md", str(parts)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for = np.random.default_rng().integers(20, 300)  # a random step, off the checkpoint stride as a rule
    deadline = time.time() + 60
    while log_rows(tmp_path / "parts" / "log.csv") < wait_for and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal came (a very fast machine)")
    assert process.returncode == 130
    message = one_line_error(err, "md")
    assert message.startswith(f"symprobe md: {sig.name}: stopped at step ") and "--resume" in message
    stopped = int(message.split("stopped at step ")[1].split()[0])
    assert 0 < stopped < steps
    assert log_rows(tmp_path / "parts" / "log.csv") == stopped + 1  # nothing computed was lost
    assert main(["md", str(parts), "--resume"]) == 0
    capsys.readouterr()
    same_run_files(tmp_path / "whole", tmp_path / "parts")


def test_md_refuses_a_used_directory_unless_told(tmp_path, capsys):
    path = write_config(tmp_path / "md.yaml", tmp_path / "run", 20)
    assert main(["md", str(path)]) == 0
    before = (tmp_path / "run" / "log.csv").read_bytes()
    capsys.readouterr()
    assert main(["md", str(path)]) == 2
    message = one_line_error(capsys.readouterr().err, "md")
    assert "already holds a run (checkpoint.npz, log.csv, trajectory.extxyz)" in message and "--overwrite" in message
    assert (tmp_path / "run" / "log.csv").read_bytes() == before
    write_config(path, tmp_path / "run", 10)
    assert main(["md", str(path), "--overwrite"]) == 0
    assert log_rows(tmp_path / "run" / "log.csv") == 11


def test_md_resume_refuses_a_changed_config_and_lists_the_differences(tmp_path, capsys):
    path = write_config(tmp_path / "md.yaml", tmp_path / "run", 20)
    assert main(["md", str(path)]) == 0
    before = (tmp_path / "run" / "log.csv").read_bytes()
    write_config(path, tmp_path / "run", 40, timestep_fs=0.5, seed=4)
    capsys.readouterr()
    assert main(["md", str(path), "--resume"]) == 2
    message = one_line_error(capsys.readouterr().err, "md")
    assert "differs from the run" in message and "timestep_fs 0.25 → 0.5; seed 3 → 4" in message
    model = tmp_path / "model.pt"  # a model file: its hash is part of the run
    shutil.copy(ROOT / "src" / "symprobe" / "weights" / "water-pet.pt", model)
    write_config(path, tmp_path / "pet", 4, model=str(model), ensemble="nve")
    assert main(["md", str(path)]) == 0
    with open(model, "ab") as handle:
        handle.write(b"\0")
    write_config(path, tmp_path / "pet", 8, model=str(model), ensemble="nve")
    capsys.readouterr()
    assert main(["md", str(path), "--resume"]) == 2
    assert "model_sha256 " in one_line_error(capsys.readouterr().err, "md")
    assert (tmp_path / "run" / "log.csv").read_bytes() == before


def test_md_resume_with_a_longer_run_continues(tmp_path, capsys):
    path = write_config(tmp_path / "md.yaml", tmp_path / "run", 20)
    assert main(["md", str(path)]) == 0
    write_config(path, tmp_path / "run", 30)
    assert main(["md", str(path), "--resume"]) == 0
    assert log_rows(tmp_path / "run" / "log.csv") == 31


# --- unwritable outputs ------------------------------------------------------------------------------
def _can_mount(directory: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(directory)],
                           capture_output=True, check=False)
    return probe.returncode == 0


def run_on_tmpfs(directory: Path, options: str, *argv: str) -> subprocess.CompletedProcess:
    """``symprobe ARGV`` with a tmpfs (mount ``options``) at ``directory``, in a private mount namespace
    (the mount ends with the process)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not _can_mount(directory):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (needs unshare and CAP_SYS_ADMIN)")
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", options, str(directory), sys.executable, "-m",
                           "symprobe.cli", *argv], env=ENV, capture_output=True, text=True, timeout=120, check=False)


def test_read_only_output_directory_is_refused_before_any_work(tmp_path):
    out = tmp_path / "ro"
    if os.geteuid() != 0:  # permissions bind ordinary users; root needs a read-only file system
        out.mkdir()
        out.chmod(0o500)
        result = subprocess.run([sys.executable, "-m", "symprobe.cli", "md",
                                 str(write_config(tmp_path / "md.yaml", out / "run", 20))],
                                env=ENV, capture_output=True, text=True, timeout=120, check=False)
    else:
        result = run_on_tmpfs(out, "ro,size=64k", "md", str(write_config(tmp_path / "md.yaml", out / "run", 20)))
    assert result.returncode == 2
    message = one_line_error(result.stderr, "md")
    assert f"cannot write to {out / 'run'}" in message


def test_full_disk_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "small"
    result = run_on_tmpfs(out, "size=16k", "md", str(write_config(tmp_path / "md.yaml", out / "run", 400)))
    assert result.returncode == 2
    assert one_line_error(result.stderr, "md") == f"symprobe md: error: {out / 'run'}: No space left on device"


# --- bad input -----------------------------------------------------------------------------------------
def _table_module():
    spec = importlib.util.spec_from_file_location("bad_input_table", ROOT / "benchmarks" / "bad_input_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


TABLE = _table_module()


@pytest.mark.parametrize("case", TABLE.CASES, ids=[case.name for case in TABLE.CASES])
def test_bad_input_exits_with_its_code_and_one_line(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    code, message = TABLE.run_case(case)
    assert code == case.code, message
    assert message.startswith(f"symprobe {case.argv[0]}: ") and "\n" not in message and "Traceback" not in message
    assert case.expect in message


def test_bad_input_table_is_current():
    assert TABLE.render([(case, *TABLE.run_isolated(case)) for case in TABLE.CASES]) == (ROOT / "docs" / "bad-input.md").read_text()


def test_training_interrupted_mid_epoch_resumes_bit_for_bit(tmp_path, capsys, monkeypatch):
    """SIGTERM during the first step of the second epoch: exit 130 with one line, a checkpoint is written after
    that step, and --resume continues from the next step and ends where an uninterrupted run ends, bit for bit."""
    import torch
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from symprobe.models.qtip4pf import qtip4pf
    from symprobe.structures import water_box
    from symprobe.training.loop import _loss

    potential, frames = qtip4pf(cutoff=6.0), []
    for seed in range(6):
        atoms = water_box(2, seed=seed)
        prediction = potential.predict(atoms)
        atoms.calc = SinglePointCalculator(atoms, energy=prediction.energy, forces=prediction.forces)
        frames.append(atoms)
    write(tmp_path / "data.extxyz", frames)
    text = ("data: {path: data.extxyz, train: 4, val: 2, test: 0}\n"
            "model: {width: 8, heads: 2, blocks: 1, radial_basis: 4, angular_degree: 2, cutoff: 3.0}\n"
            "training: {epochs: 3, batch_size: 2, threads: 1}\n")
    for name in ("whole", "parts"):
        (tmp_path / f"{name}.yaml").write_text(text + f"output_dir: {tmp_path / name}\n")
    assert main(["train", str(tmp_path / "whole.yaml")]) == 0
    calls = {"n": 0}

    def loss_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # first batch of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return _loss(*args, **kwargs)

    monkeypatch.setattr("symprobe.training.loop._loss", loss_then_signal)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "parts.yaml")]) == 130
    message = one_line_error(capsys.readouterr().err, "train")
    assert message.startswith("symprobe train: SIGTERM: stopped in epoch 2 after 1 of 2 steps")
    assert torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)["within_epoch"]["step"] == 2
    monkeypatch.undo()
    assert main(["train", str(tmp_path / "parts.yaml"), "--resume"]) == 0
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [row["val_force_mae"] for row in a["state"]["history"]] == [row["val_force_mae"] for row in b["state"]["history"]]


# --- audit ---------------------------------------------------------------------------------------------
AUDIT = ("--grid", "T+i", "--lmax", "1", "--convergence", "paper-0,D2+i")


def test_audit_keeps_finished_structures_and_resumes(tmp_path, capsys, monkeypatch):
    from ase.io import write

    from symprobe.audit import run as audit_module
    from symprobe.structures import water_monomer

    frames = []
    for k in range(3):
        atoms = water_monomer()
        atoms.positions += np.random.default_rng(k).normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    write(tmp_path / "three.extxyz", frames)
    source = f"{tmp_path / 'three.extxyz'}@0:3"  # ASE's FILE@SLICE
    assert main(["audit", "builtin:qtip4pf", source, *AUDIT, "--out", str(tmp_path / "whole")]) == 0
    out = capsys.readouterr().out
    assert "reference grid T+i (24 rotations)" in out and "3 of 3 structures to go" in out and "first structure took" in out

    original, calls = audit_module.audit_structure, {"n": 0}

    def stop_at_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(audit_module, "audit_structure", stop_at_the_second)
    parts = ["audit", "builtin:qtip4pf", source, *AUDIT, "--out", str(tmp_path / "parts")]
    assert main(parts) == 130
    message = one_line_error(capsys.readouterr().err, "audit")
    assert "1 of 3 structures kept" in message and "--resume" in message
    monkeypatch.undo()
    assert main(parts) == 2  # a used directory
    assert "already holds a run (audit.partial.json)" in one_line_error(capsys.readouterr().err, "audit")
    assert main([*parts[:3], "--grid", "O+i", *AUDIT[2:], "--out", str(tmp_path / "parts"), "--resume"]) == 2
    assert "grid \"T+i\" → \"O+i\"" in one_line_error(capsys.readouterr().err, "audit")
    assert main([*parts, "--resume"]) == 0
    assert "2 of 3 structures to go" in capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "audit.json").read_text())
    resumed = json.loads((tmp_path / "parts" / "audit.json").read_text())
    assert resumed["structures"] == whole["structures"] and resumed["summary"] == whole["summary"]
    assert not (tmp_path / "parts" / "audit.partial.json").exists()


def monomers(path: Path, count: int) -> str:
    """``count`` slightly distorted water monomers written to ``path``; returns the path as a string."""
    from ase.io import write

    from symprobe.structures import water_monomer

    frames = []
    for k in range(count):
        atoms = water_monomer()
        atoms.positions += np.random.default_rng(k).normal(0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    write(path, frames)
    return str(path)


def test_audit_results_are_replaced_as_a_unit(tmp_path, capsys, monkeypatch):
    """A full disk while --overwrite writes the second figure leaves the previous audit.json and figures byte
    for byte (the computed structures stay in audit.partial.json); a finished replacement leaves no figure
    of the previous set (here convergence.png, which --convergence none does not draw)."""
    from matplotlib.figure import Figure

    out = tmp_path / "audit"
    argv = ["audit", "builtin:qtip4pf", monomers(tmp_path / "two.extxyz", 2), *AUDIT, "--out", str(out)]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert set(before) == {"audit.json", "convergence.png", "spectrum.png", "distribution.png"}
    savefig, calls = Figure.savefig, {"n": 0}

    def disk_full_at_the_second(self, fname, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(fname).write_bytes(b"\x89PNG half a figure")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", disk_full_at_the_second)
    capsys.readouterr()
    assert main([*argv, "--grid", "O+i", "--overwrite"]) == 2
    assert one_line_error(capsys.readouterr().err, "audit") == f"symprobe audit: error: {out}: No space left on device"
    after = {path.name: path.read_bytes() for path in out.iterdir()}
    assert after.pop("audit.partial.json")  # nothing computed is lost: --resume writes the results again
    assert after == before
    monkeypatch.undo()
    assert main([*argv, "--convergence", "none", "--overwrite"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["audit.json", "distribution.png", "spectrum.png"]


# --- study -----------------------------------------------------------------------------------------------
STUDY_SCRIPT = """
import sys
from symprobe import cli, study
run_study = study.run_study
study.run_study = lambda *args, **kwargs: run_study(*args, **{**kwargs, "plan": study.Plan(**%r)})
sys.exit(cli.main(["study", "--model", "symprobe.study:known_answer_model", "--out", sys.argv[1], *sys.argv[2:]]))
"""


def seeded_study(out: Path):
    """A study directory whose costs stage is finished (the tiny plan does not use the costs; measuring them
    takes seconds), and the tiny plan: (model, plan, costs.json)."""
    from test_study import TINY

    from symprobe import study
    from symprobe.study.plan import costs_key
    from symprobe.study.stages import StageCache

    model = study.known_answer_model()
    key = costs_key(model, *study.parse_mts("2i/10"))
    StageCache(out, key, progress=False).run("costs", lambda: {"seeded": 1.0}, key=key)
    return model, {**TINY, "gas_nve_molecules": 4, "gas_nve_steps": 100}, out / "stages" / "costs.json"


def test_study_stage_killed_by_sigterm_resumes_where_it_stopped(tmp_path, one_torch_thread):
    """SIGTERM during the gas NVE stage's MD: exit 130 with one line, the finished stage kept, and a rerun ends
    that stage where an uninterrupted one does (bit for bit: the MD resumes from its checkpoint)."""
    from symprobe import study

    parts, whole = tmp_path / "parts", tmp_path / "whole"
    model, tiny, costs = seeded_study(parts)
    seeded_study(whole)
    costs_before = costs.read_bytes()
    process = subprocess.Popen([sys.executable, "-c", STUDY_SCRIPT % (tiny,), str(parts)], env={**ENV, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    logs = parts / "md" / study.Plan(**tiny).key() / "gas_nve" / "raw" / "log.csv"
    deadline = time.time() + 60
    while log_rows(logs) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the study finished before the signal came (a very fast machine)")
    assert process.returncode == 130
    message = one_line_error(err, "study")
    assert message.startswith(f"symprobe study: stopped; finished stages kept in {parts / 'stages'} (costs)")
    assert "run the same command again" in message
    assert costs.read_bytes() == costs_before and not (parts / "stages" / "gas_nve.json").exists()
    assert (logs.parent.parent / "checkpoint.npz").exists()
    for out in (parts, whole):
        study.run_study(model, out, plan=study.Plan(**tiny), progress=False, stop_after="gas_nve")
    assert costs.read_bytes() == costs_before
    resumed, uninterrupted = (json.loads((out / "stages" / "gas_nve.json").read_text())["result"] for out in (parts, whole))
    assert resumed == uninterrupted
    assert filecmp.cmp(logs, whole / logs.relative_to(parts), shallow=False)


def test_study_stops_at_its_time_limit_with_exit_75_and_continues(tmp_path, one_torch_thread):
    """--max-minutes: the study stops at the limit with exit code 75 and one line; the MD run in progress keeps a
    checkpoint, and the same study continued ends its stage where an uninterrupted one does (bit for bit)."""
    from symprobe import study

    parts, whole = tmp_path / "parts", tmp_path / "whole"
    model, tiny, costs = seeded_study(parts)
    seeded_study(whole)
    done = subprocess.run([sys.executable, "-c", STUDY_SCRIPT % (tiny,), str(parts), "--max-minutes", "0.02"],
                          env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        pytest.skip("the study finished within 1.2 s (a very fast machine)")
    assert done.returncode == 75, done.stderr[-2000:]
    message = one_line_error(done.stderr, "study")
    assert message.startswith("symprobe study: time limit of 0.02 min reached; finished stages kept in")
    assert "run the same command again to continue" in message
    for out in (parts, whole):
        study.run_study(model, out, plan=study.Plan(**tiny), progress=False, stop_after="gas_nve")
    resumed, uninterrupted = (json.loads((out / "stages" / "gas_nve.json").read_text())["result"] for out in (parts, whole))
    assert resumed == uninterrupted


def test_a_signal_during_the_last_step_is_not_lost():
    """A stop signal that arrives while a loop inside deferred_signals takes its last step (so the loop never checks
    it) is raised as Interrupted when the block ends, not swallowed: a study stopped at its time limit during the last
    step of a stage's MD stops there instead of running on."""
    from symprobe.interrupt import Interrupted, deferred_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM: received as the work ended"), deferred_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs: the request is recorded, nothing is raised inside
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
