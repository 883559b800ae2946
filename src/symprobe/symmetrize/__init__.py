"""Symmetrizers: models that wrap a model and remove (or randomise) its rotational symmetry breaking.

Each symmetrizer is itself a :class:`~symprobe.models.base.Model` (so they compose, and each has
``as_calculator()``):

- :class:`GridAverage` — E(x) = Σ_k w_k E(R_k x), F(x) = Σ_k w_k R_kᵀ F(R_k x), σ(x) = Σ_k w_k R_kᵀ σ(R_k x) R_k
  over a :class:`~symprobe.so3.Quadrature`; conservative and exactly invariant for every model whose
  orientation dependence is band-limited to the rule's degree.
- :class:`RandomRotation` — one Haar-random rotation per call (optionally with inversion), seeded; its
  generator state can be saved and restored so MD restarts reproduce uninterrupted runs.
- :class:`AveragingCorrection` — the grid average minus the raw model (the slow force of multiple time
  stepping), from one batched call holding the identity and the grid.

Every symmetrizer is a rule on rotated copies of the model it wraps (:meth:`Symmetrizer.expand`): nested
symmetrizers multiply their rules, and a call on many structures is one ``predict_many`` call of the
innermost model (:meth:`Symmetrizer.base`), so the copies of all structures share its batched passes.

:func:`recommend` picks the cheapest quadrature whose average meets target rotational errors.

Modules: :mod:`.base` (:class:`Symmetrizer`, :func:`weighted_sum`), :mod:`.averages` (:class:`GridAverage`,
:class:`AveragingCorrection`, :class:`RandomRotation`), :mod:`.choice` (:func:`grid_errors`, :func:`recommend`) and
:mod:`.ecse` (:class:`~symprobe.symmetrize.ecse.ECSE`, exact smooth symmetrization over local frames; it needs torch,
so it is imported from :mod:`symprobe.symmetrize.ecse`, not from here).
"""

from symprobe.symmetrize.averages import AveragingCorrection, GridAverage, RandomRotation, correction_rule
from symprobe.symmetrize.base import Symmetrizer, weighted_sum
from symprobe.symmetrize.choice import GridError, default_candidates, grid_errors, recommend

__all__ = ["AveragingCorrection", "GridAverage", "GridError", "RandomRotation", "Symmetrizer", "correction_rule",
           "default_candidates", "grid_errors", "recommend", "weighted_sum"]
