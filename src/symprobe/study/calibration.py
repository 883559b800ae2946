"""The study's calibration gate over the whole run: the null comparisons (raw against a second raw set) of every stage
that has one form one family, Holm-corrected (:func:`~symprobe.analysis.statistics.calibration_gate`), so that a run
in which nothing differs passes the whole gate 95 % of the time. :func:`gated` gives the stages' results as the
findings and the report read them: each stage's ``calibration`` says whether it passes under that correction (a
stage whose null comparison is inconclusive, with too few replicas, still fails); the cached stage results
themselves are left as their stages wrote them."""

from __future__ import annotations

from typing import Any

from symprobe.analysis import statistics
from symprobe.study.variants import REPEAT


def null_tests(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage's null tests by name (stages without a null comparison left out)."""
    tests = {stage: results.get(stage, {}).get("null") for stage in ("gas_nve", "gas_nvt")}
    tests["liquid"] = results.get("liquid", {}).get("verdicts", {}).get(REPEAT)
    return {stage: found for stage, found in tests.items() if found}


def run_gate(results: dict[str, Any]) -> dict[str, Any] | None:
    """The run's gate over the stages' null tests (None when there are none)."""
    tests = null_tests(results)
    return statistics.calibration_gate(tests) if tests else None


def gated(results: dict[str, Any], gate: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of the stages' ``results`` whose ``calibration`` entries follow ``gate`` (:func:`run_gate`): ``passed``,
    ``family`` (the Holm-adjusted p-values of the stage's tests), ``correction`` and ``verdict``; the liquid's
    ``withheld`` too. Without a gate, ``results`` as they are."""
    if gate is None:
        return results
    out = dict(results)
    alpha = 1.0 - gate["confidence"]
    for stage, adjusted in gate["adjusted_p"].items():
        calibration = results[stage].get("calibration")
        if calibration is None:
            continue
        significant = sorted(name for name, p in adjusted.items() if p < alpha)
        updated = {**calibration, "correction": gate["correction"],
                   "family": {"n_tests": gate["n_tests"], "adjusted_p": adjusted, "confidence": gate["confidence"],
                              "significant": significant}}
        if calibration.get("conclusive", True):  # an inconclusive null comparison stays withheld
            updated["passed"] = gate["stage_passed"][stage]
            updated["verdict"] = (
                f"calibrated: two runs of the same variant agree within their error bars ({gate['correction']})"
                if updated["passed"] else
                f"not calibrated: two runs of the same variant differ in {', '.join(significant)} "
                f"(Holm-adjusted p = {min(adjusted[name] for name in significant):.2g}, {gate['correction']}); either the "
                f"error bars are too small for these runs or this is one of the {100 * alpha:g} % false alarms of a correct "
                "comparison, so this stage issues no verdicts")
        out[stage] = {**results[stage], "calibration": updated}
        if stage == "liquid":
            out[stage]["withheld"] = not updated["passed"]
    return out
