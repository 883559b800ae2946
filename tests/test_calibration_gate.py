"""The study's calibration gate (issue 28, item 1): all of a run's null tests as one Holm-corrected family, so that
runs without any effect pass the whole gate 95 % of the time, where one test per stage at 5 % would not."""

from __future__ import annotations

import numpy as np
import pytest

from symprobe.analysis import statistics
from symprobe.study.calibration import gated, run_gate

N_RUNS = 2000
STAGES = {"gas_nve": ("scalar", "scalar"), "gas_nvt": ("scalar",), "liquid": ("curve",) * 5 + ("scalar",) * 2}


def _null_run(rng: np.random.Generator) -> dict[str, dict[str, dict]]:
    """One run in which nothing differs: each stage's null tests on two independent estimates of the same truth
    with correct error bars (scalars: one value each; curves: 20 bins each)."""
    def test(kind: str) -> dict:
        if kind == "scalar":
            return statistics.difference_significance(rng.normal(0, 1.0), 1.0, rng.normal(0, 1.0), 1.0)
        errors = np.full(20, 0.5)
        return statistics.curve_difference_significance(rng.normal(0, errors), errors, rng.normal(0, errors), errors)

    return {stage: {f"{kind} {k}": test(kind) for k, kind in enumerate(kinds)} for stage, kinds in STAGES.items()}


def test_holm_adjusts_step_down():
    adjusted = statistics.holm_adjusted({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})  # 4·0.01, max(3·0.03, 2·0.04), 0.5


def test_runs_without_effect_pass_the_whole_gate_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    runs = [_null_run(rng) for _ in range(N_RUNS)]
    gate = np.mean([statistics.calibration_gate(run)["passed"] for run in runs])
    per_stage = np.mean([all(statistics.null_calibration(tests)["passed"] for tests in run.values()) for run in runs])
    per_test = np.mean([not any(t["significant"] for tests in run.values() for t in tests.values()) for run in runs])
    m = sum(len(kinds) for kinds in STAGES.values())
    expected = (1 - 0.05 / m) ** m  # Holm's whole-gate pass rate for independent tests: ≥ 95 %
    tolerance = 3 * np.sqrt(0.95 * 0.05 / N_RUNS)  # binomial, 3σ
    assert abs(gate - expected) < tolerance and gate > 0.95 - tolerance
    assert per_stage < 0.95 - tolerance  # a family per stage: about 0.95³
    assert per_test < 0.95 - tolerance  # a test at 5 % each: about 0.95¹⁰


def test_the_run_gate_decides_each_stages_calibration():
    rng = np.random.default_rng(1)
    run = _null_run(rng)
    run["gas_nvt"]["scalar 0"] = statistics.difference_significance(2.1, 1.0, 0.0, 0.0)  # p = 0.036 alone
    results = {"gas_nve": {"null": run["gas_nve"], "calibration": statistics.null_calibration(run["gas_nve"])},
               "gas_nvt": {"null": run["gas_nvt"], "calibration": statistics.null_calibration(run["gas_nvt"])},
               "liquid": {"verdicts": {"raw-repeat": run["liquid"]},
                          "calibration": {**statistics.null_calibration(run["liquid"]), "conclusive": False, "passed": False}}}
    assert not results["gas_nvt"]["calibration"]["passed"]  # fails at 5 % on its own
    gate = run_gate(results)
    assert gate["n_tests"] == 10 and gate["correction"].startswith("Holm over all 10 null tests")
    view = gated(results, gate)
    assert view["gas_nvt"]["calibration"]["passed"] and "Holm" in view["gas_nvt"]["calibration"]["verdict"]
    assert view["gas_nvt"]["calibration"]["family"]["adjusted_p"]["scalar 0"] > 0.05
    assert not view["liquid"]["calibration"]["passed"] and view["liquid"]["withheld"]  # inconclusive stays withheld
    assert not results["gas_nvt"]["calibration"]["passed"]  # the stage's own results are left as they were
