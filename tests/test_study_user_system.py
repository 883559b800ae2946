"""``symprobe study --molecule --crystal`` in one command on the known-answer pair model (any elements, an ℓ = 2
lab-frame term): both kinds run, the null tests meet in one Holm gate, and the report has a section per system, worded
for the systems (never for water). (``--bulk`` through the same path: tests/test_study_bulk.py runs the bulk study at a
smaller plan than a command line can ask for, and tests/test_study_molecule.py its refusals.)"""

from __future__ import annotations

import json

import pytest
import torch
from ase.build import bulk, molecule
from ase.io import write

from symprobe.cli import main

pytest.importorskip("spglib", reason="spglib is not installed (pip install 'symprobe[crystal]')")

MODEL = """from symprobe.testing.pair import known_answer_pair_model


def make():
    return known_answer_pair_model(degree=2, amplitude=0.02, cutoff=3.3)
"""


def test_three_kinds_in_one_study(tmp_path):
    torch.set_num_threads(1)
    (tmp_path / "lab_term.py").write_text(MODEL)
    write(tmp_path / "cof2.xyz", molecule("COF2"))
    crystal = bulk("Mg", "hcp", a=2.6, c=2.6 * 1.633)
    crystal.rotate(17, "x", rotate_cell=True)
    write(tmp_path / "mg.extxyz", crystal)
    out = tmp_path / "out"
    assert main(["study", "--molecule", str(tmp_path / "cof2.xyz"), "--crystal", str(tmp_path / "mg.extxyz"), "--model", f"{tmp_path / 'lab_term.py'}:make",
                 "--budget-min", "0.3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["kinds"]) == ["molecule", "crystal"]
    gate = results["calibration_gate"]
    assert set(gate["stage_passed"]) == {"molecule"}  # the crystal stage is deterministic: no null test
    assert gate["n_tests"] == len(results["kinds"]["molecule"]["null_tests"]) > 0
    report = (out / "report.html").read_text()
    for name in ("CF2O", "mg.extxyz"):  # a file's structure is named after the file
        assert name in report
    assert "water" not in report.lower() and "H2O" not in report
