"""benchmarks/new_user.py at toy size: a model whose molecule study would take far past its budget is refused in one
line (exit 2) and the crystal is then studied alone, its results and report kept beside new_user.json; the molecule
alone is tried at ``--molecule-budget-min`` (refused again here: still too small)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from ase.build import bulk, molecule
from ase.io import write

pytest.importorskip("spglib", reason="spglib is not installed (pip install 'symprobe[crystal]')")
ROOT = Path(__file__).resolve().parents[1]
MODEL = """from symprobe.testing.delayed import DelayedModel
from symprobe.testing.pair import known_answer_pair_model


def make():
    return DelayedModel(known_answer_pair_model(degree=2, amplitude=0.02, cutoff=3.3), per_structure_s=0.02)
"""


def test_a_refused_molecule_leaves_the_crystal_studied_alone(tmp_path):
    spec = importlib.util.spec_from_file_location("new_user", ROOT / "benchmarks" / "new_user.py")
    new_user = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(new_user)
    (tmp_path / "slow.py").write_text(MODEL)
    write(tmp_path / "cof2.xyz", molecule("COF2"))
    write(tmp_path / "mg.extxyz", bulk("Mg", "hcp", a=2.6, c=2.6 * 1.633))
    out = tmp_path / "out"
    assert new_user.main(["--models", f"{tmp_path / 'slow.py'}:make", "--molecule", str(tmp_path / "cof2.xyz"), "--crystal",
                          str(tmp_path / "mg.extxyz"), "--work", str(tmp_path / "work"), "--out", str(out), "--budget-min", "0.1", "--molecule-budget-min", "0.2"]) == 0
    runs = json.loads((out / "new_user.json").read_text())["models"][f"{tmp_path / 'slow.py'}:make"]
    refused = runs["molecule_and_crystal"]
    assert refused["exit_code"] == 2 and "quick study of the molecule CF2O" in refused["last_line"]
    crystal = runs["crystal_alone"]
    assert crystal["exit_code"] == 0 and any("keeps its space group" in f["claim"] for f in crystal["findings"])
    assert crystal["stage_seconds"]["crystal/crystal_raw"] > 0
    assert (out / "slow-crystal" / "report.html").exists() and (out / "cof2.xyz").exists()
    molecule_alone = runs["molecule_alone"]
    assert molecule_alone["exit_code"] == 2 and molecule_alone["command"].endswith("--molecule cof2.xyz --quick --budget-min 0.2")
    assert "quick study of the molecule CF2O" in molecule_alone["last_line"] and "0.2 min" in molecule_alone["last_line"]
