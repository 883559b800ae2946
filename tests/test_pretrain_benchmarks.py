"""The pre-training benchmarks at toy size, end to end: benchmarks/pretrain.py (recipes side by side at equal
steps, rotational errors, resume) and benchmarks/learning_curve_qtip4pf.py (equal wall time per point, 2 seeds,
fitted exponents, crossing point, resume)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from symprobe.testing import write_labelled_water

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def label_sets(toy_pretrain_set, tmp_path_factory) -> tuple[Path, Path]:
    """(the toy q-TIP4P/F set of symprobe pretrain-data, 12 labelled 8-molecule boxes standing for DFT)."""
    return toy_pretrain_set, write_labelled_water(tmp_path_factory.mktemp("labels") / "water.extxyz", 12)


def test_pretrain_recipes_at_toy_size_train_equal_steps_and_resume(label_sets, tmp_path):
    pretrain_data, data = label_sets
    argv = ["--toy", "--data", str(data), "--pretrain-data", str(pretrain_data), "--pretrain-train", "12", "--pretrain-val", "2",
            "--steps", "8", "--rotations", "2", "--jobs", "1", "--out", str(tmp_path / "pretrain.json"), "--work", str(tmp_path / "work")]
    script = _script("pretrain")
    assert script.main(argv) == 0
    first = json.loads((tmp_path / "pretrain.json").read_text())
    assert (tmp_path / "pretrain.png").stat().st_size > 10_000
    for name in ("water-pet", "water-pet-twin"):
        rows = first["models"][name]
        assert sorted(rows) == ["pretrain", "pretrain-freeze1", "scratch"]
        assert set(rows["scratch"]["stage_wall_hours"]) == {"scratch"} and set(rows["pretrain"]["stage_wall_hours"]) == {"pretrain", "fine-tune"}
        # equal budget: 8 steps of batches of 2: scratch 2 epochs of 4 steps (8 cells); pretrain 4 + 4 steps
        epochs = {recipe: [a["epoch"] for a in row["validation_along"]] for recipe, row in rows.items()}
        assert epochs["scratch"] == [1, 2] and epochs["pretrain"] == [1, 1]  # 12 of 8 pretrain cells → 1 epoch each stage
        assert rows["scratch"]["frozen_parameters"] == rows["pretrain"]["frozen_parameters"] == 0 < rows["pretrain-freeze1"]["frozen_parameters"]
        for row in rows.values():
            assert row["test"]["force_mae"] > 0 and row["wall_hours"] > 0 and len(row["sessions"]) == 1
            assert len(row["sessions"][0]["load_average_start"]) == 3
    rotational = [row["rotational"]["force_rms"] for row in first["models"]["water-pet"].values()]
    control = [row["rotational"]["force_rms"] for row in first["models"]["water-pet-twin"].values()]
    assert min(rotational) > 1e-3 and max(control) < 1e-6  # meV/Å: learned symmetry against exact invariance

    assert script.main(argv) == 0  # everything finished: nothing retrained, the same results
    assert json.loads((tmp_path / "pretrain.json").read_text())["models"] == first["models"]


def test_qtip4pf_learning_curve_at_toy_size_fits_exponents_and_resumes(label_sets, tmp_path):
    pretrain_data, _ = label_sets
    argv = ["--toy", "--data", str(pretrain_data), "--hours", "0.0001", "--every", "20", "--rotations", "2", "--jobs", "1",
            "--out", str(tmp_path / "curve.json"), "--work", str(tmp_path / "work")]
    script = _script("learning_curve_qtip4pf")
    assert script.main(argv) == 0
    first = json.loads((tmp_path / "curve.json").read_text())
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    for name in ("water-pet", "water-pet-twin"):
        points = first["models"][name]
        assert [(p["n_train"], p["seed"]) for p in points] == [(4, 0), (4, 1), (8, 0), (8, 1)]
        cost = first["calibration"][name]
        for p in points:  # the epochs that fill the budget at the calibrated cost, all trained
            per_epoch = math.ceil(p["n_train"] / 2)
            assert p["epochs_planned"] == max(1, int(3600 * 0.0001 / (per_epoch * cost["step_seconds"] + cost["validation_seconds"])))
            assert p["finished"] and p["epochs"] == p["epochs_planned"] and p["test"]["force_mae"] > 0
        assert points[0]["test"] != points[1]["test"]  # two seeds, two trainings
        fitted = first["fits"][name]
        assert fitted["points"] == 4 and math.isfinite(fitted["slope"]) and fitted["slope_error"] >= 0
    assert all(len(p["rotational_along"]) >= 1 for p in first["models"]["water-pet"])
    assert all(a["force_rms"] < 1e-6 for p in first["models"]["water-pet-twin"] for a in p["rotational_along"])
    crossing = first["crossing"]
    assert crossing is None or crossing["n_16"] <= crossing["n_84"]

    assert script.main(argv) == 0  # everything finished: nothing retrained
    assert json.loads((tmp_path / "curve.json").read_text())["models"] == first["models"]


def test_bad_arguments_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert _script("pretrain").main(["--out", str(tmp_path / "p.json"), "--work", str(tmp_path), "--pretrain-share", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "pretrain.py: error: --pretrain-share must be between 0 and 1 (exclusive), got 1.5"
    missing = tmp_path / "none.extxyz"
    assert _script("learning_curve_qtip4pf").main(["--out", str(tmp_path / "c.json"), "--work", str(tmp_path), "--data", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (f"learning_curve_qtip4pf.py: error: --data: {missing} is not a file "
                                               "(make it: symprobe pretrain-data configs/pretrain_qtip4pf.yaml)")
