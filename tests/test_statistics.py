"""Known-answer tests of the uncertainty estimates and significance verdicts."""

import numpy as np
import pytest
from scipy import signal

from symprobe.statistics import (
    block_average,
    blocking_levels,
    curve_difference_significance,
    curve_mean_and_error,
    difference_significance,
    family_significance,
    mean_and_error,
    mean_vector_significance,
)


def ar1(phi: float, n: int, seed: int) -> np.ndarray:
    """x_t = φ x_{t−1} + ε_t with unit-variance ε."""
    noise = np.random.default_rng(seed).normal(size=n)
    return signal.lfilter([1.0], [1.0, -phi], noise)


@pytest.mark.parametrize("phi, seed", [(0.9, 0), (0.9, 1), (0.5, 2), (0.97, 3)])
def test_block_average_matches_ar1_analytic_error(phi, seed):
    n = 2**16
    series = ar1(phi, n, seed)
    # Var x = 1/(1−φ²); integrated correlation time (1+φ)/(1−φ) ⇒ Var(mean) = Var x · (1+φ)/(1−φ) / n
    analytic = np.sqrt(1.0 / (1.0 - phi**2) * (1.0 + phi) / (1.0 - phi) / n)
    result = block_average(series)
    assert 0.7 < result.stderr / analytic < 1.3
    assert result.n_blocks >= 8
    naive = series.std(ddof=1) / np.sqrt(n)
    assert result.stderr > 1.4 * naive  # correlation is detected, not ignored (ratio √3 at φ = 0.5)


def test_block_average_white_noise_and_constant():
    x = np.random.default_rng(4).normal(3.0, 2.0, size=4096)
    result = block_average(x)
    assert result.mean == pytest.approx(x.mean())
    assert result.stderr == pytest.approx(2.0 / 64.0, rel=0.25)
    assert block_average(np.full(100, 1.5)) == (1.5, 0.0, 100)


def test_blocking_levels_halve_the_series():
    levels = blocking_levels(np.arange(10.0))
    assert [(lv.block_size, lv.n_blocks) for lv in levels] == [(1, 10), (2, 5), (4, 2)]
    with pytest.raises(ValueError, match="at least 2 samples"):
        blocking_levels([1.0])
    with pytest.raises(ValueError, match="NaN"):
        blocking_levels([1.0, np.nan, 2.0])


def test_mean_and_error_of_independent_values():
    mean, error = mean_and_error([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert error == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.0)
    with pytest.raises(ValueError, match="at least 2"):
        mean_and_error([1.0])


def test_difference_significance_known_z():
    verdict = difference_significance(1.0, 0.3, 0.0, 0.4)  # σ = 0.5 ⇒ z = 2, p = 0.0455
    assert verdict["z"] == pytest.approx(2.0)
    assert verdict["p_value"] == pytest.approx(0.04550026, rel=1e-6)
    assert verdict["significant"]
    assert "significant at 95 %" in verdict["verdict"]
    assert not difference_significance(1.0, 0.3, 0.0, 0.4, confidence=0.99)["significant"]
    # the same z from errors estimated with 3 degrees of freedom is weak evidence (Welch t-test)
    assert not difference_significance(1.0, 0.3, 0.0, 0.4, dof=3)["significant"]
    assert not difference_significance(2.0, 0.0, 2.0, 0.0)["significant"]
    assert difference_significance(2.0, 0.0, 1.0, 0.0)["significant"]
    with pytest.raises(ValueError, match="confidence"):
        difference_significance(1.0, 0.1, 0.0, 0.1, confidence=95)
    with pytest.raises(ValueError, match="errors ≥ 0"):
        difference_significance(1.0, -0.1, 0.0, 0.1)


def test_curve_mean_and_error_blocks_and_ratio():
    rng = np.random.default_rng(5)
    per_frame = rng.normal(2.0, 1.0, size=(4000, 3))
    mean, error = curve_mean_and_error(per_frame, n_blocks=20)
    assert np.allclose(mean, per_frame.mean(axis=0))
    assert np.allclose(error, 1.0 / np.sqrt(4000), rtol=0.4)
    # ratio estimator: Σ sums / Σ counts, empty bins give NaN
    sums = np.array([[2.0, 0.0], [4.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    counts = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    mean, error = curve_mean_and_error(sums, n_blocks=2, counts=counts)
    assert mean[0] == pytest.approx(10.0 / 5.0)
    assert error[0] == pytest.approx(np.std([6.0 / 3.0, 4.0 / 2.0], ddof=1) / np.sqrt(2))
    assert np.isnan(mean[1]) and np.isnan(error[1])
    with pytest.raises(ValueError, match="cannot be split"):
        curve_mean_and_error(per_frame[:5], n_blocks=10)


def test_curve_difference_false_alarm_rate_and_power():
    rng = np.random.default_rng(6)
    n_blocks, n_bins = 10, 40
    alarms = 0
    for _ in range(200):
        a_mean, a_err = curve_mean_and_error(rng.normal(size=(n_blocks, n_bins)), n_blocks=n_blocks)
        b_mean, b_err = curve_mean_and_error(rng.normal(size=(n_blocks, n_bins)), n_blocks=n_blocks)
        alarms += curve_difference_significance(a_mean, a_err, b_mean, b_err, dof=n_blocks - 1)["significant"]
    assert alarms <= 25  # family-wise rate ≤ 5 % (expected ≤ 10 of 200)
    shifted = rng.normal(size=(n_blocks, n_bins))
    shifted[:, 17] += 5.0  # one bin moved by ~15 standard errors
    a_mean, a_err = curve_mean_and_error(shifted, n_blocks=n_blocks)
    b_mean, b_err = curve_mean_and_error(rng.normal(size=(n_blocks, n_bins)), n_blocks=n_blocks)
    result = curve_difference_significance(a_mean, a_err, b_mean, b_err, dof=n_blocks - 1)
    assert result["significant"] and result["worst_bin"] == 17
    with pytest.raises(ValueError, match="shapes differ"):
        curve_difference_significance(a_mean, a_err, b_mean[:-1], b_err)


def test_family_of_comparisons_keeps_the_claims_false_alarm_rate():
    """16 null comparisons (8 scalars, 8 curves of 20 bins) per trial: testing each at 5 % rejects a true claim
    in about half the trials; the family verdict in at most ~5 %. A real difference is still found."""
    rng = np.random.default_rng(11)

    def family(shift: float = 0.0) -> dict:
        tests = {}
        for k in range(8):
            a, b = rng.normal(size=10), rng.normal(size=10) + (shift if k == 3 else 0.0)
            tests[f"scalar{k}"] = difference_significance(a.mean(), a.std(ddof=1) / 10**0.5, b.mean(), b.std(ddof=1) / 10**0.5, dof=9)
            curves = [curve_mean_and_error(rng.normal(size=(10, 20)), n_blocks=10) for _ in range(2)]
            tests[f"curve{k}"] = curve_difference_significance(*curves[0], *curves[1], dof=9)
        return tests

    trials = [family() for _ in range(300)]
    any_single = sum(any(t["significant"] for t in tests.values()) for tests in trials)
    any_family = sum(bool(family_significance(tests)["significant"]) for tests in trials)
    assert any_single > 90 and any_family <= 27  # ≈ 1 − 0.95^16 ≈ 45 % vs ≤ 5 % (expected ≤ 15 of 300)
    assert family_significance(family(shift=4.0))["significant"] == ["scalar3"]  # 4 σ per sample: ~9 standard errors
    with pytest.raises(ValueError, match="at least one test"):
        family_significance({})


def test_mean_vector_test_keeps_its_false_alarm_rate_with_few_samples():
    """27 Gaussian samples of 8 components with zero mean (the study's 27 molecules, ℓ ≤ 2 coefficients):
    Hotelling's T² rejects at the nominal 5 %; a χ² on per-component standard errors would reject ~9 %.
    With a mean shifted by one standard error per component the test has power."""
    rng = np.random.default_rng(0)
    covariance = np.diag(np.linspace(0.5, 2.0, 8))
    trials = [rng.multivariate_normal(np.zeros(8), covariance, size=27) for _ in range(2000)]
    rate = np.mean([mean_vector_significance(x)["significant"] for x in trials])
    assert abs(rate - 0.05) < 0.015  # binomial σ ≈ 0.005
    naive = np.mean([np.sum((x.mean(0) / (x.std(0, ddof=1) / np.sqrt(27))) ** 2) > 15.507 for x in trials])
    assert naive > 0.07  # χ²(8) at 95 %: the test that T² replaces is too eager
    shifted = [rng.multivariate_normal(np.sqrt(np.diag(covariance)), covariance, size=27) for _ in range(200)]
    assert np.mean([mean_vector_significance(x)["significant"] for x in shifted]) > 0.9


def test_mean_vector_test_with_fewer_samples_than_components():
    """n ≤ p: per-component t-tests with Bonferroni; a clear error for one sample or NaN."""
    rng = np.random.default_rng(1)
    result = mean_vector_significance(rng.normal(size=(6, 8)))
    assert result["method"].startswith("t per component") and result["t2"] is None and 0 <= result["p_value"] <= 1
    assert mean_vector_significance(rng.normal(size=(6, 8)) + 5.0)["significant"]
    with pytest.raises(ValueError, match="n ≥ 2"):
        mean_vector_significance(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mean_vector_significance(np.full((5, 2), np.nan))
