"""The molecule study's cost stage and quick plan with a costly model: the pair potential of
:mod:`symprobe.testing.pair` made slower by a known delay per call (:class:`symprobe.testing.delayed.DelayedModel`,
as a pretrained model such as SevenNet costs: one pass per structure). The stage makes a bounded number of calls,
predicts the batched step within 30 %, a quick budget it cannot fit is refused in one line, and a signal stops it at
once."""

from __future__ import annotations

import tempfile
import threading
import time

import pytest
from ase.build import molecule
from ase.io import write

from symprobe import so3
from symprobe.cli import main
from symprobe.study import gas
from symprobe.study.molecule import (
    COST_MOLECULES,
    TIMED_RUN_STEPS,
    TIMED_RUNS_MAX_S,
    call_costs,
    measure_costs,
    predicted_step_s,
    principal_frame,
    quick_plan,
    run_molecule,
)
from symprobe.study.plan import batched_stepper, timed
from symprobe.study.variants import REPEAT, VARIANTS
from symprobe.testing.delayed import DelayedModel
from symprobe.testing.pair import known_answer_pair_model

SLOW = """import os
import signal
import threading

from symprobe.testing.delayed import DelayedModel
from symprobe.testing.pair import known_answer_pair_model


class Signalling(DelayedModel):
    \"\"\"SIGTERM to itself 0.2 s into its second call of several structures, while it sleeps.\"\"\"

    def _predict_many(self, structures, rotations):
        self.batches = getattr(self, "batches", 0) + (len(structures) > 1)
        if self.batches == 2 and not hasattr(self, "timer"):
            self.timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
            self.timer.start()
        return super()._predict_many(structures, rotations)


def slow():
    return DelayedModel(known_answer_pair_model(degree=2, amplitude=0.5), per_structure_s=0.01)


def signalling():
    return Signalling(known_answer_pair_model(degree=2, amplitude=0.5), per_structure_s=0.25)
"""


@pytest.fixture
def cof2():
    return principal_frame(molecule("COF2"))[0]


def test_a_costly_model_is_costed_from_four_calls(cof2):
    """10 ms per structure: short timed runs would take over TIMED_RUNS_MAX_S, so the stage makes two calls (each
    after a warm-up) of COST_MOLECULES structures and of one molecule's 2i copies, in well under a second of
    sleep, and the step it predicts is theirs: 40 structures and the grid's copies of 8.1 molecules."""
    model = DelayedModel(known_answer_pair_model(degree=2, amplitude=0.5), per_structure_s=0.01)
    begin = time.perf_counter()
    costs = measure_costs(model, cof2)
    assert time.perf_counter() - begin < 3.0
    assert costs["timed_runs"] is False and model.calls == 4 and model.copies == 2 * (COST_MOLECULES + len(so3.get("2i")))
    assert costs["nve_step_s"] == costs["nvt_step_s"] == predicted_step_s(costs)
    assert 2 * sum(TIMED_RUN_STEPS) * 10 * costs["nvt_step_s"] > TIMED_RUNS_MAX_S
    assert costs["nvt_step_s"] >= 0.01 * COST_MOLECULES * (len(VARIANTS) + 1)


@pytest.mark.parametrize("ensemble", [gas.NVE, gas.NVT], ids=["nve", "nvt"])
def test_the_predicted_step_is_the_timed_step_within_30_percent(cof2, ensemble):
    """5 ms per structure and 0.25 ms per copy (about 0.35 s per step, mostly sleep, so that the machine's load
    moves it little): the step predicted from two calls is within 30 % of an MTS block of the batched engine's steps
    (all variants and the second raw set, as the study runs them), timed."""
    model = DelayedModel(known_answer_pair_model(degree=2, amplitude=0.5), per_structure_s=5e-3, per_copy_s=2.5e-4)
    predicted = predicted_step_s(call_costs(model, cof2))
    variants = (*VARIANTS, REPEAT)
    starts = (gas.nve_starts if ensemble is gas.NVE else gas.nvt_starts)(variants, COST_MOLECULES, 0, template=cof2)
    measured = timed(batched_stepper(model, starts, ensemble, "2i", "2i", 10), 10)
    assert predicted == pytest.approx(measured, rel=0.3)


def test_a_cheap_model_is_timed_by_short_runs(cof2):
    """The undelayed pair potential: the short runs are cheap, so they time the steps (logs and trajectories
    included); the prediction from calls is an upper bound for a model that evaluates all structures in one pass."""
    costs = measure_costs(known_answer_pair_model(degree=2, amplitude=0.5), cof2)
    assert costs["timed_runs"] is True
    assert 0 < costs["nve_step_s"] < predicted_step_s(costs) and 0 < costs["nvt_step_s"] < predicted_step_s(costs)


def test_a_costly_quick_plan_keeps_the_shortest_runs_that_give_statistics():
    """At SevenNet-0's cost on ethanol here (12 s per step of 8 molecules per variant), 5 minutes buy the floor:
    200 NVE steps of 8 molecules and 400 NVT steps of 16 per variant (more than the 8 coefficients of ℓ ≤ 2, so
    Hotelling's test is defined), whole MTS blocks."""
    plan = quick_plan({"nve_step_s": 12.4, "nvt_step_s": 12.4}, 300.0)
    assert (plan.nve_steps, plan.nvt_steps, plan.nve_molecules, plan.nvt_molecules) == (200, 400, 8, 16)
    assert plan.nvt_averaged_molecules == 16 and plan.nve_steps % plan.n_inner == plan.nvt_steps % plan.n_inner == 0


def test_a_budget_the_shortest_runs_cannot_fit_is_refused_after_the_cost_stage(cof2, tmp_path):
    """10 ms per structure: the shortest runs take about 8 min, past 3 × a 1-minute budget: one line that names the
    time it needs, raised after the cost stage's 4 calls (no relaxation, no MD); the cost stage is kept."""
    model = DelayedModel(known_answer_pair_model(degree=2, amplitude=0.5), per_structure_s=0.01)
    with pytest.raises(ValueError) as error:
        run_molecule(model, cof2, tmp_path, budget_s=60.0, progress=False)
    message = str(error.value)
    assert message.startswith("quick study of the molecule CF2O with pair+Y2 0.5 eV (delayed): its shortest runs that "
                              "still give statistics (NVE 200, NVT 400 steps of 0.5 fs) would take about ")
    assert "more than 3 times its budget of 1 min; give --budget-min" in message and "for the molecule alone" in message
    assert "\n" not in message and model.calls == 4
    assert [path.name for path in (tmp_path / "stages").iterdir()] == ["costs.json"] and not (tmp_path / "md").exists()


def test_the_command_line_refuses_it_with_exit_2(tmp_path, capsys):
    (tmp_path / "slow.py").write_text(SLOW)
    write(tmp_path / "cof2.xyz", molecule("COF2"))
    assert main(["study", "--molecule", str(tmp_path / "cof2.xyz"), "--model", f"{tmp_path / 'slow.py'}:slow",
                 "--budget-min", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symprobe study: error: quick study of the molecule CF2O") and "\n" not in err


def test_sigterm_in_the_cost_stage_stops_the_study_at_once(tmp_path, capsys, monkeypatch):
    """SIGTERM 0.2 s into the second cost-stage call of 8 structures (each sleeps 2 s; a batched MD step of the study's
    40 would sleep 10 s, and a stop deferred to the end of the step would wait for it): exit 130 within two seconds
    of the signal, one line saying that no stage finished, no scratch directory and no thread left behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "slow.py").write_text(SLOW)
    write(tmp_path / "cof2.xyz", molecule("COF2"))
    threads = threading.active_count()
    begin = time.perf_counter()
    assert main(["study", "--molecule", str(tmp_path / "cof2.xyz"), "--model", f"{tmp_path / 'slow.py'}:signalling",
                 "--quick", "--out", str(tmp_path / "out")]) == 130
    assert time.perf_counter() - begin < 0.25 + 2.0 + 0.2 + 2.0  # the model's check on one structure, a call, the signal
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"symprobe study: stopped; finished stages kept in {tmp_path / 'out' / 'molecule' / 'stages'} "
                          "(none yet)") and "\n" not in err
    assert not list(tmp_path.glob("symprobe-costs-*")) and threading.active_count() == threads
