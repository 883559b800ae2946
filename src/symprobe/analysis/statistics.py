"""Statistical uncertainties and significance verdicts for observables.

- Correlated time series: :func:`block_average` (Flyvbjerg–Petersen blocking, plateau chosen by the
  criterion of Lee, Needs & Towler, Phys. Rev. B 83, 245117 (2011)).
- Independent runs: :func:`mean_and_error`; a mean vector against zero: :func:`mean_vector_significance`
  (Hotelling's T², exact for few samples where a χ² on per-component errors is not).
- Curves (g(r), c(t), orientation maps): per-bin errors from contiguous blocks of frames,
  :func:`curve_mean_and_error`.
- Verdicts: :func:`difference_significance` (two-sided z-test, or Welch t-test when the errors come from
  few blocks or runs) for scalars and :func:`curve_difference_significance` (smallest per-bin p-value
  against a Bonferroni-corrected level, χ²/dof reported beside it) for curves; :func:`family_significance`
  for a claim tested by many of them (Bonferroni over the tests); :func:`calibration_gate` for all of a run's
  null comparisons (Holm over the tests). The default confidence is 95 % (α = 0.05) everywhere.

All functions keep the units of their input.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95


class Estimate(NamedTuple):
    """A value and its standard error (same unit)."""

    mean: float
    error: float


class BlockAverage(NamedTuple):
    """Mean of a correlated series, its standard error, the number of blocks at the chosen level and whether
    the blocking plateau was reached (when not, the error is a lower bound in spirit: the series is too
    short for its correlation time)."""

    mean: float
    stderr: float
    n_blocks: int
    plateau: bool = True


class BlockingLevel(NamedTuple):
    """One level of the blocking transformation: block size (samples), number of blocks, the standard
    error of the mean estimated at this level and the uncertainty of that estimate."""

    block_size: int
    n_blocks: int
    stderr: float
    stderr_error: float


def blocking_levels(series: np.ndarray) -> list[BlockingLevel]:
    """Flyvbjerg–Petersen levels: average neighbouring pairs repeatedly (dropping an odd last sample)
    while at least two blocks remain."""
    x = np.asarray(series, dtype=np.float64).ravel()
    if len(x) < 2:
        raise ValueError(f"blocking needs at least 2 samples, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the series contains NaN or infinite values")
    levels, size = [], 1
    while len(x) >= 2:
        n = len(x)
        stderr = float(np.sqrt(x.var(ddof=1) / n))
        levels.append(BlockingLevel(size, n, stderr, stderr / np.sqrt(2.0 * (n - 1))))
        x = 0.5 * (x[: n - n % 2 : 2] + x[1 : n - n % 2 : 2])
        size *= 2
    return levels


def block_average(series: np.ndarray, min_blocks: int = 8) -> BlockAverage:
    """Mean and standard error of a correlated series by blocking.

    The level is the smallest block size B with B³ > 2 N (σ_B/σ_1)⁴ (Lee et al. 2011; N samples, σ_B the
    standard error at block size B). When no level with at least ``min_blocks`` blocks meets it, the series
    is too short to reach the plateau and the largest standard error among those levels is returned (a
    conservative choice).
    """
    x = np.asarray(series, dtype=np.float64).ravel()
    levels = blocking_levels(x)
    usable = [level for level in levels if level.n_blocks >= min_blocks] or levels[:1]
    mean = float(x.mean())
    first = levels[0].stderr
    if first == 0.0:
        return BlockAverage(mean, 0.0, levels[0].n_blocks)
    for level in usable:
        if level.block_size**3 > 2.0 * len(x) * (level.stderr / first) ** 4:
            return BlockAverage(mean, level.stderr, level.n_blocks)
    largest = max(usable, key=lambda level: level.stderr)
    return BlockAverage(mean, largest.stderr, largest.n_blocks, plateau=False)


def mean_and_error(independent_values: np.ndarray) -> Estimate:
    """Mean and standard error (sample standard deviation / √n) of independent values (e.g. runs)."""
    x = np.asarray(independent_values, dtype=np.float64).ravel()
    if len(x) < 2:
        raise ValueError(f"an error from independent values needs at least 2 of them, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the values contain NaN or infinite entries")
    return Estimate(float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))))


def curve_blocks(per_frame: np.ndarray, n_blocks: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Per-bin values of ``n_blocks`` contiguous blocks of frames (n_blocks, ...): block means, or with
    ``counts`` (same shape as ``per_frame``, which then holds per-frame sums) Σ sums / Σ counts per block
    (a ratio estimator, e.g. c_L(r)); NaN where a block has no data in a bin."""
    values = np.asarray(per_frame, dtype=np.float64)
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be at least 2, got {n_blocks}")
    if len(values) < n_blocks:
        raise ValueError(f"{len(values)} frames cannot be split into {n_blocks} blocks")
    if counts is not None and np.shape(counts) != values.shape:
        raise ValueError(f"counts shape {np.shape(counts)} differs from per_frame shape {values.shape}")
    size = len(values) // n_blocks
    shape = (n_blocks, size) + values.shape[1:]
    sums = values[: size * n_blocks].reshape(shape).sum(axis=1)
    weights = (np.full(values.shape, 1.0) if counts is None else np.asarray(counts, dtype=np.float64))
    return ratio_or_nan(sums, weights[: size * n_blocks].reshape(shape).sum(axis=1))


def curve_mean_and_error(per_frame: np.ndarray, n_blocks: int = 10, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard error of a curve sampled per frame, from the ``n_blocks`` contiguous blocks of
    :func:`curve_blocks` (same arguments). Blocks must be longer than the correlation time for the error to be
    honest; bins empty in a block are ignored (NaN where every block is empty; error NaN where fewer than two
    blocks have data). With ``counts`` the mean is Σ sums / Σ counts over all frames."""
    blocks = curve_blocks(per_frame, n_blocks, counts)
    values = np.asarray(per_frame, dtype=np.float64)
    used = len(values) // n_blocks * n_blocks
    weights = np.full(values.shape, 1.0) if counts is None else np.asarray(counts, dtype=np.float64)
    mean = ratio_or_nan(values[:used].sum(axis=0), weights[:used].sum(axis=0))
    _, error = blocks_mean_and_error(blocks)
    return mean, error


def blocks_mean_and_error(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard error over independent blocks or replicas (n, ...), ignoring NaN entries
    (error NaN where fewer than two have data)."""
    blocks = np.asarray(blocks, dtype=np.float64)
    valid = np.isfinite(blocks)
    n_valid = valid.sum(axis=0)
    centre = ratio_or_nan(np.where(valid, blocks, 0.0).sum(axis=0), n_valid.astype(np.float64))
    squares = np.where(valid, (blocks - centre) ** 2, 0.0).sum(axis=0)
    error = np.full(centre.shape, np.nan)
    np.divide(np.sqrt(squares), np.sqrt(n_valid * (n_valid - 1.0)), out=error, where=n_valid >= 2)
    return centre, error


def mean_vector_significance(samples: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Is the mean of ``samples`` (n independent vectors of p components) zero? Hotelling's T² test.

    T² = n c̄ᵀ S⁻¹ c̄ with the sample covariance S; (n − p)/(p(n − 1)) T² follows F(p, n − p) exactly for
    Gaussian samples. A χ² on per-component standard errors ignores that the errors are estimated: with 27
    samples of 8 components it rejects a true zero mean about 9 % of the time at 95 % confidence, T² 5 %.
    With n ≤ p (too few samples for a covariance) it falls back to one Student t-test per component,
    Bonferroni over the p components. Returns ``method``, ``t2`` and ``f`` (None in the fallback), ``dof``
    (p, n − p; or n − 1), ``p_value`` and ``significant``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must be (n ≥ 2, p), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the samples contain NaN or infinite entries")
    n, p = x.shape
    mean = x.mean(axis=0)
    if n <= p:
        t = mean / np.maximum(x.std(axis=0, ddof=1) / np.sqrt(n), 1e-300)
        p_value = float(min(1.0, p * np.min(2.0 * stats.t.sf(np.abs(t), n - 1))))
        return {"method": "t per component, Bonferroni", "t2": None, "f": None, "dof": [n - 1], "p_value": p_value,
                "confidence": confidence, "significant": bool(p_value < 1.0 - confidence)}
    covariance = np.atleast_2d(np.cov(x, rowvar=False))
    t2 = float(n * mean @ np.linalg.lstsq(covariance, mean, rcond=None)[0])
    f = (n - p) / (p * (n - 1)) * t2
    p_value = float(stats.f.sf(f, p, n - p))
    return {"method": "Hotelling T²", "t2": t2, "f": f, "dof": [p, n - p], "p_value": p_value, "confidence": confidence,
            "significant": bool(p_value < 1.0 - confidence)}


def mean_vector_difference(a: np.ndarray, b: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Do two sets of independent vectors (n_a, p) and (n_b, p) share their mean? Two-sample Hotelling T².

    T² = n_a n_b/(n_a + n_b) Δᵀ S⁻¹ Δ with the pooled covariance S; (n − p − 1)/(p(n − 2)) T² follows
    F(p, n − p − 1) for Gaussian samples (n = n_a + n_b). ``chi2_per_dof`` is T²/p, ≈ 1 when the means agree.
    With n − 2 ≤ p it falls back to one Welch t-test per component, Bonferroni over the p components.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"need two (n ≥ 2, p) arrays with the same p, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("the samples contain NaN or infinite entries")
    (na, p), nb = x.shape, len(y)
    delta = x.mean(axis=0) - y.mean(axis=0)
    if na + nb - 2 <= p:
        error = np.sqrt(x.var(axis=0, ddof=1) / na + y.var(axis=0, ddof=1) / nb)
        t = delta / np.maximum(error, 1e-300)
        p_value = float(min(1.0, p * np.min(2.0 * stats.t.sf(np.abs(t), min(na, nb) - 1))))
        return {"method": "Welch t per component, Bonferroni", "t2": None, "chi2_per_dof": float(np.mean(t**2)),
                "dof": [min(na, nb) - 1], "p_value": p_value, "confidence": confidence,
                "significant": bool(p_value < 1.0 - confidence)}
    pooled = ((na - 1) * np.atleast_2d(np.cov(x, rowvar=False)) + (nb - 1) * np.atleast_2d(np.cov(y, rowvar=False))) / (na + nb - 2)
    t2 = float(na * nb / (na + nb) * delta @ np.linalg.lstsq(pooled, delta, rcond=None)[0])
    dof2 = na + nb - p - 1
    p_value = float(stats.f.sf(dof2 / (p * (na + nb - 2)) * t2, p, dof2))
    return {"method": "two-sample Hotelling T²", "t2": t2, "chi2_per_dof": t2 / p, "dof": [p, dof2], "p_value": p_value,
            "confidence": confidence, "significant": bool(p_value < 1.0 - confidence)}


def ratio_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is not positive."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _two_sided_p(z: np.ndarray, a_err: np.ndarray, b_err: np.ndarray, dof: float | None) -> np.ndarray:
    """Two-sided p-values of z = Δ/σ: Gaussian, or Student t with the Welch–Satterthwaite degrees of
    freedom when each error was estimated with ``dof`` degrees of freedom."""
    if dof is None:
        return 2.0 * stats.norm.sf(np.abs(z))
    if dof <= 0:
        raise ValueError(f"dof must be positive, got {dof}")
    a4, b4 = np.asarray(a_err, dtype=np.float64) ** 4, np.asarray(b_err, dtype=np.float64) ** 4
    with np.errstate(invalid="ignore", divide="ignore"):
        welch = np.where(a4 + b4 > 0, (np.sqrt(a4) + np.sqrt(b4)) ** 2 / ((a4 + b4) / dof), dof)
    return 2.0 * stats.t.sf(np.abs(z), welch)


def difference_significance(
    a_mean: float,
    a_err: float,
    b_mean: float,
    b_err: float,
    confidence: float = DEFAULT_CONFIDENCE,
    dof: float | None = None,
) -> dict:
    """Two-sided test of a − b against zero with independent errors.

    A z-test (Gaussian) by default; with ``dof`` (the degrees of freedom each error was estimated with,
    e.g. n_runs − 1) a Welch t-test. Returns ``difference``, ``error`` (√(a_err² + b_err²)), ``z``,
    ``p_value``, ``confidence``, ``significant`` (p < 1 − confidence) and a one-line ``verdict``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if a_err < 0 or b_err < 0 or not np.isfinite([a_mean, a_err, b_mean, b_err]).all():
        raise ValueError(f"means and errors must be finite with errors ≥ 0, got {a_mean}±{a_err} and {b_mean}±{b_err}")
    difference = float(a_mean - b_mean)
    error = float(np.hypot(a_err, b_err))
    if error == 0.0:
        z = 0.0 if difference == 0.0 else float(np.copysign(np.inf, difference))
    else:
        z = difference / error
    p_value = float(_two_sided_p(np.asarray(z), np.asarray(a_err), np.asarray(b_err), dof))
    significant = p_value < 1.0 - confidence
    detectable = detectable_effect(error, confidence, dof=dof)
    verdict = (
        f"{'significant' if significant else 'not significant'} at {100 * confidence:g} % confidence: "
        f"difference {difference:.4g} ± {error:.2g} (z = {z:.2f}, p = {p_value:.3g}); "
        f"the run detects differences ≥ {detectable:.2g} with 80 % power"
    )
    return {
        "difference": difference,
        "error": error,
        "z": float(z),
        "p_value": p_value,
        "confidence": confidence,
        "significant": bool(significant),
        "detectable_effect": detectable,
        "verdict": verdict,
    }


def curve_difference_significance(
    a_mean: np.ndarray,
    a_err: np.ndarray,
    b_mean: np.ndarray,
    b_err: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    dof: float | None = None,
) -> dict:
    """Are two curves (same bins) different beyond their per-bin errors?

    Each bin gets a two-sided p-value of Δ/σ (Gaussian, or Welch t when the errors come from few blocks:
    pass ``dof`` = n_blocks − 1). The verdict is Bonferroni: significant when the smallest p-value is
    below (1 − confidence)/n_bins, so the family-wise false-alarm rate stays below 1 − confidence for any
    number of (possibly correlated) bins. χ²/dof of Δ/σ and its p-value (independent Gaussian bins
    assumed) are reported beside it. Bins with zero error are skipped: inside the core (g(r) = 0 in both) and
    where a few counts fell into one block only, which gives no error estimate (counted as ``bins_without_error``).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    a, sa, b, sb = (np.asarray(v, dtype=np.float64).ravel() for v in (a_mean, a_err, b_mean, b_err))
    if not (a.shape == sa.shape == b.shape == sb.shape):
        raise ValueError(f"curve shapes differ: {a.shape}, {sa.shape}, {b.shape}, {sb.shape}")
    sigma = np.hypot(sa, sb)
    delta = a - b
    # a bin without an error estimate (σ = 0: too few counts for its blocks to scatter) cannot be tested
    usable = np.isfinite(delta) & np.isfinite(sigma) & (sigma > 0)
    if not usable.any():
        raise ValueError("no bin has finite values and nonzero errors to compare")
    z = delta[usable] / sigma[usable]
    p_values = _two_sided_p(z, sa[usable], sb[usable], dof)
    n_bins = int(usable.sum())
    alpha_per_bin = (1.0 - confidence) / n_bins
    worst = int(np.argmin(p_values))
    chi2 = float(np.sum(z**2))
    significant = bool(p_values[worst] < alpha_per_bin)
    detectable = detectable_effect(float(np.median(sigma[usable])), confidence, dof=dof, n_tests=n_bins)
    verdict = (
        f"{'significant' if significant else 'not significant'} at {100 * confidence:g} % confidence: "
        f"largest |Δ|/σ = {abs(z[worst]):.2f} (p = {p_values[worst]:.2g} against Bonferroni {alpha_per_bin:.2g} "
        f"for {n_bins} bins), χ²/dof = {chi2 / n_bins:.2f}; the run detects a change of one bin ≥ {detectable:.2g} "
        f"(median bin) with 80 % power"
    )
    return {
        "max_abs_z": float(np.max(np.abs(z))),
        "worst_bin": int(np.flatnonzero(usable)[worst]),
        "min_p_value": float(p_values[worst]),
        "alpha_per_bin": alpha_per_bin,
        "n_bins": n_bins,
        "bins_without_error": int(np.sum(np.isfinite(delta) & (sigma == 0) & (delta != 0))),
        "chi2_per_dof": chi2 / n_bins,
        "chi2_p_value": float(stats.chi2.sf(chi2, n_bins)),
        "confidence": confidence,
        "detectable_effect": detectable,
        "significant": significant,
        "verdict": verdict,
    }


def family_significance(tests: Mapping[str, Mapping[str, Any]], confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """One verdict for a family of tests of one claim (e.g. "every liquid observable agrees"), Bonferroni over
    the tests: each test's p-value (a curve's smallest bin p-value times its number of bins, as in
    :func:`curve_difference_significance`; a scalar's ``p_value``) times the number of tests, capped at 1.
    The family is significant when any adjusted p-value is below 1 − ``confidence``, so the false-alarm rate
    of the claim stays below 1 − ``confidence`` however many observables it covers (16 tests at 5 % each
    would wrongly reject a true claim about half the time). Returns ``n_tests``, ``adjusted_p`` per test,
    ``significant`` (names of the tests that are, family-wise) and ``confidence``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not tests:
        raise ValueError("family_significance needs at least one test")
    adjusted = {name: float(min(1.0, single_p_value(t) * len(tests))) for name, t in tests.items()}
    return {"n_tests": len(tests), "adjusted_p": adjusted, "confidence": confidence,
            "significant": sorted(name for name, p in adjusted.items() if p < 1.0 - confidence)}


def single_p_value(test: Mapping[str, Any]) -> float:
    """One test's p-value: a scalar's ``p_value``, or a curve's smallest bin p-value times its number of bins (capped
    at 1), as in :func:`curve_difference_significance`."""
    return float(min(1.0, test["min_p_value"] * test["n_bins"])) if "n_bins" in test else float(test["p_value"])


def holm_adjusted(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: sorted ascending, p_(k) × (m − k + 1) for k = 1..m, made non-decreasing
    and capped at 1. Rejecting where the adjusted p is below α keeps the family-wise false-alarm rate at most α
    for any dependence between the tests (Holm, Scand. J. Statist. 6, 65 (1979))."""
    names = sorted(p_values, key=lambda name: p_values[name])
    adjusted, running = {}, 0.0
    for k, name in enumerate(names):
        running = max(running, min(1.0, p_values[name] * (len(names) - k)))
        adjusted[name] = float(running)
    return adjusted


def calibration_gate(stage_tests: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """The calibration gate of a whole run: every stage's null tests (raw against a second raw set) as one family,
    Holm-corrected (:func:`holm_adjusted`), so that a run in which no variant differs passes the whole gate with
    probability at least ``confidence``. A stage passes when none of its tests is significant after the correction.
    Returns ``passed``, ``stage_passed`` per stage, ``adjusted_p`` per stage and test, ``significant`` ("stage: test"),
    ``n_tests``, ``confidence`` and ``correction`` (in words)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    flat = {(stage, name): single_p_value(test) for stage, tests in stage_tests.items() for name, test in tests.items()}
    adjusted = holm_adjusted({f"{stage}: {name}": p for (stage, name), p in flat.items()})
    alpha = 1.0 - confidence
    significant = sorted(key for key, p in adjusted.items() if p < alpha)
    return {"passed": not significant, "n_tests": len(flat), "confidence": confidence, "significant": significant,
            "stage_passed": {stage: not any(adjusted[f"{stage}: {name}"] < alpha for name in tests)
                             for stage, tests in stage_tests.items()},
            "adjusted_p": {stage: {name: adjusted[f"{stage}: {name}"] for name in tests} for stage, tests in stage_tests.items()},
            "correction": f"Holm over all {len(flat)} null tests of the run (family-wise false-alarm rate ≤ {100 * alpha:g} %)"}


def detectable_effect(error: float, confidence: float = DEFAULT_CONFIDENCE, power: float = 0.8, dof: float | None = None,
                      n_tests: int = 1) -> float:
    """The smallest true difference (unit of ``error``) that a two-sided test at ``confidence`` (Bonferroni over
    ``n_tests``) declares significant with probability ``power``, for a difference with standard error
    ``error``: (q(1 − α/2n) + q(power)) σ, with Gaussian quantiles, or Student-t ones for ``dof``."""
    if not 0.0 < power < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence and power must lie in (0, 1), got {confidence} and {power}")
    alpha = (1.0 - confidence) / max(1, n_tests)
    law = stats.norm if dof is None else stats.t(max(float(dof), 1.0))
    return float((law.isf(alpha / 2.0) + law.ppf(power)) * error)


def equivalence_test(a_mean: float, a_err: float, b_mean: float, b_err: float, margin: float,
                     confidence: float = DEFAULT_CONFIDENCE, dof: float | None = None) -> dict:
    """Two one-sided tests (TOST): is |a − b| smaller than ``margin`` (unit of the means)?

    Equivalence is declared when both H0: a − b ≤ −margin and H0: a − b ≥ +margin are rejected at level
    1 − ``confidence``; the false-equivalence rate at |a − b| = margin is then at most 1 − confidence. Gaussian,
    or Student t with ``dof``. Returns ``p_value`` (the larger one-sided p), ``equivalent``, ``margin`` and
    ``bound``: the smallest margin this run could have established (|Δ| + q σ), and a one-line ``verdict``."""
    if margin <= 0 or not np.isfinite([a_mean, a_err, b_mean, b_err, margin]).all() or a_err < 0 or b_err < 0:
        raise ValueError(f"need finite means, errors ≥ 0 and a positive margin, got {a_mean}±{a_err}, {b_mean}±{b_err}, {margin}")
    difference, error = float(a_mean - b_mean), float(np.hypot(a_err, b_err))
    law = stats.norm if dof is None else stats.t(max(float(dof), 1.0))
    if error == 0.0:
        p_value = 0.0 if abs(difference) < margin else 1.0
    else:
        p_value = float(max(law.sf((difference + margin) / error), law.cdf((difference - margin) / error)))
    alpha = 1.0 - confidence
    bound = abs(difference) + float(law.isf(alpha)) * error
    equivalent = p_value < alpha
    verdict = (f"{'equivalent' if equivalent else 'not shown equivalent'} within ±{margin:.3g} at {100 * confidence:g} % "
               f"confidence (difference {difference:.3g} ± {error:.2g}, p = {p_value:.3g}); this run bounds |Δ| < {bound:.2g}")
    return {"difference": difference, "error": error, "margin": float(margin), "p_value": p_value, "equivalent": bool(equivalent),
            "bound": bound, "confidence": confidence, "verdict": verdict}


def curve_permutation_test(a_blocks: np.ndarray, b_blocks: np.ndarray, confidence: float = DEFAULT_CONFIDENCE,
                           n_permutations: int = 2000, seed: int = 0) -> dict:
    """A correlation-aware χ² test of two curves given as independent blocks or replicas (n_a, bins), (n_b, bins).

    The statistic is χ² = Σ_bins Δ²/σ² (σ from the blocks of each curve, as in :func:`blocks_mean_and_error`);
    its null distribution comes from reassigning blocks between the two curves (all splits when there are at
    most ``n_permutations`` of them, else random ones), so correlations between bins are accounted for and
    the p-value is exact for exchangeable blocks. Bins without data in every block are left out. Returns
    ``chi2_per_dof``, ``null_chi2_per_dof`` (mean and 95 % range of the permutation distribution),
    ``p_value``, ``min_p_value`` (the smallest p-value the number of splits allows) and ``significant``."""
    a, b = np.asarray(a_blocks, dtype=np.float64), np.asarray(b_blocks, dtype=np.float64)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need (≥ 2, bins) blocks of equal bins, got {a.shape} and {b.shape}")
    both = np.concatenate([a, b])
    keep = np.isfinite(both).all(axis=0) & (both.std(axis=0) > 0)
    if not keep.any():
        raise ValueError("no bin has data that varies across blocks")
    both = both[:, keep]
    n_a, n = len(a), len(both)

    def chi2(masks: np.ndarray) -> np.ndarray:
        """χ²/dof of each split; ``masks`` (splits, n) marks the blocks of the first curve."""
        first, second = masks.astype(np.float64), (~masks).astype(np.float64)
        stats_of = [(w.sum(axis=1)[:, None], w @ both, w @ both**2) for w in (first, second)]
        means = [total / k for k, total, _ in stats_of]
        variances = [(squares - k * mean**2) / (k - 1) / k for (k, _, squares), mean in zip(stats_of, means)]
        return np.mean((means[0] - means[1]) ** 2 / np.maximum(variances[0] + variances[1], 1e-300), axis=1)

    from itertools import combinations
    from math import comb

    observed = float(chi2(np.arange(n)[None, :] < n_a)[0])
    if comb(n, n_a) <= n_permutations:
        splits = np.zeros((comb(n, n_a), n), dtype=bool)
        for row, split in enumerate(combinations(range(n), n_a)):
            splits[row, list(split)] = True
    else:
        rng = np.random.default_rng(seed)
        splits = np.argsort(rng.random((n_permutations, n)), axis=1) < n_a
    null = chi2(splits)
    p_value = float((1 + np.sum(null >= observed)) / (1 + len(null)))
    significant = p_value < 1.0 - confidence
    return {"chi2_per_dof": observed, "n_bins": int(keep.sum()), "null_chi2_per_dof": [float(null.mean()), *np.percentile(null, [2.5, 97.5]).tolist()],
            "p_value": p_value, "min_p_value": float(1.0 / (1 + len(null))), "splits": int(len(null)), "confidence": confidence,
            "significant": bool(significant),
            "verdict": (f"{'significant' if significant else 'not significant'} at {100 * confidence:g} % confidence: χ²/dof = "
                        f"{observed:.2f} against {null.mean():.2f} [{np.percentile(null, 2.5):.2f}, {np.percentile(null, 97.5):.2f}] "
                        f"when blocks are reassigned (p = {p_value:.3g}, {len(null)} splits)")}


def null_calibration(tests: Mapping[str, Mapping[str, Any]], confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Does a comparison of two runs of the *same* variant (different seeds) pass as "no difference"?

    ``tests`` are that null comparison's verdicts (scalar or curve tests of this module). The calibration
    passes when the family of them is not significant (:func:`family_significance`), so a correct set of
    error bars fails it with probability at most 1 − ``confidence``. Also reported: each test's χ²/dof (z² for
    scalars), the count of individually significant tests against its expectation, and the binomial
    probability of at least that many false alarms. A stage whose calibration fails should issue no verdicts."""
    family = family_significance(tests, confidence)
    alarms = sum(bool(t["significant"]) for t in tests.values())
    alpha = 1.0 - confidence
    chi2 = {name: float(t["chi2_per_dof"]) if "chi2_per_dof" in t else float(t["z"]) ** 2 for name, t in tests.items()}
    passed = not family["significant"]
    return {"passed": passed, "n_tests": len(tests), "false_alarms": alarms, "expected_false_alarms": alpha * len(tests),
            "p_at_least_that_many": float(stats.binom.sf(alarms - 1, len(tests), alpha)), "chi2_per_dof": chi2,
            "family": family, "confidence": confidence,
            "verdict": ("calibrated: two runs of the same variant agree within their error bars" if passed else
                        f"not calibrated: two runs of the same variant differ in {', '.join(family['significant'])} "
                        f"(adjusted p = {min(family['adjusted_p'][name] for name in family['significant']):.2g}); either the error "
                        f"bars are too small for these runs or this is one of the {100 * alpha:g} % false alarms of a correct "
                        "comparison, so this stage issues no verdicts")}
