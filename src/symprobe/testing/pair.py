"""Known-answer models for any elements (energies in eV, lengths in Å, forces eV/Å, stress eV/Å³): a Morse pair
potential, exactly invariant, plus optional terms whose breaking is known exactly:

* a **lab-frame term of angular degree ℓ**, E_ℓ = (A/2) Σ_{i≠j} f_c(r_ij) s_ij Σ_m c_m Y_ℓm(r̂_ij), with c a fixed
  random unit vector: under rotations E_ℓ(R x) has Wigner-D content of degree ℓ only, parity (−1)^ℓ. For odd ℓ a
  bond counts from the lighter to the heavier element (s_ij = sign(Z_j − Z_i)), so that the term ignores the order
  of the atoms; it then vanishes between equal elements;
* a **pseudoscalar term** E_T = c·T, rotation invariant but odd under inversion:
  T = Σ_i det[A_i, B_i, C_i] with A_i = Σ_j f_c(r_ij) r_ij, B_i = Σ_j f_c(r_ij) s_ij r_ij,
  C_i = Σ_j f_c(r_ij) s_ij² r_ij (Å³; r_ij = r_j − r_i, s_ij = Z_j/10 + r_ij/r_c), i.e. weighted triple products of
  bond vectors. E(x) − E(−x) = 2·c·T(x) for every orientation; T vanishes on achiral structures.

f_c(r) = ½(1 + cos πr/r_c) below the cutoff r_c. Forces and stress come from torch autograd (float64).
:func:`morse_model` is the Morse part alone as a batched :class:`~symprobe.models.torch_model.TorchModel` (exactly
invariant, fast enough for MD of many replicas in tests).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii

from symprobe.models.base import matrix_to_voigt
from symprobe.testing.harmonics import real_spherical_harmonics

MORSE_DEPTH_EV = 0.5
MORSE_WIDTH_PER_A = 1.5


class KnownAnswerCalculator(Calculator):
    """Morse pair potential (minimum at the sum of covalent radii, depth 0.5 eV) for any elements, plus the lab-frame
    term (``degree`` ℓ, ``amplitude`` A in eV) and the pseudoscalar term (``pseudoscalar`` c in eV/Å³) of the
    module docstring; ``seed`` fixes the lab-frame direction c_m."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, degree: int | None = None, amplitude: float = 0.0, pseudoscalar: float = 0.0,
                 cutoff: float = 4.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if degree is not None and (not isinstance(degree, (int, np.integer)) or not 0 <= degree <= 12):
            raise ValueError(f"KnownAnswerCalculator: degree must be an integer in 0..12, got {degree!r}")
        if not cutoff > 0:
            raise ValueError(f"KnownAnswerCalculator: cutoff must be positive, got {cutoff}")
        self.degree, self.amplitude, self.pseudoscalar_coefficient = degree, float(amplitude), float(pseudoscalar)
        self.cutoff = float(cutoff)
        self.coefficients = lab_frame_coefficients(degree or 0, seed)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces, stress = self._evaluate(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if self.atoms.pbc.all():
            self.results["stress"] = matrix_to_voigt(stress)

    def pseudoscalar(self, atoms: Atoms) -> float:
        """T(x) in Å³ (module docstring), so that the pseudoscalar term's energy is c·T eV."""
        with torch.no_grad():
            i, j, vectors = self._bonds(atoms, torch.zeros(3, 3, dtype=torch.float64))
            return float(self._triple_products(atoms, i, j, vectors))

    def _bonds(self, atoms: Atoms, strain: torch.Tensor, positions: torch.Tensor | None = None):
        from ase.neighborlist import neighbor_list

        i, j, shifts = neighbor_list("ijS", atoms, self.cutoff)
        if positions is None:
            positions = torch.tensor(atoms.get_positions(), dtype=torch.float64)
        deform = torch.eye(3, dtype=torch.float64) + strain
        cell = torch.tensor(atoms.cell.array, dtype=torch.float64) @ deform
        vectors = positions[j] @ deform - positions[i] @ deform + torch.tensor(shifts, dtype=torch.float64) @ cell
        return torch.as_tensor(i), torch.as_tensor(j), vectors

    def _evaluate(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
        positions = torch.tensor(atoms.get_positions(), dtype=torch.float64, requires_grad=True)
        strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        i, j, vectors = self._bonds(atoms, strain, positions)
        r = vectors.norm(dim=1)
        numbers = torch.as_tensor(atoms.numbers)
        energy = 0.5 * morse_pair_energies(r, numbers[i], numbers[j], self.cutoff).sum()  # every pair is listed twice
        if self.degree is not None and self.amplitude != 0.0 and len(r):
            energy = energy + 0.5 * lab_frame_pair_energies(vectors, numbers[i], numbers[j], self.degree, self.amplitude,
                                                            self.coefficients, self.cutoff).sum()
        if self.pseudoscalar_coefficient != 0.0:
            energy = energy + self.pseudoscalar_coefficient * self._triple_products(atoms, i, j, vectors)
        if not energy.requires_grad:  # no atom within the cutoff of another
            return float(energy), np.zeros((len(atoms), 3)), np.zeros((3, 3))
        grad_x, grad_strain = torch.autograd.grad(energy, [positions, strain])
        forces, virial = -grad_x.numpy(), grad_strain.numpy()
        stress = (virial + virial.T) / (2 * atoms.get_volume()) if atoms.pbc.all() else virial
        return float(energy.detach()), forces, stress

    def _triple_products(self, atoms: Atoms, i: torch.Tensor, j: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        r = vectors.norm(dim=1)
        cut = (0.5 * (1 + torch.cos(math.pi * r / self.cutoff)))[:, None] * vectors
        weight = torch.tensor(atoms.numbers, dtype=torch.float64)[j][:, None] / 10 + r[:, None] / self.cutoff
        sums = [torch.zeros(len(atoms), 3, dtype=torch.float64).index_add(0, i, cut * weight**p) for p in range(3)]
        return torch.linalg.det(torch.stack(sums, dim=2)).sum()



def morse_pair_energies(r: torch.Tensor, numbers_i: torch.Tensor, numbers_j: torch.Tensor, cutoff: float) -> torch.Tensor:
    """The Morse energy (eV) of each pair at distance ``r`` (Å) of elements ``numbers_i``, ``numbers_j``: depth 0.5 eV
    at the sum of their covalent radii, times f_c(r) below ``cutoff`` Å."""
    radii = torch.as_tensor(covalent_radii, dtype=r.dtype, device=r.device)
    x = torch.exp(-MORSE_WIDTH_PER_A * (r - radii[numbers_i] - radii[numbers_j]))
    return MORSE_DEPTH_EV * (x * x - 2 * x) * 0.5 * (1 + torch.cos(math.pi * r / cutoff))


def lab_frame_coefficients(degree: int, seed: int) -> np.ndarray:
    """The lab-frame term's fixed random unit vector c_m (2ℓ + 1,) for ``degree`` ℓ and ``seed``."""
    c = np.random.default_rng([seed, degree]).standard_normal(2 * degree + 1)
    return c / np.linalg.norm(c)


def lab_frame_pair_energies(vectors: torch.Tensor, numbers_i: torch.Tensor, numbers_j: torch.Tensor, degree: int,
                            amplitude: float, coefficients: np.ndarray, cutoff: float) -> torch.Tensor:
    """The lab-frame term's energy (eV) of each pair i → j (bond ``vectors`` r_j − r_i, Å): A f_c(r) s_ij Σ_m c_m Y_ℓm(r̂),
    s_ij = sign(Z_j − Z_i) for odd ℓ, else 1 (module docstring); the same for j → i."""
    r = vectors.norm(dim=1)
    harmonic = real_spherical_harmonics(degree, vectors / r[:, None])[degree] @ torch.as_tensor(coefficients, dtype=vectors.dtype)
    sign = torch.sign(numbers_j - numbers_i).to(vectors.dtype) if degree % 2 else torch.ones_like(r)
    return amplitude * 0.5 * (1 + torch.cos(math.pi * r / cutoff)) * sign * harmonic


class MorseModule(torch.nn.Module):
    """The Morse pair potential of :class:`KnownAnswerCalculator`, with its lab-frame term of ``degree`` ℓ and
    ``amplitude`` A eV when given, as a torch energy module (``forward(Graph)`` → energies (S,) eV) on a half
    neighbour list."""

    half_list = True

    def __init__(self, cutoff: float = 4.0, degree: int | None = None, amplitude: float = 0.0, seed: int = 0):
        super().__init__()
        self.cutoff, self.degree, self.amplitude = float(cutoff), degree, float(amplitude)
        self.coefficients = lab_frame_coefficients(degree or 0, seed)

    def forward(self, graph) -> torch.Tensor:
        """The energy (eV) of each structure of ``graph`` (a :class:`~symprobe.models.torch_model.Graph`)."""
        vectors = graph.edge_vectors()
        inside = vectors.norm(dim=1) < self.cutoff
        vectors, i, j = vectors[inside], graph.edge_i[inside], graph.edge_j[inside]
        energies = morse_pair_energies(vectors.norm(dim=1), graph.numbers[i], graph.numbers[j], self.cutoff)
        if self.degree is not None and self.amplitude != 0.0:  # each pair once: i → j and j → i give equal terms
            energies = energies + lab_frame_pair_energies(vectors, graph.numbers[i], graph.numbers[j], self.degree,
                                                          self.amplitude, self.coefficients, self.cutoff)
        total = torch.zeros(graph.n_structures, dtype=energies.dtype, device=energies.device)
        return total.index_add(0, graph.structure[i], energies)


def morse_model(cutoff: float = 4.0, degree: int | None = None, amplitude: float = 0.0, seed: int = 0):
    """:class:`MorseModule` as a batched :class:`~symprobe.models.torch_model.TorchModel` (float64, any elements): exactly
    invariant without the lab-frame term, and with it broken exactly as :class:`KnownAnswerCalculator` is."""
    from symprobe.models.torch_model import TorchModel

    name = "Morse pair potential" + ("" if degree is None or amplitude == 0.0 else f" + lab-frame ℓ = {degree} term")
    return TorchModel(MorseModule(cutoff, degree, amplitude, seed), name=f"{name} (symprobe.testing.pair)")
