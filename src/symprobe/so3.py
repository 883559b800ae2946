"""Rotations as values: quadrature rules on SO(3) and O(3) with a proven exactness degree.

A :class:`Quadrature` is a set of rotation matrices with weights summing to one. Its ``degree`` L is the
largest ℓ such that the weighted average of every Wigner-D function D^ℓ_{mk} with 1 ≤ ℓ ≤ L vanishes.
Rotations act on column vectors, x → R x. Improper elements are −R (inversion times a proper rotation).

Representation matrices are real: :func:`wigner_D` acts on the real spherical harmonics
:func:`real_sph_harm` (order m = −ℓ..ℓ) so that Y_ℓ(R u) = D^ℓ(R) Y_ℓ(u) for proper and improper R.
The O(3) irreps (ℓ, even/odd under inversion) are :func:`wigner_D_parity`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.integrate import lebedev_rule
from scipy.spatial.transform import Rotation
from scipy.special import roots_legendre, sph_harm_y


@dataclass(frozen=True)
class Quadrature:
    """A weighted set of rotations: ``rotations`` (N, 3, 3), ``weights`` (N,) summing to 1.

    ``degree`` is the exactness degree L (averages of Wigner-D functions with 1 ≤ ℓ ≤ L vanish; for rules
    with improper elements this holds on both parity sectors, and parity-odd ℓ = 0 vanishes too).
    """

    name: str
    rotations: np.ndarray
    weights: np.ndarray
    degree: int

    def __post_init__(self) -> None:
        rotations = np.asarray(self.rotations, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
            raise ValueError(f"quadrature {self.name!r}: rotations must have shape (N, 3, 3), got {rotations.shape}")
        if weights.shape != (len(rotations),):
            raise ValueError(f"quadrature {self.name!r}: {len(weights)} weights for {len(rotations)} rotations")
        if not np.isclose(weights.sum(), 1.0, atol=1e-12):
            raise ValueError(f"quadrature {self.name!r}: weights sum to {weights.sum()}, not 1")
        object.__setattr__(self, "rotations", rotations)
        object.__setattr__(self, "weights", weights)

    def __len__(self) -> int:
        return len(self.rotations)

    @property
    def improper(self) -> bool:
        """Whether the rule contains improper elements (det R = −1), i.e. samples O(3)."""
        return bool(np.any(np.linalg.det(self.rotations) < 0))

    def average(self, values: np.ndarray) -> np.ndarray:
        """Weighted average over the rule of ``values`` (N, ...) given per rotation, along axis 0."""
        values = np.asarray(values)
        if values.shape[:1] != (len(self),):
            raise ValueError(f"quadrature {self.name!r}: {values.shape[:1]} values for {len(self)} rotations")
        return np.tensordot(self.weights, values, axes=(0, 0))


# --- real spherical harmonics and Wigner-D matrices ------------------------------------------------------
def real_sph_harm(l: int, u: np.ndarray) -> np.ndarray:
    """Real spherical harmonics Y_ℓm(u), m = −ℓ..ℓ, orthonormal on the unit sphere; shape (..., 2ℓ+1).

    ``u`` (..., 3) are directions (normalised here). Y_ℓ,m>0 = √2 (−1)^m Re Y_ℓ^m, Y_ℓ,m<0 = √2 (−1)^m Im Y_ℓ^|m|
    of the complex (Condon–Shortley) harmonics, so ℓ = 1 is √(3/4π) (y, z, x).
    """
    _check_l(l)
    u = np.asarray(u, dtype=np.float64)
    if u.shape[-1:] != (3,):
        raise ValueError(f"real_sph_harm: directions must have shape (..., 3), got {u.shape}")
    norm = np.linalg.norm(u, axis=-1)
    if np.any(norm == 0) or not np.all(np.isfinite(norm)):
        raise ValueError("real_sph_harm: directions must be finite and non-zero")
    u = u / norm[..., None]
    theta = np.arccos(np.clip(u[..., 2], -1.0, 1.0))
    phi = np.arctan2(u[..., 1], u[..., 0])
    m = np.arange(l + 1).reshape((-1,) + (1,) * theta.ndim)
    y = sph_harm_y(l, m, theta, phi)  # (l+1, ...) complex, m = 0..l
    sign = np.where(m % 2 == 0, 1.0, -1.0) * math.sqrt(2.0)
    out = np.concatenate([(sign * y.imag)[:0:-1], y.real[:1], (sign * y.real)[1:]], axis=0)
    return np.moveaxis(out, 0, -1)


@lru_cache(maxsize=None)
def _sphere_rule(l: int) -> tuple[np.ndarray, np.ndarray]:
    """Lebedev points (M, 3), weights (M,) summing to 4π, exact for degree ≥ 2ℓ, and Y_ℓ on them (M, 2ℓ+1)."""
    order = next(p for p in _LEBEDEV_SIZES if p >= max(2 * l, 3))
    x, w = lebedev_rule(order)
    points = np.ascontiguousarray(x.T)
    return points, w * real_sph_harm(l, points).T  # (M, 3), (2ℓ+1, M) weighted


def wigner_D(l: int, rotations: np.ndarray) -> np.ndarray:
    """Real orthogonal representation matrices D^ℓ(R), shape (N, 2ℓ+1, 2ℓ+1), with Y_ℓ(R u) = D^ℓ(R) Y_ℓ(u).

    ``rotations`` (N, 3, 3) or (3, 3), proper or improper; for improper R this is the natural-parity
    matrix (−1)^ℓ D^ℓ(−R). Computed exactly as D_mk = ∫ Y_ℓm(R u) Y_ℓk(u) du on a Lebedev rule of degree ≥ 2ℓ.
    """
    _check_l(l)
    rotations = _as_rotations(rotations, "wigner_D")
    if l == 0:
        return np.ones((len(rotations), 1, 1))
    points, weighted_y = _sphere_rule(l)
    chunk = max(1, 200_000 // len(points))  # bounds memory to a few tens of MB per step
    out = np.empty((len(rotations), 2 * l + 1, 2 * l + 1))
    for start in range(0, len(rotations), chunk):
        rotated = np.einsum("nij,pj->npi", rotations[start:start + chunk], points)
        out[start:start + chunk] = np.einsum("npm,kp->nmk", real_sph_harm(l, rotated), weighted_y)
    return out


def wigner_D_parity(l: int, rotations: np.ndarray, odd: bool) -> np.ndarray:
    """O(3) irrep (ℓ, parity): D^ℓ(det(R)·R) × (det R if ``odd`` else 1), shape (N, 2ℓ+1, 2ℓ+1).

    ``odd=(l % 2 == 1)`` is the natural parity and equals :func:`wigner_D`.
    """
    rotations = _as_rotations(rotations, "wigner_D_parity")
    det = np.sign(np.linalg.det(rotations))
    d = wigner_D(l, det[:, None, None] * rotations)
    return d * det[:, None, None] if odd else d


def _check_l(l: int) -> None:
    if not isinstance(l, (int, np.integer)) or l < 0 or 2 * l > _LEBEDEV_PRECISIONS[-1]:
        raise ValueError(f"angular degree ℓ must be an integer in 0..{_LEBEDEV_PRECISIONS[-1] // 2}, got {l!r}")


def _as_rotations(rotations: np.ndarray, who: str) -> np.ndarray:
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.shape == (3, 3):
        rotations = rotations[None]
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
        raise ValueError(f"{who}: rotations must have shape (N, 3, 3), got {rotations.shape}")
    if not np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-8):
        raise ValueError(f"{who}: rotations must be orthogonal matrices")
    return rotations


# --- quadrature families ---------------------------------------------------------------------------------
# SciPy's Lebedev orders (polynomial precision p) and their numbers of points.
_LEBEDEV_SIZES: dict[int, int] = dict(zip(
    (3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 35, 41, 47, 53, 59, 65, 71, 77, 83, 89, 95, 101,
     107, 113, 119, 125, 131),
    (6, 14, 26, 38, 50, 74, 86, 110, 146, 170, 194, 230, 266, 302, 350, 434, 590, 770, 974, 1202, 1454, 1730,
     2030, 2354, 2702, 3074, 3470, 3890, 4334, 4802, 5294, 5810),
))
_LEBEDEV_PRECISIONS = list(_LEBEDEV_SIZES)

# Finite rotation groups (SciPy's Rotation.create_group): (order, degree). The degree is one less than the
# smallest ℓ carrying an invariant: ℓ = 2 for D2 (z²), 3 for T (xyz), 4 for O (cubic), 6 for I.
_GROUPS = {"D2": (4, 1), "T": (12, 2), "O": (24, 3), "I": (60, 5)}


def identity() -> Quadrature:
    """The identity alone (one evaluation, degree 0): the raw, unsymmetrized prediction."""
    return Quadrature("identity", np.eye(3)[None], np.ones(1), 0)


def lebedev(precision: int, n_inplane: int | None = None) -> Quadrature:
    """SciPy's Lebedev directions u (precision p) × K equispaced in-plane angles γ: R = R_u R_z(γ).

    R_u = R_z(φ) R_y(θ) maps ẑ to u; weights are Lebedev weight / K. Exact to degree min(p, K − 1);
    K defaults to p + 1. Sizes: number of Lebedev points × K.
    """
    if precision not in _LEBEDEV_SIZES:
        raise ValueError(f"Lebedev precision must be one of {_LEBEDEV_PRECISIONS}, got {precision!r}")
    k = precision + 1 if n_inplane is None else n_inplane
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"number of in-plane angles must be a positive integer, got {n_inplane!r}")
    x, w = lebedev_rule(precision)
    theta = np.arccos(np.clip(x[2], -1.0, 1.0))
    phi = np.arctan2(x[1], x[0])
    to_direction = Rotation.from_euler("ZY", np.stack([phi, theta], axis=1)).as_matrix()  # R_z(φ) R_y(θ)
    inplane = Rotation.from_euler("z", 2 * np.pi * np.arange(k)[:, None] / k).as_matrix()
    rotations = np.einsum("pij,kjl->pkil", to_direction, inplane).reshape(-1, 3, 3)
    weights = np.repeat(w / w.sum() / k, k)
    name = f"lebedev-{precision}" if k == precision + 1 else f"lebedev-{precision}x{k}"
    return Quadrature(name, rotations, weights, min(precision, int(k) - 1))


def legendre(L: int) -> Quadrature:
    """The paper's / i-PI's Gauss–Legendre Euler product grid: L(2L − 1)² rotations, exact to degree 2L − 2.

    ZXZ Euler angles, R = R_z(γ) R_x(β) R_z(α) as i-PI's ``euler_zxz_to_matrix(α, β, γ)``: α and γ on
    2L − 1 equispaced points, cos β on L Gauss–Legendre nodes (weights ∝ Gauss–Legendre weights).
    The equispaced angles cancel every D^ℓ_mk with 0 < |m|, |k| < 2L − 1; Gauss–Legendre integrates
    P_ℓ(cos β) exactly for ℓ ≤ 2L − 1; ℓ = 2L − 1 fails through m = k = 2L − 1.
    """
    if not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"Legendre grid order must be a positive integer, got {L!r}")
    n = 2 * L - 1
    angles = 2 * np.pi * np.arange(n) / n
    nodes, gl_weights = roots_legendre(L)
    alpha, gamma, beta = np.meshgrid(angles, angles, np.arccos(nodes), indexing="ij")
    euler = np.stack([alpha.ravel(), beta.ravel(), gamma.ravel()], axis=1)
    rotations = Rotation.from_euler("zxz", euler).as_matrix()  # extrinsic: R_z(γ) R_x(β) R_z(α)
    weights = np.tile(gl_weights, n * n)
    return Quadrature(f"legendre-{L}", rotations, weights / weights.sum(), 2 * L - 2)


def group(name: str) -> Quadrature:
    """A finite rotation group with equal weights: 'D2' (4, degree 1), 'T' (12, 2), 'O' (24, 3), 'I' (60, 5)."""
    if name not in _GROUPS:
        raise ValueError(f"unknown rotation group {name!r}; known: {list(_GROUPS)}")
    size, degree = _GROUPS[name]
    return Quadrature(name, Rotation.create_group(name).as_matrix(), np.full(size, 1.0 / size), degree)


def haar_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Haar-random (uniform) proper rotations (n, 3, 3) drawn from ``rng``."""
    return Rotation.random(n, rng=rng).as_matrix().reshape(n, 3, 3)


def haar(n: int, seed: int = 0) -> Quadrature:
    """``n`` Haar-random (uniform) rotations with equal weights from ``seed``; degree 0 (errors fall as n^−½)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of Haar-random rotations must be a positive integer, got {n!r}")
    rotations = haar_rotations(n, np.random.default_rng(seed))
    name = f"haar-{n}" if seed == 0 else f"haar-{n}-seed{seed}"
    return Quadrature(name, rotations, np.full(n, 1.0 / n), 0)


def with_inversion(q: Quadrature) -> Quadrature:
    """The O(3) rule q × {E, −E} (twice the size, same degree on both parity sectors); name gets '+i'."""
    if q.improper:
        raise ValueError(f"quadrature {q.name!r} already contains improper rotations")
    return Quadrature(f"{q.name}+i", np.concatenate([q.rotations, -q.rotations]),
                      np.concatenate([q.weights, q.weights]) / 2, q.degree)


PAPER_LABELS = ("0", "i", "2", "2i", "3", "3i")


def paper_grid(label: str) -> Quadrature:
    """The paper's grid by label: '0' (identity, 1), 'i' (2), '2' (18), '2i' (36), '3' (75), '3i' (150).

    A digit L ≥ 2 is :func:`legendre` (L); a trailing 'i' adds inversion. Named 'paper-<label>'.
    """
    match = re.fullmatch(r"(0|[2-9]|[1-9]\d+)?(i)?", label)
    if not label or match is None:
        raise ValueError(f"unknown paper grid label {label!r}; the paper's labels are {list(PAPER_LABELS)}")
    order, inversion = match.groups()
    q = identity() if order in (None, "0") else legendre(int(order))
    q = with_inversion(q) if inversion else q
    return dataclasses.replace(q, name=f"paper-{label}")


def smallest(L: int, improper: bool = False) -> Quadrature:
    """The cheapest available rule exact to degree ≥ L (with inversion if ``improper``).

    Candidates: identity (L = 0), the groups D2, T, O, I, Lebedev products and Legendre grids. An O(3) rule
    exact to L needs a degree-L SO(3) rule on each of the proper and improper halves, so × {E, −E} of the
    cheapest SO(3) rule is cheapest among these.
    """
    if not isinstance(L, (int, np.integer)) or L < 0:
        raise ValueError(f"degree must be a non-negative integer, got {L!r}")
    candidates: list[tuple[int, int, Callable[[], Quadrature]]] = []  # (size, preference, constructor)
    if L == 0:
        candidates.append((1, 0, identity))
    for pref, (name, (size, degree)) in enumerate(_GROUPS.items(), start=1):
        if degree >= L:
            candidates.append((size, pref, lambda name=name: group(name)))
    precision = next((p for p in _LEBEDEV_PRECISIONS if p >= L), None)  # Lebedev: least p ≥ L, K = L + 1
    if precision is not None:
        candidates.append((_LEBEDEV_SIZES[precision] * (L + 1), 10, lambda: lebedev(precision, L + 1)))
    order = max(1, math.ceil((L + 2) / 2))
    candidates.append((order * (2 * order - 1) ** 2, 11, lambda: legendre(order)))
    q = min(candidates, key=lambda c: c[:2])[2]()
    return with_inversion(q) if improper else q


def available() -> list[Quadrature]:
    """A representative list for ``symprobe grids``: groups, the paper's grids, Lebedev and Legendre rules,
    the cheapest rule of each degree up to 8, a Haar rule, and inversion variants."""
    rules = [identity(), group("D2"), group("T"), group("O"), group("I")]
    rules += [paper_grid(label) for label in PAPER_LABELS if label != "0"]
    rules += [legendre(4), lebedev(3), lebedev(5), lebedev(7)]
    rules += [smallest(L) for L in range(1, 9)]
    rules += [with_inversion(group("O")), with_inversion(group("I")), smallest(5, improper=True), haar(100)]
    unique: dict[str, Quadrature] = {}
    for q in rules:
        unique.setdefault(q.name, q)
    return sorted(unique.values(), key=lambda q: (len(q), q.name))


_NAME_HELP = ("identity, D2, T, O, I, lebedev-P (P in SciPy's orders), lebedev-PxK, legendre-L, haar-N, "
              "haar-N-seedS, paper-LABEL or LABEL (LABEL in 0, i, 2, 2i, 3, 3i), and any of these with '+i'")


def get(name: "str | Quadrature") -> Quadrature:
    """The quadrature called ``name`` (any name that :attr:`Quadrature.name` produces, see ``symprobe grids``,
    or a bare paper label such as '2i'); a :class:`Quadrature` is returned as it is."""
    if isinstance(name, Quadrature):
        return name
    name = str(name)
    if name in PAPER_LABELS:
        return paper_grid(name)
    try:
        q = _from_name(name)
    except ValueError as error:
        raise ValueError(f"quadrature {name!r}: {error}") from None
    if q is None:
        raise ValueError(f"unknown quadrature {name!r}; valid names: {_NAME_HELP}")
    return q


def _from_name(name: str) -> Quadrature | None:
    base, inversion = (name[:-2], True) if name.endswith("+i") else (name, False)
    q: Quadrature | None = None
    if base == "identity":
        q = identity()
    elif base in _GROUPS:
        q = group(base)
    elif m := re.fullmatch(r"lebedev-(\d+)(?:x(\d+))?", base):
        q = lebedev(int(m[1]), None if m[2] is None else int(m[2]))
    elif m := re.fullmatch(r"legendre-(\d+)", base):
        q = legendre(int(m[1]))
    elif m := re.fullmatch(r"haar-(\d+)(?:-seed(\d+))?", base):
        q = haar(int(m[1]), 0 if m[2] is None else int(m[2]))
    elif m := re.fullmatch(r"paper-(\w+)", base):
        q = paper_grid(m[1])
    return with_inversion(q) if inversion and q is not None else q


# --- checking and export -------------------------------------------------------------------------------
def sector_average(q: Quadrature, l: int, odd: bool) -> np.ndarray:
    """Weighted average over q of the O(3) irrep (ℓ, parity), (2ℓ+1, 2ℓ+1); zero where q is exact."""
    return q.average(wigner_D_parity(l, q.rotations, odd))


def measured_degree(q: Quadrature, lmax: int = 12) -> int:
    """Largest L ≤ ``lmax`` with every average of D^ℓ, 1 ≤ ℓ ≤ L, zero to 1e-10 (found numerically).

    For improper rules both parity sectors are checked, and the parity-odd ℓ = 0 (det R) too; −1 if that fails.
    """
    tol = 1e-10
    if q.improper and abs(q.average(np.linalg.det(q.rotations))) > tol:
        return -1
    for l in range(1, lmax + 1):
        for odd in ((False, True) if q.improper else (l % 2 == 1,)):
            if np.abs(sector_average(q, l, odd)).max() > tol:
                return l - 1
    return lmax


def save_npz(q: Quadrature, path: str | os.PathLike) -> Path:
    """Write ``rotations`` (N, 3, 3), ``weights`` (N,), ``name`` and ``degree`` to ``path`` (.npz), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    from symprobe.files import replacing

    with replacing(path) as tmp:
        np.savez(tmp, rotations=q.rotations, weights=q.weights, name=np.str_(q.name),
                 degree=np.int64(q.degree), improper=np.bool_(q.improper))
    return path


def load_npz(path: str | os.PathLike) -> Quadrature:
    """Read a quadrature written by :func:`save_npz`."""
    with np.load(path) as data:
        return Quadrature(str(data["name"]), data["rotations"], data["weights"], int(data["degree"]))
