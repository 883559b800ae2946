"""The study's calibration gate over the whole run: the null comparisons (raw against a second raw set) of every stage
that has one form one family, Holm-corrected (:func:`~symprobe.analysis.statistics.calibration_gate`), so that a run
in which nothing differs passes the whole gate 95 % of the time. Each stage's ``calibration`` then says whether it
passes under that correction; a stage whose null comparison is inconclusive (too few replicas) still fails."""

from __future__ import annotations

from typing import Any

from symprobe.analysis import statistics
from symprobe.study.variants import REPEAT

NULL_STAGES = ("gas_nve", "gas_nvt", "liquid")


def null_tests(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage's null tests by name (stages without a null comparison left out)."""
    tests = {stage: results.get(stage, {}).get("null") for stage in ("gas_nve", "gas_nvt")}
    tests["liquid"] = results.get("liquid", {}).get("verdicts", {}).get(REPEAT)
    return {stage: found for stage, found in tests.items() if found}


def apply_run_gate(results: dict[str, Any]) -> dict[str, Any] | None:
    """The run's gate (None without null tests); each stage's ``calibration`` is updated in place to it: ``passed``,
    ``family`` (the Holm-adjusted p-values of its tests), ``correction`` and ``verdict``."""
    tests = null_tests(results)
    if not tests:
        return None
    gate = statistics.calibration_gate(tests)
    alpha = 1.0 - gate["confidence"]
    for stage, stage_tests in tests.items():
        calibration = results[stage].get("calibration")
        if calibration is None:
            continue
        adjusted = gate["adjusted_p"][stage]
        significant = sorted(name for name, p in adjusted.items() if p < alpha)
        calibration["family"] = {"n_tests": gate["n_tests"], "adjusted_p": adjusted, "confidence": gate["confidence"],
                                 "significant": significant}
        calibration["correction"] = gate["correction"]
        if not calibration.get("conclusive", True):
            continue  # too few replicas for the null comparison to mean anything: stays withheld
        calibration["passed"] = gate["stage_passed"][stage]
        calibration["verdict"] = (
            f"calibrated: two runs of the same variant agree within their error bars ({gate['correction']})"
            if calibration["passed"] else
            f"not calibrated: two runs of the same variant differ in {', '.join(significant)} "
            f"(Holm-adjusted p = {min(adjusted[name] for name in significant):.2g}, {gate['correction']}); either the error "
            f"bars are too small for these runs or this is one of the {100 * alpha:g} % false alarms of a correct comparison, "
            "so this stage issues no verdicts")
        if stage == "liquid":
            results[stage]["withheld"] = not calibration["passed"]
    return gate
