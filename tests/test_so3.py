"""Tests for symprobe.so3: real Wigner-D matrices and rotation quadratures with proven, tight degrees."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.integrate import lebedev_rule
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from symprobe import so3
from symprobe.cli import main


@pytest.fixture(scope="module")
def rules() -> list[so3.Quadrature]:
    return so3.available()


def _random_rotations(n: int, seed: int) -> np.ndarray:
    return Rotation.random(n, rng=np.random.default_rng(seed)).as_matrix().reshape(n, 3, 3)


def _real_from_complex(l: int) -> np.ndarray:
    """U with real Y = U · complex Y (textbook formula, independent of so3's implementation)."""
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    s = 1 / math.sqrt(2)
    for m in range(-l, l + 1):
        a = abs(m)
        if m == 0:
            u[l, l] = 1
        elif m > 0:
            u[l + m, l + m], u[l + m, l - m] = (-1) ** m * s, s
        else:
            u[l + m, l + a], u[l + m, l - a] = -1j * (-1) ** a * s, 1j * s
    return u


# --- real spherical harmonics and Wigner-D --------------------------------------------------------------
def test_real_sph_harm_orthonormal_and_known_l1():
    x, w = lebedev_rule(25)
    points = x.T
    ys = np.concatenate([so3.real_sph_harm(l, points) for l in range(7)], axis=1)
    gram = ys.T @ (w[:, None] * ys)
    np.testing.assert_allclose(gram, np.eye(49), atol=1e-13)
    u = np.array([[0.3, -1.2, 0.5], [1.0, 0.0, 0.0]])
    unit = u / np.linalg.norm(u, axis=1, keepdims=True)
    np.testing.assert_allclose(so3.real_sph_harm(1, 2.5 * u), math.sqrt(3 / (4 * np.pi)) * unit[:, [1, 2, 0]],
                               atol=1e-15)


def test_real_sph_harm_matches_scipy_complex_harmonics():
    u = np.random.default_rng(0).normal(size=(20, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta, phi = np.arccos(u[:, 2]), np.arctan2(u[:, 1], u[:, 0])
    for l in range(6):
        complex_y = np.stack([sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], axis=1)
        expected = complex_y @ _real_from_complex(l).T
        np.testing.assert_allclose(expected.imag, 0, atol=1e-14)
        np.testing.assert_allclose(so3.real_sph_harm(l, u), expected.real, atol=1e-14)


@pytest.mark.parametrize("l", range(7))
def test_wigner_D_representation_orthogonal_and_rotates_harmonics(l):
    r1, r2 = _random_rotations(4, 1), _random_rotations(4, 2)
    d1, d2 = so3.wigner_D(l, r1), so3.wigner_D(l, r2)
    np.testing.assert_allclose(so3.wigner_D(l, r1 @ r2), d1 @ d2, atol=1e-13)
    np.testing.assert_allclose(d1 @ d1.transpose(0, 2, 1), np.broadcast_to(np.eye(2 * l + 1), d1.shape), atol=1e-13)
    u = np.random.default_rng(3).normal(size=(9, 3))
    for r in (r1, -r1):  # proper and improper
        lhs = so3.real_sph_harm(l, np.einsum("nij,pj->npi", r, u))
        rhs = np.einsum("nmk,pk->npm", so3.wigner_D(l, r), so3.real_sph_harm(l, u))
        np.testing.assert_allclose(lhs, rhs, atol=1e-13)
    np.testing.assert_allclose(so3.wigner_D(l, -r1), (-1) ** l * d1, atol=1e-13)


def test_wigner_D_l1_is_the_rotation_in_yzx_order():
    r = _random_rotations(3, 4)
    perm = [1, 2, 0]
    np.testing.assert_allclose(so3.wigner_D(1, r), r[:, perm][:, :, perm], atol=1e-14)


@pytest.mark.parametrize("l", [1, 2, 4])
def test_wigner_D_matches_spherical_package(l):
    spherical = pytest.importorskip("spherical")
    quaternionic = pytest.importorskip("quaternionic")
    r = _random_rotations(3, 5)
    u = _real_from_complex(l)
    wigner = spherical.Wigner(l)
    for rot, ours in zip(r, so3.wigner_D(l, r)):
        flat = wigner.D(quaternionic.array.from_rotation_matrix(rot))
        theirs = np.array([[flat[wigner.Dindex(l, mp, m)] for m in range(-l, l + 1)] for mp in range(-l, l + 1)])
        # spherical's D^l_{m'm} acts on complex harmonics: Y(R u) = D Y(u); ours is its real form U D U†.
        np.testing.assert_allclose(u @ theirs @ u.conj().T, ours, atol=1e-13)


def test_wigner_D_parity_sectors():
    r = np.concatenate([_random_rotations(3, 6), -_random_rotations(3, 7)])
    det = np.linalg.det(r)[:, None, None]
    for l in range(4):
        natural = so3.wigner_D_parity(l, r, odd=l % 2 == 1)
        np.testing.assert_allclose(natural, so3.wigner_D(l, r), atol=1e-14)
        other = so3.wigner_D_parity(l, r, odd=l % 2 == 0)
        np.testing.assert_allclose(other, det * natural, atol=1e-14)
    np.testing.assert_allclose(so3.wigner_D_parity(0, r, odd=True)[:, 0, 0], det[:, 0, 0], atol=1e-14)


def test_wigner_D_rejects_bad_input():
    with pytest.raises(ValueError, match="orthogonal"):
        so3.wigner_D(2, 2 * np.eye(3))
    with pytest.raises(ValueError, match="shape"):
        so3.wigner_D(2, np.eye(4))
    with pytest.raises(ValueError, match="ℓ"):
        so3.wigner_D(-1, np.eye(3))


# --- quadratures -----------------------------------------------------------------------------------------
def test_every_available_rule_has_its_proven_degree_and_it_is_tight(rules):
    for q in rules:
        assert q.weights.min() > 0 and abs(q.weights.sum() - 1) < 1e-14, q.name
        np.testing.assert_allclose(q.rotations @ q.rotations.transpose(0, 2, 1),
                                   np.broadcast_to(np.eye(3), q.rotations.shape), atol=1e-13, err_msg=q.name)
        # measured_degree returns degree + 1 if ℓ = degree + 1 also averaged to zero: then it is not tight.
        assert so3.measured_degree(q, lmax=q.degree + 1) == q.degree, q.name


def test_sizes_of_the_families():
    assert [len(so3.legendre(L)) for L in (2, 3, 4)] == [18, 75, 196]
    assert [so3.legendre(L).degree for L in (2, 3, 4)] == [2, 4, 6]
    assert {n: (len(so3.group(n)), so3.group(n).degree) for n in ("D2", "T", "O", "I")} == {
        "D2": (4, 1), "T": (12, 2), "O": (24, 3), "I": (60, 5)}
    assert (len(so3.lebedev(5)), so3.lebedev(5).degree) == (14 * 6, 5)
    assert (len(so3.lebedev(7, 4)), so3.lebedev(7, 4).degree, so3.lebedev(7, 4).name) == (26 * 4, 3, "lebedev-7x4")
    assert so3.measured_degree(so3.lebedev(7, 4), lmax=5) == 3
    assert [len(so3.paper_grid(label)) for label in so3.PAPER_LABELS] == [1, 2, 18, 36, 75, 150]


def test_legendre_grid_is_ipi_grid():
    mathtools = pytest.importorskip("ipi.utils.mathtools")
    for L in (2, 3):
        ipi = mathtools.get_rotation_quadrature_legendre(L)
        ipi_rotations = np.array([rot for rot, _, _ in ipi])
        ipi_weights = np.array([w for _, w, _ in ipi])
        q = so3.legendre(L)
        np.testing.assert_allclose(q.rotations, ipi_rotations, atol=1e-14)
        np.testing.assert_allclose(q.weights, ipi_weights / ipi_weights.sum(), atol=1e-15)


def test_haar_moments_known_answers():
    """⟨(a·R b)^2⟩ = 1/3 and ⟨(a·R b)^4⟩ = 1/5 over SO(3): exact on rules of degree ≥ 2 resp. ≥ 4 only."""
    a, b = np.array([0.36, 0.48, 0.8]), np.array([0.6, 0.0, 0.8])

    def moment(q, k):
        return q.average(np.einsum("i,nij,j->n", a, q.rotations, b) ** k)

    assert moment(so3.group("T"), 2) == pytest.approx(1 / 3, abs=1e-14)
    assert abs(moment(so3.group("D2"), 2) - 1 / 3) > 1e-3
    assert moment(so3.group("I"), 4) == pytest.approx(1 / 5, abs=1e-14)
    assert moment(so3.legendre(3), 4) == pytest.approx(1 / 5, abs=1e-14)
    assert abs(moment(so3.group("O"), 4) - 1 / 5) > 1e-3


def test_improper_rules_check_both_parity_sectors():
    pi = so3.paper_grid("i")  # {E, −E}
    assert pi.improper and not so3.identity().improper
    # the natural-parity sector alone would pass ℓ = 1 ...
    np.testing.assert_allclose(pi.average(so3.wigner_D(1, pi.rotations)), 0, atol=1e-15)
    # ... but ℓ = 1 even under inversion is not averaged out, so the O(3) degree is 0
    assert so3.measured_degree(pi) == 0
    oi = so3.with_inversion(so3.group("O"))
    assert (oi.name, len(oi), oi.degree, oi.improper) == ("O+i", 48, 3, True)
    assert oi.average(np.linalg.det(oi.rotations)) == pytest.approx(0, abs=1e-15)
    only_improper = so3.Quadrature("minus-E", -np.eye(3)[None], np.ones(1), 0)
    assert so3.measured_degree(only_improper) == -1
    with pytest.raises(ValueError, match="already contains improper"):
        so3.with_inversion(oi)


def test_smallest_is_exact_and_nothing_cheaper_is_available(rules):
    names = {q.name for q in rules}
    for improper in (False, True):
        for L in range(1, 9):
            q = so3.smallest(L, improper)
            assert q.degree >= L and q.improper == improper
            assert so3.measured_degree(q, lmax=L) == L, q.name
            if not improper:
                assert q.name in names
            cheaper = [r.name for r in rules if r.improper == improper and r.degree >= L and len(r) < len(q)]
            assert not cheaper, (L, q.name, cheaper)
    assert [len(so3.smallest(L)) for L in range(1, 9)] == [4, 12, 24, 60, 60, 182, 208, 342]


def test_get_round_trips_names(rules):
    extra = [so3.legendre(2), so3.with_inversion(so3.legendre(2)), so3.lebedev(5, 8), so3.haar(7, seed=3),
             so3.with_inversion(so3.lebedev(3)), so3.group("D2"), so3.paper_grid("0")]
    for q in rules + extra:
        again = so3.get(q.name)
        assert again.name == q.name and again.degree == q.degree
        np.testing.assert_array_equal(again.rotations, q.rotations)
        np.testing.assert_array_equal(again.weights, q.weights)
    np.testing.assert_array_equal(so3.get("lebedev-5x6").rotations, so3.lebedev(5).rotations)
    assert so3.get("paper-2i").name == "paper-2i"
    np.testing.assert_array_equal(so3.get("paper-2i").rotations, so3.get("legendre-2+i").rotations)


@pytest.mark.parametrize("bad", ["nope", "lebedev-4", "legendre-0", "haar-0", "paper-1", "paper-", "O+i+i", ""])
def test_get_rejects_unknown_names(bad):
    with pytest.raises(ValueError) as info:
        so3.get(bad)
    assert repr(bad) in str(info.value)
    if bad in ("nope", "O+i+i", ""):
        assert "valid names" in str(info.value) and "lebedev-PxK" in str(info.value)


def test_haar_is_seeded():
    np.testing.assert_array_equal(so3.haar(5, 1).rotations, so3.haar(5, 1).rotations)
    assert not np.allclose(so3.haar(5, 1).rotations, so3.haar(5, 2).rotations)
    assert so3.haar(5, 2).name == "haar-5-seed2"


def test_quadrature_validates():
    with pytest.raises(ValueError, match="sum to"):
        so3.Quadrature("x", np.eye(3)[None], np.array([0.5]), 0)
    with pytest.raises(ValueError, match="values for"):
        so3.identity().average(np.zeros(2))


# --- CLI and export --------------------------------------------------------------------------------------
def test_cli_grids_table_and_json(capsys, rules):
    assert main(["grids"]) == 0
    table = capsys.readouterr().out
    assert "paper-2i" in table and "O(3)" in table
    assert main(["grids", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"name": q.name, "size": len(q), "degree": q.degree, "improper": q.improper} for q in rules]


def test_cli_grids_export_reloads(tmp_path, capsys):
    path = tmp_path / "grid.npz"
    assert main(["grids", "--export", "lebedev-5+i", str(path)]) == 0
    assert "lebedev-5+i" in capsys.readouterr().out
    q = so3.get("lebedev-5+i")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["rotations"], q.rotations)
        np.testing.assert_array_equal(data["weights"], q.weights)
        assert int(data["degree"]) == q.degree and bool(data["improper"])
    again = so3.load_npz(path)
    assert again.name == q.name and again.degree == q.degree
    assert main(["grids", "--export", "nope", str(path)]) == 2


def test_lebedev_size_table_matches_scipy():
    for precision, size in so3._LEBEDEV_SIZES.items():
        if precision <= 41:
            assert lebedev_rule(precision)[1].shape == (size,), precision
    assert [len(so3.smallest(L)) for L in (9, 10)] == [38 * 10, 50 * 11]
