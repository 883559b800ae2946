"""The GPU run-book (benchmarks/train_gpu.py) end to end at toy size on the CPU, so that a lent GPU's few
minutes are not spent finding its bugs: training, the precision check, evaluation, bundling and resuming."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from symprobe.testing import write_labelled_water

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def water_data(tmp_path_factory) -> Path:
    """12 disordered 8-molecule periodic boxes labelled by q-TIP4P/F, as extended XYZ."""
    return write_labelled_water(tmp_path_factory.mktemp("data") / "water.extxyz", 12)


def _run(data: Path, out: Path, *flags: str, child: bool = False) -> dict:
    """One call of the run-book at toy size on the CPU, in this process or (``child``) as a command."""
    argv = ["--toy", "--device", "cpu", "--data", str(data), "--out", str(out), *flags]
    if child:
        done = subprocess.run([sys.executable, str(SCRIPT), *argv], check=False, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert _script().main(argv) == 0
    return json.loads((out / "train_gpu.json").read_text())


@pytest.mark.usefixtures("one_torch_thread")
def test_runbook_trains_checks_precision_bundles_and_resumes(water_data, tmp_path):
    first = _run(water_data, tmp_path, "--epochs", "2", "--to-beat", "1e9")
    assert first["device"] == "cpu" and first["torch"] and first["jobs"] == 1
    assert [m["name"] for m in first["models"]] == ["water-pet-large", "water-pet-large-twin"]
    for model in first["models"]:
        assert model["epochs_done"] == 2 and model["finished"] and model["test"]["force_mae"] > 0
        check = model["precision_check"]  # bf16 changes forces far beyond float32 round-off: not used
        assert check["tolerance"] == 4 * check["float32_noise"] > 0
        assert check["difference_from_float32"]["bf16"] > check["tolerance"] and check["chosen"] == "float32"
        assert model["bundle"]["bundled"] and (tmp_path / "weights" / f"{model['name']}.md").exists()
    bundled = (tmp_path / "weights" / "water-pet-large.pt").read_bytes()
    log = json.loads((tmp_path / "water-pet-large" / "log.json").read_text())

    second = _run(water_data, tmp_path, "--minutes", "0.05", "--to-beat", "0")  # epochs sized by the budget
    for before, model in zip(first["models"], second["models"]):
        assert model["resumed_from_epoch"] == 2 and model["epochs_target"] > 2 and model["epochs_done"] >= 2
        assert "chosen" in model["precision_check"]
        assert not model["bundle"]["bundled"] and model["bundle"]["existing"] == before["bundle"]["test_force_mae"]
    assert json.loads((tmp_path / "water-pet-large" / "log.json").read_text())[:2] == log  # continued, not restarted
    assert (tmp_path / "weights" / "water-pet-large.pt").read_bytes() == bundled  # a worse model replaces nothing


def test_runbook_trains_in_child_processes_as_on_a_gpu(water_data, tmp_path):
    """--jobs 2 (the default on CUDA) trains each model in its own process; here one model, for time."""
    report = _run(water_data, tmp_path, "--epochs", "1", "--jobs", "2", "--models", "water-pet-large-twin", child=True)
    (model,) = report["models"]
    assert report["jobs"] == 2 and model["name"] == "water-pet-large-twin" and model["epochs_done"] == 1
    assert json.loads((tmp_path / "water-pet-large-twin" / "train_gpu.json").read_text()) == model


@pytest.mark.usefixtures("one_torch_thread")
def test_precision_check_takes_the_first_candidate_within_float32_noise(water_data, tmp_path):
    """On a CPU, TF32 changes nothing (a CUDA setting): it passes with a difference of 0 and is chosen after
    bf16, which changes forces far beyond float32 round-off."""
    from symprobe.training import train

    script = _script()
    args = script.parse(["--toy", "--device", "cpu", "--data", str(water_data), "--out", str(tmp_path)])
    config = script.model_config("water-pet-large", args, epochs=1, threads=1)
    train(config, progress=False)
    check = script.precision_check(tmp_path / "water-pet-large" / "checkpoint.pt", config, torch.device("cpu"), ("bf16", "tf32"))
    assert check["difference_from_float32"]["tf32"] == 0.0 < check["tolerance"] < check["difference_from_float32"]["bf16"]
    assert check["chosen"] == "tf32" and check["cells"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (on a lent GPU: pytest tests/test_train_gpu.py)")
def test_runbook_on_cuda_at_toy_size(water_data, tmp_path):
    """The CUDA path: two processes on one GPU, TF32 and bf16 candidates measured, a GPU's files bundled."""
    report = _run(water_data, tmp_path, "--epochs", "2", "--to-beat", "1e9", "--device", "cuda", child=True)
    assert report["jobs"] == 2 and report["device"].startswith("cuda")
    for model in report["models"]:
        assert set(model["precision_check"]["difference_from_float32"]) == {"bf16", "tf32"}
        assert model["epochs_done"] == 2 and model["bundle"]["bundled"]


def test_epoch_target_fills_the_budget_unless_a_run_is_unfinished():
    target = _script().epochs_target
    assert target(done=2, saved_target=2, epoch_seconds=3.0, seconds_left=300.0) == 2 + 90
    assert target(done=5, saved_target=97, epoch_seconds=3.0, seconds_left=10.0) == 97  # its schedule stays
    assert target(done=2, saved_target=2, epoch_seconds=3.0, seconds_left=-5.0) == 3  # at least one more


@pytest.mark.parametrize("flags, message", [
    (["--minutes", "-1"], "--minutes must be positive, got -1.0"),
    (["--models", "water-pet-huge"], "--models: expected some of water-pet-large, water-pet-large-twin"),
    (["--data", "/nonexistent.extxyz"], "--data: /nonexistent.extxyz is not a file"),
    (["--device", "tpu"], "device 'tpu': expected cpu, cuda or cuda:N"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, flags, message):
    assert _script().main(["--out", str(tmp_path), "--toy", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("train_gpu.py: error: ") and message in err
