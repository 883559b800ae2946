"""A crystal with a known non-invariant term: ASE's EMT plus a lab-frame pair term of angular content
ℓ = 0, 2, 4 (energies in eV, forces in eV/Å, stress in eV/Å³)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from symprobe.models.base import matrix_to_voigt


class AnisotropicPairCalculator(Calculator):
    """ASE's EMT plus a known lab-frame pair term, the crystal analogue of q-TIP4P/F plus an orientation term:

    E_term = A Σ_{i<j, r_ij < r_c} (1 − r_ij/r_c)² Σ_a κ_a (r̂_ij · e_a)⁴   (eV; r in Å),

    even in r̂ (so it ignores the order of a pair) and translation invariant, but not rotation invariant: its
    angular content is ℓ = 0, 2, 4, and with unequal κ it breaks cubic symmetry. Forces and stress (ASE sign,
    eV/Å³, the symmetric part of the virial) are analytic.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, amplitude: float = 0.01, kappas: Sequence[float] = (1.0, 0.5, 2.0), cutoff: float = 3.0, **kwargs):
        from ase.calculators.emt import EMT

        super().__init__(**kwargs)
        self.amplitude, self.kappas, self.cutoff = float(amplitude), np.asarray(kappas, dtype=np.float64), float(cutoff)
        self.emt = EMT()

    def term(self, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
        """The term alone: energy (eV), forces (N, 3) eV/Å and the virial Σ g ⊗ D (3, 3) eV."""
        from ase.neighborlist import neighbor_list

        i, j, D = neighbor_list("ijD", atoms, self.cutoff)  # every pair twice, D = r_j − r_i
        d = np.linalg.norm(D, axis=1)
        u = D / d[:, None]
        f, df = (1 - d / self.cutoff) ** 2, -2 * (1 - d / self.cutoff) / self.cutoff
        h = (self.kappas * u**4).sum(axis=1)
        dh_du = 4 * self.kappas * u**3
        grad = 0.5 * self.amplitude * (df[:, None] * h[:, None] * u + f[:, None] * (dh_du - (dh_du * u).sum(axis=1, keepdims=True) * u) / d[:, None])
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, i, grad)  # −∂E/∂r_j = −grad, −∂E/∂r_i = +grad
        np.add.at(forces, j, -grad)
        return float(0.5 * self.amplitude * (f * h).sum()), forces, grad.T @ D

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.emt.calculate(self.atoms, ["energy", "forces", "stress"], system_changes)
        energy, forces, virial = self.term(self.atoms)
        stress = (virial + virial.T) / (2 * self.atoms.get_volume())
        self.results = {"energy": self.emt.results["energy"] + energy, "forces": self.emt.results["forces"] + forces,
                        "stress": self.emt.results["stress"] + matrix_to_voigt(stress)}
        self.results["free_energy"] = self.results["energy"]
