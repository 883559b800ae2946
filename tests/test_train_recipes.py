"""The recipe benchmark (benchmarks/train_recipes.py) at toy size: stages in turn, a time budget that stops and
resumes them, direct pre-training handing over to conservative fine-tuning, curves on one wall-time axis."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from symprobe.models.pet import load_module
from symprobe.testing import write_labelled_water

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("train_recipes", ROOT / "benchmarks" / "train_recipes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_recipes"] = module  # its worker processes find run_recipe by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_torch_thread")
def test_recipes_at_toy_size_stop_resume_and_hand_over(tmp_path):
    data = write_labelled_water(tmp_path / "water.extxyz", 12)
    argv = ["--toy", "--data", str(data), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "recipes.json"),
            "--learning-curve", str(tmp_path / "none.json")]
    script = _script()
    assert script.main([*argv, "--hours", "1e-7"]) == 0  # one step per recipe, then the budget stops it
    stopped = json.loads((tmp_path / "recipes.json").read_text())
    assert not any(r["finished"] for r in stopped["recipes"].values())
    assert (tmp_path / "work" / "direct-then-conservative" / "1-direct" / "checkpoint.pt").exists()

    assert script.main(argv) == 0  # resumed to the end
    done = json.loads((tmp_path / "recipes.json").read_text())
    assert (tmp_path / "recipes.png").stat().st_size > 10_000
    both = done["recipes"]["direct-then-conservative"]
    assert both["finished"] and [s["forces"] for s in both["stages"]] == ["direct", "conservative"]
    hours = [h for stage in both["stages"] for h in stage["hours"]]
    assert hours == sorted(hours) and both["wall_hours"] == pytest.approx(hours[-1])  # one time axis over the stages
    assert both["test"]["force_mae"] > 0 and done["recipes"]["conservative"]["finished"]
    pre = load_module(tmp_path / "work" / "direct-then-conservative" / "1-direct" / "best.pt")
    tuned = load_module(tmp_path / "work" / "direct-then-conservative" / "2-conservative" / "best.pt")
    assert pre.hypers["direct_forces"] and not tuned.hypers["direct_forces"]
    assert done["references"][0]["force_mae"] > 0  # the bundled model's card


def test_bad_arguments_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert _script().main(["--out", str(tmp_path / "r.json"), "--hours", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "train_recipes.py: error: --hours and --threads must be positive, got -1.0 and 1"
