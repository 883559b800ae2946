"""The molecule study for a non-water molecule (``symprobe study --molecule FILE``) with a known answer: carbonyl
fluoride (COF2, an asymmetric top that the Morse pair potential holds together) under the pair potential plus a
lab-frame term of degree ℓ = 2 (0.5 eV), which the 2i grid (exact to degree 2) removes exactly. One toy-size run
through the command line serves the end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import json
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import write

from symprobe import so3
from symprobe.cli import main
from symprobe.study.gas import isolated_molecules
from symprobe.study.molecule import (
    MoleculePlan,
    estimate_s,
    orientations,
    principal_frame,
    quick_plan,
)

MODEL = """from symprobe.testing.pair import known_answer_pair_model


def make():
    return known_answer_pair_model(degree=2, amplitude=0.5)
"""


@pytest.fixture(scope="module")
def cof2_study(tmp_path_factory):
    """(directory, argv, seconds of the run that finished, stderr of its first part) of ``symprobe study --molecule
    cof2.xyz`` on the known-answer model at toy size: stopped by ``--max-minutes 0.05``, then continued to the end."""
    root = tmp_path_factory.mktemp("molecule")
    (root / "lab_term.py").write_text(MODEL)
    write(root / "cof2.xyz", molecule("COF2"))
    argv = ["study", "--molecule", str(root / "cof2.xyz"), "--model", f"{root / 'lab_term.py'}:make", "--budget-min", "0.1",
            "--out", str(root / "out")]
    stopped = io.StringIO()
    with contextlib.redirect_stderr(stopped):
        code = main([*argv, "--max-minutes", "0.05"])
    assert code == 75, stopped.getvalue()[-2000:]
    begin = time.perf_counter()
    assert main(argv) == 0
    return root, argv, time.perf_counter() - begin, stopped.getvalue()


def _results(cof2_study) -> dict:
    return json.loads((cof2_study[0] / "out" / "results.json").read_text())


def test_orientations_recover_the_rotations_of_any_molecule():
    """Kabsch superposition gives back the exact rotations of rotated copies, a spherical top (CH4, three equal
    moments) included; the principal frame has its moments in ascending order on the diagonal."""
    for name in ("COF2", "CH4"):
        reference, moments = principal_frame(molecule(name))
        assert np.all(np.diff(moments) >= -1e-9)
        rotations = so3.haar_rotations(5, np.random.default_rng(1))
        frames = np.stack([np.concatenate([reference.get_positions() @ R.T for R in rotations])])
        assert np.allclose(orientations(frames, reference)[0], rotations, atol=1e-9)
    copies = isolated_molecules(3, seed=0, template=reference)
    assert [len(c) for c in copies] == [5, 5, 5] and copies[0].info["name"] == "CH4 #0"


def test_raw_orientation_bias_is_detected_and_the_2i_average_removes_it(cof2_study):
    """The lab-frame term biases the raw principal axes (p < 1e-6), the 2i average (and random rotations and MTS over
    2i) leaves none detectable and a smaller largest bias; the null comparison passes the Holm gate."""
    r = _results(cof2_study)
    found = {f["key"]: f for f in r["findings"]}
    assert all(f["kind"] == "molecule" and "CF2O" in f["claim"] and "water" not in f["claim"] for f in r["findings"])
    assert found["orientation_bias"]["holds"] is True
    for variant in ("averaged", "random", "mts"):
        assert found[f"{variant}_removes_bias"]["holds"] is True
    nvt = r["kinds"]["molecule"]["experiments"]["nvt"]
    assert min(axis["raw_pooled"]["p_value"] for axis in nvt.values()) < 1e-6
    raw = max(axis["raw_pooled"]["bias_kT"]["value"] for axis in nvt.values())
    averaged = max(axis["variants"]["averaged"]["harmonic"]["bias_kT"]["value"] for axis in nvt.values())
    assert averaged < 0.7 * raw
    assert r["calibration_gate"]["passed"] and r["calibration_gate"]["n_tests"] == 5


def test_the_averaged_molecule_keeps_its_angular_momentum(cof2_study):
    """In NVE the exactly invariant 2i average conserves each molecule's L to the integrator's round-off; raw does not."""
    r = _results(cof2_study)
    variants = r["kinds"]["molecule"]["experiments"]["nve"]["variants"]
    assert variants["averaged"]["L_change_final"]["value"] < 1e-5 < variants["raw"]["L_change_final"]["value"]
    assert {f["key"]: f["holds"] for f in r["findings"]}["angular_momentum"] is True


def test_a_study_stopped_at_its_time_limit_says_where_it_kept_its_stages(cof2_study):
    """--max-minutes: exit 75 (checked by the fixture) and one line naming the molecule's stage and MD directories;
    the same command then finished (the other tests read its results)."""
    root, _, _, stderr = cof2_study
    [line] = [line for line in stderr.splitlines() if line.startswith("symprobe study:")]
    assert line.startswith("symprobe study: time limit of 0.05 min reached; finished stages kept in "
                           f"{root / 'out' / 'molecule' / 'stages'} (costs")
    assert f"checkpoint in {root / 'out' / 'molecule' / 'md'}; run the same command again" in line


def test_results_and_report_are_written_and_a_rerun_loads_them(cof2_study):
    """results.json names the system and kind; report.html has the molecule's section with its two figures; the same
    command again loads every stage from its cache and gives the same findings."""
    root, argv, seconds, _ = cof2_study
    r = _results(cof2_study)
    assert r["schema"] == "symprobe-user-study/1" and r["systems"] == {"molecule": "CF2O"}
    assert r["kinds"]["molecule"]["experiments"]["relaxation"]["converged"]
    report = (root / "out" / "report.html").read_text()
    assert "Isolated molecule: CF2O" in report and report.count("data:image/png;base64,") == 2
    assert 'id="table-molecule-orientation"' in report and 'id="table-calibration"' in report
    begin = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - begin < 0.5 * seconds
    assert _results(cof2_study)["findings"] == r["findings"]


@pytest.mark.parametrize("extra, message", [
    (["--model", "builtin:water-pet"], "does not know the elements C, F in the molecule CF2O (it covers H, O)"),
    (["--bulk", "cof2.xyz"], "--bulk: CF2O is not periodic in three directions"),
    (["--crystal", "cof2.xyz"], "--crystal: CF2O is not periodic in three directions"),
    (["--model", "ase.calculators.emt:EMT"], "cannot evaluate the molecule CF2O"),
    (["--plan"], "--plan goes with the water study"),
    (["--long-liquid", "5"], "--long-liquid goes with the water study")])
def test_refused_on_one_line_with_exit_2(tmp_path, capsys, extra, message):
    write(tmp_path / "cof2.xyz", molecule("COF2"))
    assert main(["study", "--molecule", str(tmp_path / "cof2.xyz"), "--quick", "--out", str(tmp_path / "out"),
                 *[str(tmp_path / a) if a.endswith(".xyz") else a for a in extra]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "out" / "results.json").exists()


def test_unreadable_molecule_file_exit_2(tmp_path, capsys):
    (tmp_path / "bad.xyz").write_text("not a structure\n")
    assert main(["study", "--molecule", str(tmp_path / "bad.xyz"), "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.xyz: cannot read structures" in err and "\n" not in err


def test_quick_plans_fill_their_budget_and_full_plans_follow_the_paper():
    """A quick plan's estimated NVE and NVT time is its share of the budget (90 %, to rounding, below the caps); a
    longer budget buys longer runs; the full plan is the paper's gas-phase protocol (40 molecules x 25 ps in NVE)."""
    costs = {"nve_step_s": 0.05, "nvt_step_s": 0.1}
    plan = quick_plan(costs, 300.0)
    assert sum(estimate_s(plan, costs).values()) == pytest.approx(0.9 * 300.0, rel=0.02)
    assert quick_plan(costs, 1200.0).nvt_steps > plan.nvt_steps
    full = MoleculePlan(quick=False)
    assert full.nve_molecules * full.nve_steps * 0.5 >= 1e6 and full.grid == "2i"


def test_a_single_atom_is_refused(tmp_path, capsys):
    write(tmp_path / "ar.xyz", Atoms("Ar"))
    assert main(["study", "--molecule", str(tmp_path / "ar.xyz"), "--model", "symprobe.testing:KnownAnswerCalculator",
                 "--quick", "--out", str(tmp_path / "out")]) == 2
    assert "a molecule needs at least 2 atoms" in capsys.readouterr().err


def test_a_kind_that_fails_the_gate_has_its_findings_withheld():
    """One Holm gate over all kinds' null tests: a kind with a significant null test (p = 1e-6 among 3 tests) gets
    its tested findings withheld (holds None, the failing test named); a kind that passes keeps its own."""
    from symprobe.analysis import statistics
    from symprobe.study.user_system import withheld

    failing = {"null_tests": {"NVE: energy drift": {"p_value": 1e-6}, "NVT: orientation of axis a (ℓ ≤ 2)": {"p_value": 0.4}},
               "findings": [{"key": "orientation_bias", "claim": "c", "holds": True, "evidence": "e"}]}
    passing = {"null_tests": {"g(r)": {"p_value": 0.5}}, "findings": [{"key": "k", "claim": "c", "holds": False, "evidence": "e"}]}
    gate = statistics.calibration_gate({"molecule": failing["null_tests"], "bulk": passing["null_tests"]})
    assert not gate["passed"] and gate["n_tests"] == 3
    [finding] = withheld(failing, gate, "molecule")
    assert finding["holds"] is None and "molecule: NVE: energy drift" in finding["evidence"]
    assert withheld(passing, gate, "bulk")[0]["holds"] is False
