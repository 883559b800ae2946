"""ECSE: exact O(3)/SO(3) invariance, smoothness through the cutoffs, forces/stress = −∇E, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from symprobe.symmetrize.ecse import ECSE
from symprobe.models.base import CalculatorModel, Model, Prediction
from symprobe.models.torch_model import Graph, TorchModel
from symprobe.structures import StructureError, rotate, water_box, water_monomer


class AnisotropicPairs(torch.nn.Module):
    """A smooth, translation-invariant but rotation- and inversion-breaking energy (eV): pair terms
    modulated by (r̂·u)² and (r̂·v)³, plus a per-atom species-weighted polar term (Σ_j f r_ij)·u."""

    cutoff = 4.0

    def __init__(self):
        super().__init__()
        self.register_buffer("u", torch.tensor([0.3, 0.5, 0.8]) / np.sqrt(0.98))
        self.register_buffer("v", torch.tensor([-0.6, 0.0, 0.8]))

    def forward(self, graph: Graph) -> torch.Tensor:
        r = graph.edge_vectors()
        d = torch.linalg.norm(r, dim=1)
        f = 0.5 * (1 + torch.cos(np.pi * d / self.cutoff)) * (d < self.cutoff)
        unit = r / d[:, None]
        pair = f * torch.exp(-d) * (1 + 0.4 * (unit @ self.u) ** 2 + 0.3 * (unit @ self.v) ** 3)
        polar = 0.05 * graph.numbers[graph.edge_i].to(r.dtype) * f * (r @ self.u)
        per_edge = pair + polar
        energies = torch.zeros(graph.n_structures, dtype=r.dtype)
        return energies.index_add(0, graph.structure[graph.edge_i], per_edge)


def anisotropic() -> TorchModel:
    return TorchModel(AnisotropicPairs(), name="anisotropic pairs")


class LoopedModel(Model):
    """The same energy through the generic (non-torch) path of the contract."""

    name = "looped"

    def __init__(self):
        self.inner = anisotropic()

    def _predict(self, atoms: Atoms) -> Prediction:
        return self.inner.predict(atoms)


def random_rotations(n: int, seed: int) -> np.ndarray:
    return Rotation.random(n, random_state=seed).as_matrix()


def finite_difference_forces(model: Model, atoms: Atoms, atoms_idx: list[int], h: float = 1e-4) -> np.ndarray:
    out = np.zeros((len(atoms_idx), 3))
    for k, a in enumerate(atoms_idx):
        for c in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                positions = moved.get_positions()
                positions[a, c] += sign * h
                moved.set_positions(positions)
                energies.append(model.predict(moved).energy)
            out[k, c] = -(energies[0] - energies[1]) / (2 * h)
    return out


def distorted_monomer() -> Atoms:
    atoms = water_monomer()
    atoms.positions[1] += [0.05, 0.02, -0.03]
    return atoms


def chiral_cluster() -> Atoms:
    """Water plus an out-of-plane neon: four atoms in general position, hence chiral."""
    monomer = distorted_monomer()
    return monomer + Atoms("Ne", positions=[monomer.positions[0] + [1.1, 1.6, 0.7]])


def small_box() -> Atoms:
    atoms = water_box(2, seed=3)
    atoms.rattle(0.05, seed=1)
    return atoms


def test_raw_model_is_not_invariant():
    """Guards the tests below: the wrapped model breaks rotational symmetry at the 1e-2 eV level."""
    atoms = distorted_monomer()
    model = anisotropic()
    energies = model.predict_rotated(atoms, random_rotations(4, 0)).energies
    assert np.ptp(energies) > 1e-2


@pytest.mark.parametrize("inversion", [False, True])
def test_isolated_invariance_and_equivariant_forces(inversion):
    atoms = chiral_cluster()
    ecse = ECSE(anisotropic(), inversion=inversion)
    reference = ecse.predict(atoms)
    rotations = random_rotations(5, 1)
    if inversion:
        rotations[::2] *= -1
    for R in rotations:
        rotated = ecse.predict(rotate(atoms, R))
        assert abs(rotated.energy - reference.energy) < 1e-10
        np.testing.assert_allclose(rotated.forces, reference.forces @ R.T, atol=1e-10)


def test_known_answer_water_model_becomes_o3_invariant():
    """i-PI's noo3-h2o term on q-TIP4P/F (all ℓ, both parities) averaged with improper frames."""
    from symprobe.testing import finite_difference_forces as all_atom_fd
    from symprobe.testing import noo3_qtip4pf
    from symprobe.testing import random_rotations as haar

    model = noo3_qtip4pf()
    atoms = distorted_monomer()
    ecse = ECSE(model, inversion=True)
    reference = ecse.predict(atoms)
    rotations = np.concatenate([haar(2, seed=4), haar(2, seed=5, improper=True)])
    raw = model.predict(atoms).energy
    assert max(abs(model.predict(rotate(atoms, R)).energy - raw) for R in rotations) > 1e-2
    for R in rotations:
        assert abs(ecse.predict(rotate(atoms, R)).energy - reference.energy) < 1e-10
    np.testing.assert_allclose(reference.forces, all_atom_fd(ecse, atoms), atol=1e-6)


def test_proper_frames_do_not_symmetrize_inversion():
    """Without improper frames the average is SO(3)- but not O(3)-invariant on a chiral (non-planar)
    structure; with them it is both. (A planar molecule's mirror image is a rotated copy.)"""
    atoms = chiral_cluster()
    proper = ECSE(anisotropic(), inversion=False)
    full = ECSE(anisotropic(), inversion=True)
    inverted = rotate(atoms, -np.eye(3))
    assert abs(proper.predict(inverted).energy - proper.predict(atoms).energy) > 1e-4
    assert abs(full.predict(inverted).energy - full.predict(atoms).energy) < 1e-10


def test_permutation_invariance():
    atoms = distorted_monomer()
    ecse = ECSE(anisotropic())
    permuted = atoms[[2, 0, 1]]
    assert abs(ecse.predict(permuted).energy - ecse.predict(atoms).energy) < 1e-10


@pytest.mark.parametrize("inner", [anisotropic, LoopedModel])
def test_isolated_forces_are_minus_gradient(inner):
    atoms = distorted_monomer()
    ecse = ECSE(inner(), inversion=True)
    forces = ecse.predict(atoms).forces
    np.testing.assert_allclose(forces, finite_difference_forces(ecse, atoms, [0, 1, 2]), atol=1e-7)


def test_periodic_invariance_forces_and_stress():
    atoms = small_box()
    ecse = ECSE(anisotropic())
    reference = ecse.predict(atoms)
    R = random_rotations(1, 7)[0]
    rotated = ecse.predict(rotate(atoms, R))
    assert abs(rotated.energy - reference.energy) < 1e-10
    np.testing.assert_allclose(rotated.forces, reference.forces @ R.T, atol=1e-10)
    np.testing.assert_allclose(rotated.stress, R @ reference.stress @ R.T, atol=1e-10)
    np.testing.assert_allclose(reference.forces[:2], finite_difference_forces(ecse, atoms, [0, 1]), atol=1e-7)
    h, volume = 1e-5, atoms.cell.volume
    for a, b in [(0, 0), (1, 2)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * h / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else sign * h / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(ecse.predict(strained).energy)
        assert abs(reference.stress[a, b] - (energies[0] - energies[1]) / (2 * h * volume)) < 1e-7


def test_smooth_when_a_neighbour_crosses_the_cutoff():
    """A fourth atom moves out through the frame cutoff of the nearest atom: the set of candidate pairs
    changes along the path, yet the energy has small second differences and forces match −∇E there."""
    monomer = distorted_monomer()
    ecse = ECSE(anisotropic(), cutoff=2.5)
    oxygen = monomer.positions[0]
    direction = np.array([0.0, -1.0, -0.2]) / np.linalg.norm([0.0, -1.0, -0.2])
    # the cutoff is crossed where the moving atom's nearest distance equals ecse.cutoff
    scan = np.linspace(ecse.cutoff - 0.02, ecse.cutoff + 0.02, 41)
    energies, candidate_pairs = [], []
    for distance in scan:
        atoms = monomer + Atoms("Ne", positions=[oxygen + distance * direction])
        nearest = np.min(np.linalg.norm(monomer.positions - atoms.positions[3], axis=1))
        assert abs(nearest - distance) < 1e-12  # the oxygen is the nearest atom along this path
        energies.append(ecse.predict(atoms).energy)
        candidate_pairs.append(distance < ecse.cutoff)
    assert any(candidate_pairs) and not all(candidate_pairs)
    step = scan[1] - scan[0]
    # measured ≈ 0.5 step² (curvature 0.5 eV/Å²); a hard cutoff in the inner-cutoff weights gives ≈ 7e-4
    assert np.abs(np.diff(energies, 2)).max() < 10 * step**2
    crossing = monomer + Atoms("Ne", positions=[oxygen + ecse.cutoff * direction])
    np.testing.assert_allclose(
        ecse.predict(crossing).forces[3:], finite_difference_forces(ecse, crossing, [3]), atol=1e-7
    )


def test_adaptive_inner_cutoff_keeps_few_frames():
    """Monomer: each atom's two neighbours give two ordered pairs, 6 frames. A dimer with a 5 Å cutoff has
    180 candidate pairs, but the inner cutoffs keep only the intramolecular ones."""
    ecse = ECSE(anisotropic(), cutoff=5.0)
    frames = ecse.frames(distorted_monomer())
    assert len(frames) == 6
    np.testing.assert_allclose(frames.weights.sum().item(), 1.0, atol=1e-14)
    R = frames.rotations.numpy()
    np.testing.assert_allclose(np.einsum("fab,fcb->fac", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    monomer = distorted_monomer()
    dimer = monomer + rotate(monomer, Rotation.from_euler("z", 90, degrees=True).as_matrix())
    dimer.positions[3:] += monomer.positions[0] - dimer.positions[3] + [2.9, 0.0, 0.4]
    assert len(ecse.frames(dimer)) == 12


def test_pruning_reduces_frames_and_stays_exact():
    atoms = small_box()
    plain, pruned = ECSE(anisotropic()), ECSE(anisotropic(), num_prunings=4)
    assert len(pruned.frames(atoms)) < len(plain.frames(atoms)) / 2
    R = random_rotations(1, 3)[0]
    assert abs(pruned.predict(rotate(atoms, R)).energy - pruned.predict(atoms).energy) < 1e-10
    np.testing.assert_allclose(pruned.predict(atoms).forces[:1], finite_difference_forces(pruned, atoms, [0]), atol=1e-6)


@pytest.mark.parametrize(
    "atoms, message",
    [
        (Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.0]]), "at least 3 atoms"),
        (Atoms("H3", positions=[[0, 0, 0], [0, 0, 1.0], [0, 0, 2.0]]), "non-collinear"),
        (Atoms("H3", positions=[[0, 0, 0], [0, 0, 6.0], [0, 6.0, 0]]), "two neighbours"),
    ],
)
def test_degenerate_structures_raise(atoms, message):
    with pytest.raises(StructureError, match=message):
        ECSE(anisotropic()).predict(atoms)


def test_bad_wrapping_raises():
    from ase.calculators.emt import EMT

    energy_only = CalculatorModel(EMT())
    energy_only.implemented_properties = ("energy",)
    with pytest.raises(ValueError, match="with forces"):
        ECSE(energy_only)
    with pytest.raises(TypeError, match="TorchModel"):
        ECSE(LoopedModel()).predict(small_box())
    with pytest.raises(ValueError, match="collinearity"):
        ECSE(anisotropic(), collinearity=0.1, collinearity_width=0.2)


def bent_monomer(angle_deg: float) -> Atoms:
    """A water molecule with O–H 0.96 Å and the given H–O–H angle (180° is linear: ECSE has no frame)."""
    half = np.radians(angle_deg) / 2
    return Atoms("OH2", positions=[[0, 0, 0], [0.96 * np.sin(half), 0, 0.96 * np.cos(half)], [-0.96 * np.sin(half), 0, 0.96 * np.cos(half)]])


def with_fallback(weight: float = 0.5) -> ECSE:
    from symprobe import so3
    from symprobe.symmetrize import GridAverage

    model = anisotropic()  # angular content ℓ ≤ 3: a degree-3 grid average is exactly invariant
    return ECSE(model, fallback=GridAverage(model, so3.smallest(3)), fallback_weight=weight)


def test_fallback_takes_over_smoothly_where_frames_vanish():
    ecse = with_fallback()
    linear = bent_monomer(180.0)
    assert len(ecse.frames(linear)) == 0 and ecse.frames(linear).degenerate
    assert ecse.predict(linear).energy == pytest.approx(ecse.fallback.predict(linear).energy, abs=1e-12)
    totals = {angle: float(ecse.frames(bent_monomer(angle)).total) for angle in np.arange(140.0, 180.0, 0.5)}
    blended = [a for a, w in totals.items() if 0 < w < ecse.fallback_weight]
    assert blended, totals  # the path crosses the blend region 0 < W < fallback_weight
    for angle in (blended[len(blended) // 2], 180.0):
        atoms = bent_monomer(angle)
        atoms.positions[1] += [0.01, -0.02, 0.015]  # off the symmetric path
        energy = ecse.predict(atoms).energy
        for R in random_rotations(3, 5):
            assert abs(ecse.predict(rotate(atoms, R)).energy - energy) < 1e-10
        np.testing.assert_allclose(ecse.predict(atoms).forces, finite_difference_forces(ecse, atoms, [0, 1, 2]), atol=1e-6)
    # continuous along the bending path into the degenerate geometry: halving the step halves the
    # largest energy change between neighbouring points (a jump where the frames die out would not shrink)
    start = max(a for a, w in totals.items() if w >= ecse.fallback_weight)  # from the last full-frame angle on
    steps = [np.abs(np.diff([ecse.predict(bent_monomer(a)).energy for a in np.linspace(start, 170.0, n + 1)])).max()
             for n in (40, 80)]
    assert steps[1] < 0.6 * steps[0]


def test_fallback_must_have_forces():
    from ase.calculators.emt import EMT

    energy_only = CalculatorModel(EMT())
    energy_only.implemented_properties = ("energy",)
    with pytest.raises(ValueError, match="fallback needs forces"):
        ECSE(anisotropic(), fallback=energy_only)
    with pytest.raises(StructureError, match="give ECSE a fallback"):
        ECSE(anisotropic()).predict(bent_monomer(180.0))
