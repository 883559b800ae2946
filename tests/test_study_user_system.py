"""``symprobe study --crystal`` through the command line on the known-answer pair model (any elements, an ℓ = 2
lab-frame term): the crystal runs, has no null test in the gate, and the report's section is worded for the system
(never for water). The molecule's command-line path is tests/test_study_molecule.py's; one gate over several kinds
is its ``test_a_kind_that_fails_the_gate_has_its_findings_withheld``; the bulk study itself is tests/test_study_bulk.py's."""

from __future__ import annotations

import json

import pytest
import torch
from ase.build import bulk
from ase.io import write

from symprobe.cli import main

pytest.importorskip("spglib", reason="spglib is not installed (pip install 'symprobe[crystal]')")

MODEL = """from symprobe.testing.pair import known_answer_pair_model


def make():
    return known_answer_pair_model(degree=2, amplitude=0.02, cutoff=3.3)
"""


def test_crystal_study_from_the_command_line(tmp_path):
    torch.set_num_threads(1)
    (tmp_path / "lab_term.py").write_text(MODEL)
    crystal = bulk("Mg", "hcp", a=2.6, c=2.6 * 1.633)
    crystal.rotate(17, "x", rotate_cell=True)
    write(tmp_path / "mg.extxyz", crystal)
    out = tmp_path / "out"
    assert main(["study", "--crystal", str(tmp_path / "mg.extxyz"), "--model", f"{tmp_path / 'lab_term.py'}:make",
                 "--budget-min", "0.3", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["kinds"]) == ["crystal"] and results["kinds"]["crystal"]["null_tests"] == {}
    assert results["calibration_gate"] is None or results["calibration_gate"]["n_tests"] == 0
    raw = {f["claim"]: f["holds"] for f in results["findings"] if "raw model keeps its space group at 1e-06" in f["claim"]}
    assert list(raw.values()) == [False]  # the ℓ = 2 term moves hcp off P6_3/mmc
    report = (out / "report.html").read_text()
    assert "mg.extxyz" in report and "P6_3/mmc" in report  # a file's structure is named after the file
    assert "water" not in report.lower() and "H2O" not in report
    assert "the crystal study is deterministic" in report and "not calibrated" not in report
