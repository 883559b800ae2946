"""The model contract and its two ASE adapters.

A :class:`Model` gives the energy (eV), forces (eV/Å) and, for periodic cells, stress (eV/Å³, ASE sign
convention: σ = (1/V) ∂E/∂ε) of an :class:`ase.Atoms`. Its one batch call, ``predict_many``, evaluates
rotated copies R_k x of several structures and returns forces and stress *rotated back* to the frame of
each input (R_kᵀ F(R_k x), R_kᵀ σ(R_k x) R_k); ``predict`` and ``predict_rotated`` are its special cases.
A model implements ``_predict_many`` (a batched engine: one pass over many structures) or ``_predict``
(one structure at a time; the default ``_predict_many`` loops over it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from symprobe.structures import check_structure, rotate


@dataclass
class Prediction:
    """One structure: ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``stress`` (3, 3) eV/Å³ or None."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None


@dataclass
class BatchPrediction:
    """B rotated copies of one structure, forces and stress expressed in the input's frame.

    ``energies`` (B,) eV, ``forces`` (B, N, 3) eV/Å, ``stress`` (B, 3, 3) eV/Å³ or None.
    """

    energies: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None = None

    def __getitem__(self, k: int) -> Prediction:
        return Prediction(float(self.energies[k]), self.forces[k], None if self.stress is None else self.stress[k])


class Model:
    """Energy, forces and stress of structures.

    Subclasses implement :meth:`_predict_many` or :meth:`_predict`. ``species`` is the set of atomic numbers
    the model knows (None: any); ``implemented_properties`` lists what it computes ("energy", "forces",
    "stress").
    """

    species: frozenset[int] | None = None
    implemented_properties: tuple[str, ...] = ("energy", "forces", "stress")
    name: str = "model"

    def predict(self, atoms: Atoms) -> Prediction:
        """Energy, forces (and stress if periodic) of ``atoms``; the input is checked first."""
        return self.predict_many([atoms])[0][0]

    def predict_rotated(self, atoms: Atoms, rotations: np.ndarray) -> BatchPrediction:
        """Evaluate the copies R_k x for ``rotations`` (B, 3, 3); forces/stress rotated back."""
        return self.predict_many([atoms], [rotations])[0]

    def predict_many(self, structures: Sequence[Atoms], rotations: Sequence[np.ndarray] | None = None) -> list[BatchPrediction]:
        """Evaluate the copies R x of every structure, ``rotations[s]`` (B_s, 3, 3) for structure s (None:
        each structure once, unrotated); one :class:`BatchPrediction` per structure, forces/stress rotated back.
        Every structure is checked first."""
        structures = list(structures)
        if rotations is None:
            rotations = [np.eye(3)[None]] * len(structures)
        rotations = [np.asarray(R, dtype=np.float64).reshape(-1, 3, 3) for R in rotations]
        if len(rotations) != len(structures):
            raise ValueError(f"predict_many: {len(structures)} structures but {len(rotations)} sets of rotations")
        for atoms in structures:
            check_structure(atoms, species=self.species)
        return self._predict_many(structures, rotations)

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        """Evaluate already checked structures: by default one :meth:`_predict` per copy."""
        return [stack_rotated_back([self._predict(rotate(atoms, R)) for R in Rs], Rs) for atoms, Rs in zip(structures, rotations)]

    def _predict(self, atoms: Atoms) -> Prediction:
        """Evaluate one already checked structure (models without a batched engine implement this)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _predict nor _predict_many")

    def as_calculator(self) -> "ModelCalculator":
        """This model as an ASE calculator."""
        return ModelCalculator(self)


def stack_rotated_back(results: Iterable[Prediction], rotations: np.ndarray) -> BatchPrediction:
    """Stack predictions made on rotated copies, mapping forces F → Rᵀ F and stress σ → Rᵀ σ R."""
    results = list(results)
    energies = np.array([r.energy for r in results])
    forces = np.einsum("kji,kaj->kai", rotations, np.stack([r.forces for r in results]))
    stress = None
    if all(r.stress is not None for r in results):
        stress = np.einsum("kai,kab,kbj->kij", rotations, np.stack([r.stress for r in results]), rotations)
    return BatchPrediction(energies, forces, stress)


def voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    """ASE Voigt order (xx, yy, zz, yz, xz, xy) to a symmetric 3×3 matrix."""
    xx, yy, zz, yz, xz, xy = np.asarray(stress, dtype=np.float64)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def matrix_to_voigt(stress: np.ndarray) -> np.ndarray:
    """A 3×3 stress matrix to ASE Voigt order (xx, yy, zz, yz, xz, xy)."""
    s = np.asarray(stress)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


class CalculatorModel(Model):
    """Any ASE calculator as a :class:`Model` (rotated copies are evaluated one by one)."""

    def __init__(self, calculator: Calculator, name: str | None = None, species: Iterable[int] | None = None):
        self.calculator = calculator
        self.name = name or type(calculator).__name__
        self.species = None if species is None else frozenset(int(z) for z in species)
        self.implemented_properties = tuple(getattr(calculator, "implemented_properties", ("energy", "forces")))

    def _predict(self, atoms: Atoms) -> Prediction:
        atoms = atoms.copy()
        atoms.calc = self.calculator
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(), dtype=np.float64)
        stress = None
        if atoms.pbc.all() and "stress" in self.implemented_properties:
            stress = voigt_to_matrix(atoms.get_stress(voigt=True))
        return Prediction(energy, forces, stress)


class ModelCalculator(Calculator):
    """A :class:`Model` as an ASE calculator (energy, free_energy, forces, stress for periodic cells)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model: Model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        prediction = self.model.predict(self.atoms)
        self.results = {"energy": prediction.energy, "free_energy": prediction.energy, "forces": prediction.forces}
        if prediction.stress is not None:
            self.results["stress"] = matrix_to_voigt(prediction.stress)
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError(f"{self.model.name}: no stress for a non-periodic structure")
