"""Rotations as values: quadrature rules on SO(3) and O(3) with a proven exactness degree.

A :class:`Quadrature` is a set of rotation matrices with weights summing to one. Its ``degree`` L is the
largest ℓ such that the weighted average of every Wigner-D function D^ℓ_{mk} with 1 ≤ ℓ ≤ L vanishes.
Rotations act on column vectors, x → R x. Improper elements are −R (inversion times a proper rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
