"""The learning-curve benchmark (benchmarks/learning_curve.py) end to end at toy size: equal budgets, the
rotational error along training (zero to round-off for the twin only), resuming, the figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from symprobe.testing import write_labelled_water

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("learning_curve", ROOT / "benchmarks" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_torch_thread")
def test_learning_curve_at_toy_size_trains_equal_budgets_and_resumes(tmp_path):
    data = write_labelled_water(tmp_path / "water.extxyz", 12)
    argv = ["--toy", "--data", str(data), "--sizes", "4", "8", "--steps", "8", "--every", "4", "--jobs", "1",
            "--out", str(tmp_path / "curve.json"), "--work", str(tmp_path / "work")]
    script = _script()
    assert script.main(argv) == 0
    first = json.loads((tmp_path / "curve.json").read_text())
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    for name in ("water-pet", "water-pet-twin"):
        points = first["models"][name]
        assert sorted(points, key=int) == ["4", "8"]
        assert [points[n]["steps"] for n in ("4", "8")] == [8, 8]  # equal budget: 4 epochs of 2 steps, 2 epochs of 4
        assert [points[n]["epochs"] for n in ("4", "8")] == [4, 2]
        for point in points.values():
            assert point["test"]["force_mae"] > 0 and point["train"]["force_mae"] > 0
            assert [a["step"] for a in point["rotational_along"]] == [4, 8]
            assert len(point["validation_along"]) == point["epochs"]
    rotational = [a["force_rms"] for p in first["models"]["water-pet"].values() for a in p["rotational_along"]]
    floor = [a["force_rms"] for p in first["models"]["water-pet-twin"].values() for a in p["rotational_along"]]
    assert min(rotational) > 1e-3 and max(floor) < 1e-6  # meV/Å: learned symmetry against exact invariance
    assert set(first["premise"]["mae_ratio_pet_over_twin"]) == {"4", "8"}

    assert script.main(argv) == 0  # everything finished: resumed, nothing retrained
    second = json.loads((tmp_path / "curve.json").read_text())
    assert second["models"] == first["models"]


def test_bad_arguments_are_one_line_with_exit_code_2(tmp_path, capsys):
    script = _script()
    assert script.main(["--out", str(tmp_path / "c.json"), "--work", str(tmp_path), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "learning_curve.py: error: --steps must be a positive integer, got 0"
