"""Known-answer tests of the uncertainty estimates and significance verdicts."""

import numpy as np
import pytest
from scipy import signal

from symprobe.analysis.statistics import (
    block_average,
    blocking_levels,
    curve_blocks,
    curve_difference_significance,
    curve_mean_and_error,
    curve_permutation_test,
    detectable_effect,
    difference_significance,
    equivalence_test,
    family_significance,
    mean_and_error,
    mean_vector_difference,
    mean_vector_significance,
    null_calibration,
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
    assert block_average(np.full(100, 1.5))[:3] == (1.5, 0.0, 100)


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


def test_two_sample_mean_vector_test_has_its_nominal_size_and_power():
    """The gas-phase null comparison: two sets of 40 and 27 molecules' 8 coefficients from one distribution are
    called different 5 % of the time (binomial σ ≈ 0.005); χ²/dof averages 1; a shift of two standard errors of
    the difference per component (noncentrality 32) is found."""
    rng = np.random.default_rng(2)
    covariance = np.diag(np.linspace(0.5, 2.0, 8))
    draw = lambda n, mean=np.zeros(8): rng.multivariate_normal(mean, covariance, size=n)  # noqa: E731
    results = [mean_vector_difference(draw(40), draw(27)) for _ in range(2000)]
    assert abs(np.mean([r["significant"] for r in results]) - 0.05) < 0.015
    assert abs(np.mean([r["chi2_per_dof"] for r in results]) - 1.0) < 0.15  # F-distributed: mean slightly above 1
    shift = 2.0 * np.sqrt(np.diag(covariance) * (1 / 40 + 1 / 27))
    assert np.mean([mean_vector_difference(draw(40, shift), draw(27))["significant"] for _ in range(200)]) > 0.9
    few = mean_vector_difference(draw(4), draw(3))
    assert few["method"].startswith("Welch") and 0 <= few["p_value"] <= 1
    with pytest.raises(ValueError, match="same p"):
        mean_vector_difference(np.zeros((5, 3)), np.zeros((5, 2)))


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


# ---------------------------------------------------------------------------------------------------
# Calibration: false-alarm rates and sizes that the study's verdicts rely on (issue 14)


def monte_carlo_band(rate: float, trials: int) -> tuple[float, float]:
    """A 3σ Monte Carlo band around a nominal rate."""
    sigma = np.sqrt(rate * (1 - rate) / trials)
    return rate - 3 * sigma, rate + 3 * sigma


def test_null_comparison_of_ar1_series_has_nominal_false_alarm_rate():
    """Two independent AR(1) series of the same process (τ = 19 samples), block-averaged and compared with
    the Welch test: the false-alarm rate at 95 % is 5 % within its Monte Carlo error, and the blocking
    plateau is reached."""
    phi, n, trials = 0.9, 4096, 1500
    rng = np.random.default_rng(20)
    series = signal.lfilter([1.0], [1.0, -phi], rng.normal(size=(2 * trials, n)), axis=1)
    averages = [block_average(x) for x in series]
    assert np.mean([a.plateau for a in averages]) > 0.95
    alarms = [difference_significance(a.mean, a.stderr, b.mean, b.stderr, dof=min(a.n_blocks, b.n_blocks) - 1)["significant"]
              for a, b in zip(averages[::2], averages[1::2])]
    low, high = monte_carlo_band(0.05, trials)
    assert low < np.mean(alarms) < high


def test_block_average_reports_a_missed_plateau():
    """A series far shorter than its correlation time (τ ≈ 1000 samples, 512 samples) does not reach the plateau."""
    x = signal.lfilter([1.0], [1.0, -0.999], np.random.default_rng(21).normal(size=512))
    assert not block_average(x).plateau


def test_curve_permutation_test_has_nominal_size_on_correlated_bins():
    """Curves whose bins are strongly correlated (a smooth random shape per frame) and whose frames are
    AR(1)-correlated in time: the per-bin χ² ignores the bin correlation, the permutation test does not, and
    its false-alarm rate is 5 % within the Monte Carlo error."""
    rng = np.random.default_rng(22)
    trials, frames, bins, blocks = 300, 400, 30, 10
    x = np.linspace(0.0, 1.0, bins)
    shapes = np.stack([np.sin(np.pi * k * x) / k for k in range(1, 5)])  # (4, bins): smooth, correlated bins
    alarms = []
    for trial in range(trials):
        amplitudes = signal.lfilter([1.0], [1.0, -0.8], rng.normal(size=(2, frames, 4)), axis=1)
        curves = amplitudes @ shapes + 0.05 * rng.normal(size=(2, frames, bins))
        a, b = (curve_blocks(c, blocks) for c in curves)
        alarms.append(curve_permutation_test(a, b, n_permutations=200, seed=trial)["significant"])
    low, high = monte_carlo_band(0.05, trials)
    assert low < np.mean(alarms) < high
    shifted = curve_permutation_test(a, b + 2.0 * shapes[0])
    assert shifted["significant"] and shifted["chi2_per_dof"] > shifted["null_chi2_per_dof"][2]
    few = curve_permutation_test(a[:2], b[:2])
    assert few["splits"] == 6 and few["min_p_value"] == pytest.approx(1 / 7) and not few["significant"]


def test_equivalence_test_has_nominal_size_and_power():
    """At a true difference equal to the margin, TOST declares equivalence at most 5 % of the time (Gaussian
    errors: exactly 5 % when σ ≪ margin; Student t for errors estimated from 6 + 6 samples); at zero true
    difference and σ = margin/4 it declares it almost always."""
    rng = np.random.default_rng(23)
    trials, margin, sigma = 2000, 1.0, 0.1
    declared = [equivalence_test(d, sigma / np.sqrt(2), 0.0, sigma / np.sqrt(2), margin)["equivalent"]
                for d in rng.normal(margin, sigma, size=trials)]
    low, high = monte_carlo_band(0.05, trials)
    assert low < np.mean(declared) < high
    samples = rng.normal(0.0, 1.0, size=(trials, 2, 6)) + np.array([margin, 0.0])[None, :, None]
    mean, err = samples.mean(axis=2), samples.std(axis=2, ddof=1) / np.sqrt(6)
    declared_t = [equivalence_test(m[0], e[0], m[1], e[1], margin, dof=10)["equivalent"] for m, e in zip(mean, err)]
    assert np.mean(declared_t) < high
    assert np.mean([equivalence_test(d, 0.25 / np.sqrt(2), 0.0, 0.25 / np.sqrt(2), margin)["equivalent"]
                    for d in rng.normal(0.0, 0.25, size=500)]) > 0.95
    result = equivalence_test(0.2, 0.1, 0.0, 0.0, 1.0)
    assert result["bound"] == pytest.approx(0.2 + 1.6449 * 0.1, rel=1e-4) and "bounds |Δ| <" in result["verdict"]


def test_detectable_effect_has_the_stated_power():
    """A true difference equal to the stated detectable effect is found significant 80 % of the time."""
    rng = np.random.default_rng(24)
    sigma, trials = 0.3, 2000
    effect = detectable_effect(sigma)
    assert effect == pytest.approx((1.95996 + 0.84162) * sigma, rel=1e-4)
    found = [difference_significance(d, sigma, 0.0, 0.0)["significant"] for d in rng.normal(effect, sigma, size=trials)]
    low, high = monte_carlo_band(0.8, trials)
    assert low < np.mean(found) < high
    assert detectable_effect(sigma, n_tests=20) > effect and detectable_effect(sigma, dof=3) > effect


def test_null_calibration_passes_a_true_null_and_fails_a_biased_one():
    good = {"scalar": difference_significance(1.0, 0.5, 0.8, 0.5), "curve": curve_difference_significance(
        np.zeros(10), np.ones(10), np.full(10, 0.3), np.ones(10))}
    passed = null_calibration(good)
    assert passed["passed"] and passed["false_alarms"] == 0 and "calibrated" in passed["verdict"]
    bad = {**good, "scalar": difference_significance(3.0, 0.5, 0.0, 0.5)}
    failed = null_calibration(bad)
    assert not failed["passed"] and failed["family"]["significant"] == ["scalar"] and "no verdicts" in failed["verdict"]
    assert failed["chi2_per_dof"]["scalar"] == pytest.approx(18.0)
