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

:class:`KnownAnswerModule` is the energy on a graph of many structures; :func:`known_answer_pair_model` runs it on the
batched engine (:class:`~symprobe.models.torch_model.TorchModel`: rotated copies of many structures in one pass, for MD
of many molecules and grid averages); :class:`KnownAnswerCalculator` is the same as an ASE calculator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii

from symprobe.models.base import matrix_to_voigt
from symprobe.models.torch_model import Graph, TorchModel, batch_graph
from symprobe.testing.harmonics import real_spherical_harmonics

MORSE_DEPTH_EV = 0.5
MORSE_WIDTH_PER_A = 1.5


class KnownAnswerModule(torch.nn.Module):
    """The energy (eV) of the module docstring on a :class:`~symprobe.models.torch_model.Graph` (full neighbour list,
    many structures at once): Morse pairs, plus the lab-frame term (``degree`` ℓ, ``amplitude`` A in eV) and the
    pseudoscalar term (``pseudoscalar`` c in eV/Å³); ``seed`` fixes the lab-frame direction c_m."""

    def __init__(self, degree: int | None = None, amplitude: float = 0.0, pseudoscalar: float = 0.0, cutoff: float = 4.0,
                 seed: int = 0):
        super().__init__()
        if degree is not None and (not isinstance(degree, (int, np.integer)) or not 0 <= degree <= 12):
            raise ValueError(f"KnownAnswerCalculator: degree must be an integer in 0..12, got {degree!r}")
        if not cutoff > 0:
            raise ValueError(f"KnownAnswerCalculator: cutoff must be positive, got {cutoff}")
        self.degree, self.amplitude, self.pseudoscalar_coefficient = degree, float(amplitude), float(pseudoscalar)
        self.cutoff = float(cutoff)
        c = np.random.default_rng([seed, degree or 0]).standard_normal(2 * (degree or 0) + 1)
        self.coefficients = c / np.linalg.norm(c)

    def forward(self, graph: Graph) -> torch.Tensor:
        vectors = graph.edge_vectors()
        i, j = graph.edge_i, graph.edge_j
        r = vectors.norm(dim=1)
        cut = 0.5 * (1 + torch.cos(math.pi * r / self.cutoff))
        r0 = torch.tensor(covalent_radii, dtype=r.dtype, device=r.device)[graph.numbers]
        x = torch.exp(-MORSE_WIDTH_PER_A * (r - r0[i] - r0[j]))
        per_edge = 0.5 * MORSE_DEPTH_EV * (x * x - 2 * x) * cut  # every pair is listed twice
        if self.degree is not None and self.amplitude != 0.0 and len(r):
            c = torch.tensor(self.coefficients, dtype=r.dtype, device=r.device)
            harmonic = real_spherical_harmonics(self.degree, vectors / r[:, None])[self.degree] @ c
            sign = torch.sign(graph.numbers[j] - graph.numbers[i]).to(r.dtype) if self.degree % 2 else torch.ones_like(r)
            per_edge = per_edge + 0.5 * self.amplitude * cut * sign * harmonic
        energies = torch.zeros(graph.n_structures, dtype=r.dtype, device=r.device)
        energies = energies.index_add(0, graph.structure[i], per_edge)
        if self.pseudoscalar_coefficient != 0.0:
            energies = energies + self.pseudoscalar_coefficient * self.triple_products(graph)
        return energies

    def triple_products(self, graph: Graph) -> torch.Tensor:
        """T (S,) Å³ of every structure of ``graph`` (module docstring)."""
        vectors = graph.edge_vectors()
        i, j = graph.edge_i, graph.edge_j
        r = vectors.norm(dim=1)
        cut = (0.5 * (1 + torch.cos(math.pi * r / self.cutoff)))[:, None] * vectors
        weight = graph.numbers[j].to(r.dtype)[:, None] / 10 + r[:, None] / self.cutoff
        n_atoms = len(graph.numbers)
        sums = [torch.zeros(n_atoms, 3, dtype=r.dtype, device=r.device).index_add(0, i, cut * weight**p) for p in range(3)]
        per_atom = torch.linalg.det(torch.stack(sums, dim=2))
        return torch.zeros(graph.n_structures, dtype=r.dtype, device=r.device).index_add(0, graph.structure, per_atom)


def known_answer_pair_model(degree: int | None = None, amplitude: float = 0.0, pseudoscalar: float = 0.0, cutoff: float = 4.0,
                       seed: int = 0) -> TorchModel:
    """:class:`KnownAnswerModule` as a batched :class:`~symprobe.models.torch_model.TorchModel` (float64): rotated
    copies of many structures in one pass, for MD with many molecules and grid averages."""
    module = KnownAnswerModule(degree, amplitude, pseudoscalar, cutoff, seed)
    name = "pair" + (f"+Y{degree} {amplitude:g} eV" if degree is not None and amplitude else "") + (
        f"+pseudoscalar {pseudoscalar:g} eV/Å³" if pseudoscalar else "")
    return TorchModel(module, name=name)


class KnownAnswerCalculator(Calculator):
    """:class:`KnownAnswerModule` as an ASE calculator: Morse pair potential (minimum at the sum of covalent radii,
    depth 0.5 eV) for any elements, plus the lab-frame term (``degree`` ℓ, ``amplitude`` A in eV) and the
    pseudoscalar term (``pseudoscalar`` c in eV/Å³) of the module docstring; ``seed`` fixes the lab-frame direction
    c_m."""

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, degree: int | None = None, amplitude: float = 0.0, pseudoscalar: float = 0.0,
                 cutoff: float = 4.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.model = known_answer_pair_model(degree, amplitude, pseudoscalar, cutoff, seed)
        module = self.model.module
        self.degree, self.amplitude, self.pseudoscalar_coefficient = module.degree, module.amplitude, module.pseudoscalar_coefficient
        self.cutoff, self.coefficients = module.cutoff, module.coefficients

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        prediction = self.model.predict(self.atoms)
        self.results = {"energy": prediction.energy, "free_energy": prediction.energy, "forces": prediction.forces}
        if self.atoms.pbc.all():
            self.results["stress"] = matrix_to_voigt(prediction.stress)

    def pseudoscalar(self, atoms: Atoms) -> float:
        """T(x) in Å³ (module docstring), so that the pseudoscalar term's energy is c·T eV."""
        with torch.no_grad():
            return float(self.model.module.triple_products(batch_graph([atoms], self.cutoff))[0])
