"""Exact smooth symmetrization (ECSE) of any model: a weighted average over local coordinate frames.

Pozdnyakov & Ceriotti, "Smooth, exact rotational symmetrization for deep learning on point clouds"
(NeurIPS 2023, arXiv 2305.19302). Here it is applied globally to a structure-level model:

* Every atom c is a centre. Every ordered pair (a, b) of its neighbours (vectors r_a, r_b, periodic images
  included) defines an orthonormal frame e1 = r̂_a, e2 ∝ r_b − (r_b·e1) e1, e3 = e1 × e2; the rotation
  R = [e1; e2; e3] (rows) expresses the structure in that frame. With ``inversion`` each frame also
  appears with e3 → −e3 (improper), which makes the average O(3)-invariant.
* Adaptive inner cutoff of centre c: a smooth minimum (softmin with sharpness β, 1/Å) over its neighbour
  pairs within ``cutoff`` of [smooth max(|r_a|, |r_b|) + T], the entry ``cutoff`` itself weighted 1,
  each pair weighted by f(|r_a|; cutoff) f(|r_b|; cutoff) q(|r̂_a × r̂_b|²; w), plus ``cutoff_width``.
  T = W₀(1/e)/β offsets the softmax undershoot, so the closest non-collinear pair always carries weight
  and only a few pairs do.
* Frame weight: f(|r_a|; r_in) f(|r_b|; r_in) q(|r̂_a × r̂_b|²; w − δw), with f(r; r_c) =
  exp(−δ/(r_c − r)) (C∞, zero at r_c) and q(s; w) = exp(−δw/(s − w)) (C∞, zero for s ≤ w: collinear
  pairs never define a frame). Optionally (``num_prunings`` > 0, as in PET) the weights are pruned
  smoothly: each is multiplied by a C∞ step vanishing below ``pruning_threshold`` × (softmax of the
  weights), so only the best few frames of the whole structure survive. Pruning keeps the result exact
  and C∞ but makes it stiff: when two frames swap rank the average switches between their energies over
  a short distance (with a strongly anisotropic model, curvatures ~1e5 eV/Å² were measured), so it is
  off by default. Without pruning an isolated water molecule has 6 frames and the 64-molecule box 660
  (~10 per molecule; 98 with ``num_prunings=4``): one model evaluation per frame, so the cost of a
  structure-level model grows as O(N²).
* E(x) = Σ_f w_f E_model(R_f x) / Σ_f w_f is exactly invariant (R_f(Q x) = R_f(x) Qᵀ for any rotation
  Q) and C∞ in the positions, also when neighbours cross ``cutoff`` or the inner cutoffs. Forces and
  stress include the derivatives of frames and weights: a first-order surrogate
  Σ_f w_f(x) [E_f + ∇_y E_f · (y_f(x) − y_f)] is differentiated with torch autograd, where y_f = R_f(x) x
  (and the rotated cell).

The wrapped model must be translation invariant. Isolated structures work with any model of the contract
(one batched ``predict_rotated`` call); periodic ones need a :class:`~symprobe.models.torch_model.TorchModel`
because rotating the cell with the frame requires ∂E/∂cell, which the contract's symmetric stress does not
carry. Cost: one model evaluation per frame (``frames(atoms)`` tells how many).

Degenerate structures: with no non-collinear pair of neighbours within ``cutoff`` (fewer than three atoms,
all atoms on a line, or no neighbours) there is no frame. Without a ``fallback`` model this raises
:class:`~symprobe.structures.StructureError`. With one (as the paper's auxiliary invariant model), the
energy is blended, E = s E_frames + (1 − s) E_fallback with s = step(W / ``fallback_weight``), where W is the
total unnormalised frame weight and step is C∞ (0 at W = 0, 1 for W ≥ ``fallback_weight``). The blend is as
smooth as both parts and as invariant as the fallback: a grid average exact to the wrapped model's
angular content keeps it exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from symprobe.models.base import Model, Prediction
from symprobe.models.torch_model import TorchModel, neighbour_list
from symprobe.structures import StructureError, structure_label

LAMBERT_W0_INV_E = 0.2784645427610738  # W₀(1/e): the largest undershoot of a 2-term softmax is W₀(1/e)/β


@dataclass(frozen=True)
class Frames:
    """Frames of one structure: ``rotations`` (F, 3, 3) map x → R x into each frame; ``weights`` (F,)
    sum to one; ``total`` is the unnormalised weight sum W (0 and no frames for a degenerate structure,
    ``degenerate`` then says why). Torch tensors, differentiable in the positions/cell they came from."""

    rotations: torch.Tensor
    weights: torch.Tensor
    total: torch.Tensor
    degenerate: str = ""

    def __len__(self) -> int:
        return int(self.weights.shape[0])


def _decay(r: torch.Tensor, r_cut: torch.Tensor | float, width: float) -> torch.Tensor:
    """exp(−width/(r_cut − r)) for r < r_cut, else 0 (C∞ at r_cut; Å)."""
    inside = r < r_cut
    gap = torch.where(inside, r_cut - r, torch.ones_like(r))
    return torch.where(inside, torch.exp(-width / gap), torch.zeros_like(r))


def _rise(s: torch.Tensor, threshold: float, width: float) -> torch.Tensor:
    """exp(−width/(s − threshold)) for s > threshold, else 0 (C∞ at the threshold)."""
    above = s > threshold
    gap = torch.where(above, s - threshold, torch.ones_like(s))
    return torch.where(above, torch.exp(-width / gap), torch.zeros_like(s))


def _step(t: torch.Tensor) -> torch.Tensor:
    """C∞ step: 0 for t ≤ 0, 1 for t ≥ 1, smooth in between."""
    a = _rise(t, 0.0, 1.0)
    b = _rise(1.0 - t, 0.0, 1.0)
    return a / (a + b)


def _softmax_mean(values: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ v w e^{βv} / Σ w e^{βv}: a smooth weighted maximum (β > 0) or minimum (β < 0)."""
    shift = values.max() if beta > 0 else values.min()
    factor = weights * torch.exp(beta * (values - shift.detach()))
    return (factor * values).sum() / factor.sum()


def _pairs_per_centre(centre: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b), a ≠ b, of edges sharing a centre; edges must be sorted by centre."""
    counts = np.bincount(centre, minlength=n_atoms)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_edge = counts[centre]
    first = np.repeat(np.arange(len(centre)), per_edge)
    rank = np.arange(per_edge.sum()) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
    second = start[centre[first]] + rank
    keep = first != second
    return first[keep], second[keep]


class ECSE(Model):
    """Exact smooth symmetrization of ``model`` (a model itself; see the module docstring).

    ``cutoff`` (Å) bounds the neighbours that define frames; ``cutoff_width`` (Å) is the width δ of the
    radial weights and the margin of the adaptive inner cutoff; ``beta`` (1/Å) the softmin/softmax
    sharpness; ``collinearity`` the |r̂_a × r̂_b|² below which pairs carry no weight (frames use
    ``collinearity − collinearity_width``); ``pruning_threshold``/``pruning_width`` (fractions of the
    smooth maximum weight) and ``num_prunings`` thin out weak frames; ``pruning_beta`` is the sharpness of
    that smooth maximum (weights are ≤ 1); ``inversion`` adds improper frames (O(3) invariance).
    """

    def __init__(
        self,
        model: Model,
        cutoff: float = 3.0,
        cutoff_width: float = 0.2,
        beta: float = 5.0,
        collinearity: float = 0.2,
        collinearity_width: float = 0.15,
        pruning_threshold: float = 0.9,
        pruning_width: float = 0.05,
        num_prunings: int = 0,
        pruning_beta: float = 20.0,
        inversion: bool = False,
        fallback: Model | None = None,
        fallback_weight: float = 0.1,
    ):
        if "forces" not in model.implemented_properties:
            raise ValueError(f"ECSE needs a model with forces; {model.name} implements {model.implemented_properties}")
        if not (cutoff > 0 and cutoff_width > 0 and beta > 0):
            raise ValueError(f"ECSE: cutoff ({cutoff} Å), cutoff_width ({cutoff_width} Å), beta ({beta}/Å) must be positive")
        if not 0 < collinearity_width < collinearity < 1:
            raise ValueError(f"ECSE: need 0 < collinearity_width ({collinearity_width}) < collinearity ({collinearity}) < 1")
        if num_prunings < 0 or not (0 <= pruning_threshold and pruning_width > 0 and pruning_threshold + pruning_width < 1):
            raise ValueError("ECSE: need num_prunings ≥ 0, pruning_threshold ≥ 0, pruning_width > 0, threshold + width < 1")
        if fallback is not None and "forces" not in fallback.implemented_properties:
            raise ValueError(f"ECSE fallback needs forces; {fallback.name} implements {fallback.implemented_properties}")
        if not fallback_weight > 0:
            raise ValueError(f"ECSE: fallback_weight must be positive, got {fallback_weight}")
        self.model = model
        self.cutoff, self.cutoff_width, self.beta = float(cutoff), float(cutoff_width), float(beta)
        self.collinearity, self.collinearity_width = float(collinearity), float(collinearity_width)
        self.pruning_threshold, self.pruning_width = float(pruning_threshold), float(pruning_width)
        self.num_prunings, self.pruning_beta = int(num_prunings), float(pruning_beta)
        self.inversion = bool(inversion)
        self.fallback, self.fallback_weight = fallback, float(fallback_weight)
        self.species = model.species
        self.name = f"ECSE({model.name})"
        self.implemented_properties = ("energy", "forces", "stress") if isinstance(model, TorchModel) else ("energy", "forces")

    @property
    def frame_cutoff(self) -> float:
        """The largest distance (Å) at which a neighbour can carry frame weight: cutoff + T + δ."""
        return self.cutoff + LAMBERT_W0_INV_E / self.beta + self.cutoff_width

    # ------------------------------------------------------------------------------------------------
    def frames(self, atoms: Atoms) -> Frames:
        """The frames and normalised weights of ``atoms`` (not differentiable: for inspection and cost);
        a degenerate structure raises :class:`StructureError` unless there is a fallback."""
        with torch.no_grad():
            frames = self._frames_of(atoms, torch.tensor(atoms.get_positions()), self._cell(atoms), *self._edges(atoms))
        return self._checked(frames)

    def _checked(self, frames: Frames) -> Frames:
        if frames.degenerate and self.fallback is None:
            raise StructureError(frames.degenerate + " (give ECSE a fallback model for such structures)")
        return frames

    def _cell(self, atoms: Atoms) -> torch.Tensor:
        return torch.tensor(atoms.cell.array if atoms.pbc.all() else np.zeros((3, 3)), dtype=torch.float64)

    def _edges(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i, j, shifts = neighbour_list(atoms, self.frame_cutoff)
        order = np.argsort(i, kind="stable")
        return i[order], j[order], shifts[order]

    def _frames_of(
        self, atoms: Atoms, positions: torch.Tensor, cell: torch.Tensor, i: np.ndarray, j: np.ndarray, shifts: np.ndarray
    ) -> Frames:
        label = structure_label(atoms)
        if not atoms.pbc.all() and len(atoms) < 3:
            return self._no_frames(positions, f"{label}: ECSE needs at least 3 atoms to build a frame (got {len(atoms)})")
        vectors = positions[j] - positions[i] + torch.tensor(shifts, dtype=positions.dtype) @ cell
        first, second = _pairs_per_centre(i, len(atoms))
        if len(first) == 0:
            return self._no_frames(positions, f"{label}: no atom has two neighbours within {self.frame_cutoff:.3f} Å; ECSE has no frame")
        centre = torch.tensor(i[first])
        lengths = torch.linalg.norm(vectors, dim=1)
        d_a, d_b = lengths[first], lengths[second]
        unit = vectors / lengths[:, None]
        spread = torch.linalg.cross(unit[first], unit[second]).pow(2).sum(dim=1)

        # adaptive inner cutoff per centre: softmin of [softmax(d_a, d_b) + T] with `cutoff` weighted 1
        pair_max = (torch.softmax(self.beta * torch.stack([d_a, d_b]), dim=0) * torch.stack([d_a, d_b])).sum(dim=0)
        values = pair_max + LAMBERT_W0_INV_E / self.beta
        pair_weight = (
            _decay(d_a, self.cutoff, self.cutoff_width)
            * _decay(d_b, self.cutoff, self.cutoff_width)
            * _rise(spread, self.collinearity, self.collinearity_width)
        )
        boltzmann = pair_weight * torch.exp(-self.beta * (values - self.cutoff))
        numerator = torch.full((len(atoms),), self.cutoff, dtype=positions.dtype).index_add(0, centre, boltzmann * values)
        denominator = torch.ones(len(atoms), dtype=positions.dtype).index_add(0, centre, boltzmann)
        inner = (numerator / denominator + self.cutoff_width)[centre]

        weights = (
            _decay(d_a, inner, self.cutoff_width)
            * _decay(d_b, inner, self.cutoff_width)
            * _rise(spread, self.collinearity - self.collinearity_width, self.collinearity_width)
        )
        if not bool((weights > 0).any()):
            return self._no_frames(positions, f"{label}: no non-collinear pair of neighbours within {self.cutoff} Å "
                                   "(atoms on a line or too far apart); ECSE frames are undefined")
        for _ in range(self.num_prunings):
            alive = weights > 0
            top = _softmax_mean(weights[alive], weights[alive], self.pruning_beta)
            weights = weights * _step((weights - self.pruning_threshold * top) / (self.pruning_width * top))
        keep = torch.nonzero(weights > 0).flatten()
        weights = weights[keep]
        total = weights.sum()
        e1 = unit[first[keep.numpy()]]
        rb = vectors[second[keep.numpy()]]
        e2 = rb - (rb * e1).sum(dim=1, keepdim=True) * e1
        e2 = e2 / torch.linalg.norm(e2, dim=1, keepdim=True)
        e3 = torch.linalg.cross(e1, e2)
        rotations = torch.stack([e1, e2, e3], dim=1)
        if self.inversion:
            rotations = torch.cat([rotations, torch.stack([e1, e2, -e3], dim=1)])
            weights = torch.cat([weights, weights])
        return Frames(rotations, weights / weights.sum(), total)

    @staticmethod
    def _no_frames(positions: torch.Tensor, reason: str) -> Frames:
        empty = positions.new_zeros((0,))
        return Frames(positions.new_zeros((0, 3, 3)), empty, positions.new_zeros(()), reason)

    # ------------------------------------------------------------------------------------------------
    def _predict(self, atoms: Atoms) -> Prediction:
        periodic = bool(atoms.pbc.all())
        if periodic and not isinstance(self.model, TorchModel):
            raise TypeError(
                f"{self.name}: periodic structures need a TorchModel to wrap (the frame rotates the cell, "
                "which needs ∂E/∂cell); wrap the torch model directly"
            )
        i, j, shifts = self._edges(atoms)
        positions = torch.tensor(atoms.get_positions(), dtype=torch.float64, requires_grad=True)
        cell = self._cell(atoms)
        inputs = [positions]
        if periodic:
            strain = torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)
            deform = torch.eye(3, dtype=torch.float64) + 0.5 * (strain + strain.T)
            strained, cell = positions @ deform, cell @ deform
            inputs.append(strain)
        else:
            strained = positions
        frames = self._checked(self._frames_of(atoms, strained, cell, i, j, shifts))
        blend = _step(frames.total / self.fallback_weight) if self.fallback is not None else torch.ones(())
        surrogate = torch.zeros((), dtype=torch.float64)
        if len(frames) > 0:
            # first-order surrogate: value Σ w E_f, gradient includes frame and weight derivatives
            energies, grad_positions, grad_cells = self._model_gradients(atoms, frames.rotations.detach().numpy())
            rotated = torch.einsum("fab,nb->fna", frames.rotations, strained)
            change = ((rotated - rotated.detach()) * torch.tensor(grad_positions)).sum(dim=(1, 2))
            if grad_cells is not None:
                rotated_cell = torch.einsum("fab,cb->fca", frames.rotations, cell)
                change = change + ((rotated_cell - rotated_cell.detach()) * torch.tensor(grad_cells)).sum(dim=(1, 2))
            surrogate = blend * (frames.weights * (torch.tensor(energies) + change)).sum()
        if float(blend.detach()) < 1.0:
            surrogate = surrogate + (1 - blend) * self._fallback_surrogate(atoms, inputs)
        grads = torch.autograd.grad(surrogate, inputs, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        stress = grads[1].numpy() / abs(atoms.cell.volume) if periodic else None
        return Prediction(float(surrogate.detach()), -grads[0].numpy(), stress)

    def _fallback_surrogate(self, atoms: Atoms, inputs: list[torch.Tensor]) -> torch.Tensor:
        """E_fallback plus first-order terms whose gradients are −F (positions) and V σ (strain)."""
        p = self.fallback.predict(atoms)
        positions = inputs[0]
        value = p.energy - ((positions - positions.detach()) * torch.tensor(p.forces)).sum()
        if len(inputs) > 1:
            if p.stress is None:
                raise ValueError(f"{self.name}: the fallback {self.fallback.name} gives no stress for a periodic structure")
            value = value + abs(atoms.cell.volume) * (inputs[1] * torch.tensor(p.stress)).sum()
        return value

    def _model_gradients(self, atoms: Atoms, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Energies E_f (F,) of the copies R_f x, ∂E_f/∂y (F, N, 3) in the rotated frame and, for a
        TorchModel, ∂E_f/∂(rotated cell rows) (F, 3, 3)."""
        if isinstance(self.model, TorchModel):
            return self.model.gradients(atoms, rotations)
        batch = self.model.predict_rotated(atoms, rotations)
        forces_in_frame = np.einsum("fab,fnb->fna", rotations, batch.forces)
        return batch.energies, -forces_in_frame, None
