"""The symmetry audit: how far a model's predictions are from rotational (and inversion) invariance.

For every structure x the model is evaluated on rotated copies R_k x of a quadrature Q (weights w_k):

* the **symmetrized prediction** is the weighted mean Ē = Σ_k w_k E(R_k x) (forces and stress rotated
  back, F̄ = Σ_k w_k R_kᵀ F(R_k x)); the **rotational error** is the raw prediction's deviation from it,
  E(x) − Ē and F(x) − F̄ (the paper's measure, with the 150-point grid "3i" as reference);
* the **spread** over the grid: standard deviations of E(R_k x) and of the rotated-back forces and stress;
* for isolated structures, the **net force** and **net torque** about the centre of mass, which vanish
  for any invariant model (torque in eV = Å · eV/Å);
* the **λ spectrum** of the energy as a function on SO(3) (or O(3)), f(R) = E(R x):
  c^λ = Σ_k w_k f(R_k) D^λ(R_k), P_λ = (2λ+1) Σ_mk (c^λ_mk)², normalised so that Σ_λ P_λ = ∫ f² dR
  (Haar measure of total mass 1), computed on a rule exact to degree 2·λmax and split by parity when
  inversion is included; an invariant model has P_λ = 0 for λ ≥ 1 (and no parity-odd power);
* the **convergence** of the symmetrized prediction with grid size against the reference grid;
* where structures carry reference energies and forces, the **model's own error** beside the rotational
  error: the ratio of the two says whether symmetry breaking matters for this model.

All rotations of one structure go through one batched ``predict_rotated`` call (duplicates shared).
Results are dataclasses of plain floats and lists, so :meth:`AuditReport.to_dict` is valid JSON; units
are in the key names (``_eV``, ``_meV``, ``_meV_per_A``, ``_meV_per_A3``, ``_eV2``).

Precision: run audits of small errors in float64. A float32 model's round-off (≈1e-7 relative, i.e. a
few meV on a 192-atom water cell at the DFT energy scale of ≈ −30 000 eV) would otherwise be counted as
learned symmetry breaking; :func:`in_float64` gives the float64 version of a torch model, and
``model.dtype`` is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from symprobe.figures import AUDIT_FIGURES, audit_figures
from symprobe.files import replacing_set, write_json, writing_to
from symprobe.analysis.observables import net_torque
from symprobe import so3
from symprobe.models.base import BatchPrediction, Model
from symprobe.structures import StructureError, check_structure, reference_labels, structure_label

SCHEMA = "symprobe-audit/1"
MEV = 1000.0  # meV per eV
DEFAULT_GRID = "3i"  # the paper's reference: 75-point Legendre–Euler grid × inversion (150 evaluations)
PAPER_GRIDS = ("0", "i", "2", "2i", "3")  # the paper's coarser grids (1, 2, 18, 36, 75 evaluations)
RESULT_FILES = ("audit.json", *AUDIT_FIGURES)  # an audit's result set, replaced as a unit (:func:`write_results`)
OWN_DEGREES = (1, 2, 3, 5)  # symprobe's smallest rules with inversion (8, 24, 48, 120 evaluations) in the convergence study


class AuditError(RuntimeError):
    """The audit cannot proceed: the message names the structure and the problem."""


# ---------------------------------------------------------------------------------------------------
# Results


@dataclass
class GridInfo:
    """A quadrature as recorded in the report: name, number of evaluations, exactness degree, inversion."""

    name: str
    evaluations: int
    degree: int
    improper: bool

    @classmethod
    def of(cls, quadrature) -> "GridInfo":
        return cls(str(quadrature.name), len(quadrature), int(quadrature.degree), bool(quadrature.improper))


@dataclass
class Spectrum:
    """λ-resolved power (eV²) of f(R) = E(R x) for λ = 0..lmax; parity sectors when inversion is included.

    ``power_eV2[λ]`` = Σ over sectors; ``power_even_eV2``/``power_odd_eV2`` are None for SO(3) rules.
    λ = 0 (even) is the square of the mean, the invariant part; everything else is symmetry breaking.
    """

    power_eV2: list[float]
    power_even_eV2: list[float] | None
    power_odd_eV2: list[float] | None

    def breaking_power(self) -> float:
        """Σ of all non-invariant power (λ ≥ 1, and parity-odd λ = 0), eV²."""
        odd0 = self.power_odd_eV2[0] if self.power_odd_eV2 is not None else 0.0
        return float(sum(self.power_eV2[1:]) + odd0)


@dataclass
class GridPoint:
    """One structure averaged on one convergence grid, against the reference grid's average."""

    grid: str
    energy_error_meV: float  # |Ē(grid) − Ē(reference)|
    force_mae_meV_per_A: float  # mean over atoms and components of |F̄(grid) − F̄(reference)|
    torque_eV: float | None  # |net torque| of F̄(grid) about the centre of mass (isolated structures)


@dataclass
class ModelError:
    """The model's own error against reference labels of one structure (raw prediction, no averaging)."""

    energy_reference_eV: float | None
    energy_error_meV: float | None  # E_model − E_reference
    force_mae_meV_per_A: float | None
    force_rmse_meV_per_A: float | None


@dataclass
class StructureAudit:
    """Audit of one structure on the reference grid (see the module docstring for definitions)."""

    index: int
    name: str
    formula: str
    n_atoms: int
    periodic: bool
    energy_raw_eV: float
    energy_symmetrized_eV: float
    energy_deviation_meV: float  # E(x) − Ē
    energy_std_meV: float  # weighted std of E(R_k x) over the grid
    energies_eV: list[float]  # E(R_k x) for every rotation of the reference grid, in grid order
    force_deviation_mae_meV_per_A: float  # mean |F(x) − F̄| over atoms and components
    force_deviation_rms_meV_per_A: float  # RMS over atoms and components
    force_deviation_max_meV_per_A: float  # largest per-atom |F_i(x) − F̄_i|
    force_deviation_per_atom_meV_per_A: list[float]  # |F_i(x) − F̄_i| (vector norm) per atom
    force_std_meV_per_A: float  # RMS over atoms and components of the weighted std over the grid
    stress_deviation_rms_meV_per_A3: float | None  # RMS over components of σ(x) − σ̄ (periodic)
    stress_std_meV_per_A3: float | None
    net_force_raw_eV_per_A: float | None  # |Σ_i F_i(x)| (isolated structures)
    net_force_rms_eV_per_A: float | None  # RMS over the grid of |Σ_i F_i(R_k x)|
    torque_raw_eV: float | None  # |Σ_i (x_i − x_com) × F_i(x)|
    torque_rms_eV: float | None  # RMS over the grid of the raw model's net torque
    torque_symmetrized_eV: float | None  # net torque of F̄
    spectrum: Spectrum
    convergence: list[GridPoint]
    model_error: ModelError | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StructureAudit:
        """A result back from its JSON form (``asdict``), for resumed audits."""
        error = data["model_error"]
        return cls(**{**data, "spectrum": Spectrum(**data["spectrum"]),
                      "convergence": [GridPoint(**point) for point in data["convergence"]],
                      "model_error": None if error is None else ModelError(**error)})


@dataclass
class AuditReport:
    """The whole audit: settings, per-structure results, convergence and the summary."""

    model: dict[str, Any]
    grid: GridInfo
    spectrum_grid: GridInfo
    lmax: int
    convergence_grids: list[GridInfo]
    structures: list[StructureAudit]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    convergence: list[dict[str, Any]] = field(default_factory=list)
    schema: str = SCHEMA
    symprobe_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the layout documented in docs/audit-schema.md)."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# Grids


def default_convergence_grids() -> list:
    """The paper's coarser grids (0, i, 2, 2i, 3) and symprobe's smallest rules with inversion of degree 1, 2, 3, 5."""
    return [so3.paper_grid(label) for label in PAPER_GRIDS] + [so3.smallest(d, improper=True) for d in OWN_DEGREES]


def spectrum_grid(lmax: int, improper: bool, reference=None):
    """The rule for the λ spectrum: exact to degree 2·lmax, so that f·D^λ integrates exactly for f of
    content ≤ lmax. ``reference`` (the audit grid) is reused when it qualifies, else the cheapest rule."""
    if reference is not None and reference.degree >= 2 * lmax and reference.improper == improper:
        return reference
    return so3.smallest(2 * lmax, improper=improper)


def _unique_rotations(rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rotations (to 1e-10) and, for every input rotation, its index among them."""
    keys = np.round(rotations.reshape(len(rotations), 9), 10) + 0.0  # + 0.0 turns −0.0 into 0.0
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return rotations[first], inverse.reshape(-1)


def evaluations(rules: Sequence) -> int:
    """Model evaluations per structure for quadratures ``rules`` plus the identity (duplicates shared)."""
    return len(_unique_rotations(np.concatenate([np.eye(3)[None]] + [q.rotations for q in rules]))[0])


def as_isolated(atoms: Atoms, cutoff: float | None, label: str) -> Atoms:
    """``atoms`` with periodicity switched off (a copy, reference labels kept), for a molecule in a large box.

    Refused with :class:`AuditError` unless, along every periodic cell vector, the cell's width (distance
    between its faces, Å) exceeds the structure's extent along it plus the model's ``cutoff`` (Å): then no
    atom lies within the cutoff of a periodic image, so the model (message passing included) sees the same
    structure with or without the cell. Non-periodic structures are returned as they are.
    """
    if not atoms.pbc.any():
        return atoms
    if cutoff is None or not np.isfinite(cutoff):
        raise AuditError(f"{label}: cannot audit as isolated: the model gives no finite cutoff to compare the cell with")
    normals = atoms.cell.reciprocal()  # row i is normal to the faces spanned by the other two cell vectors
    unit = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    widths = 1.0 / np.linalg.norm(normals, axis=1)
    extents = np.ptp(atoms.get_positions() @ unit.T, axis=0)
    for axis in np.flatnonzero(atoms.pbc):
        if widths[axis] <= extents[axis] + cutoff:
            raise AuditError(f"{label}: cannot audit as isolated: the cell is {widths[axis]:.4g} Å wide along cell vector "
                             f"{'abc'[axis]}, not more than the structure's extent {extents[axis]:.4g} Å plus the model's "
                             f"cutoff {cutoff:.4g} Å, so atoms see their periodic images")
    isolated = atoms.copy()
    isolated.calc = atoms.calc
    isolated.pbc = False
    return isolated


def isolated_structures(model: Model, structures: Sequence[Atoms]) -> list[Atoms]:
    """:func:`as_isolated` of every structure with ``model``'s cutoff; the first refusal is raised."""
    cutoff = getattr(model, "cutoff", None)
    return [as_isolated(atoms, cutoff, structure_label(atoms, k)) for k, atoms in enumerate(structures)]


# ---------------------------------------------------------------------------------------------------
# Precision


def in_float64(model: Model) -> Model:
    """The float64 version of a torch model (a copy; the input is unchanged); other models as they are.

    Float64 separates round-off from learned symmetry breaking: an exactly invariant float64 model gives
    rotational errors ≈1e-12 eV, a float32 one ≈1e-7 relative to the energy.
    """
    import torch

    from symprobe.models.torch_model import TorchModel

    if isinstance(model, TorchModel) and model.dtype != torch.float64:
        return model.converted(dtype=torch.float64)
    return model


def model_dtype(model: Model) -> str:
    """The evaluation precision of ``model`` as a string ('float64', 'float32' or 'unknown')."""
    dtype = getattr(model, "dtype", None)
    return str(dtype).replace("torch.", "") if dtype is not None else "unknown"


# ---------------------------------------------------------------------------------------------------
# One structure


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, values, axes=1)


def _weighted_std(weights: np.ndarray, values: np.ndarray, mean: np.ndarray) -> float:
    """RMS over all components of the weighted std over the first axis."""
    var = np.tensordot(weights, (values - mean) ** 2, axes=1)
    return float(np.sqrt(max(float(np.mean(var)), 0.0)))


def _net_force_and_torque(atoms: Atoms, forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net force (..., 3) eV/Å and net torque about the centre of mass (..., 3) eV of forces (..., N, 3)."""
    return forces.sum(axis=-2), net_torque(atoms.get_positions(), forces, atoms.get_masses())


def energy_spectrum(energies: np.ndarray, quadrature, lmax: int) -> Spectrum:
    """λ spectrum of f(R_k) = ``energies`` sampled on ``quadrature`` (exact to degree ≥ 2·lmax for a
    band-limited f). With improper rotations the O(3) irreps D^λ ⊗ (±1) give even and odd sectors."""
    f = np.asarray(energies, dtype=np.float64)
    w = quadrature.weights
    mean = float(w @ f)
    centred = f - mean  # removing the constant first keeps round-off of large energies out of λ ≥ 1

    def power(d: np.ndarray, values: np.ndarray) -> float:
        c = np.einsum("k,kmn->mn", w * values, d)
        return float(d.shape[1] * np.sum(c**2))

    if not quadrature.improper:
        powers = [mean**2] + [power(so3.wigner_D(lam, quadrature.rotations), centred) for lam in range(1, lmax + 1)]
        return Spectrum(powers, None, None)
    even = [mean**2] + [
        power(so3.wigner_D_parity(lam, quadrature.rotations, odd=False), centred) for lam in range(1, lmax + 1)
    ]
    odd = [power(so3.wigner_D_parity(lam, quadrature.rotations, odd=True), centred) for lam in range(0, lmax + 1)]
    return Spectrum([e + o for e, o in zip(even, odd)], even, odd)


def _model_error(atoms: Atoms, energy: float, forces: np.ndarray, label: str) -> ModelError | None:
    e_ref, f_ref = reference_labels(atoms)
    if e_ref is None and f_ref is None:
        return None
    energy_error = None if e_ref is None else (energy - e_ref) * MEV
    mae = rmse = None
    if f_ref is not None:
        if f_ref.shape != forces.shape:
            raise AuditError(f"{label}: reference forces have shape {f_ref.shape}, expected {forces.shape}")
        diff = forces - f_ref
        mae, rmse = float(np.mean(np.abs(diff)) * MEV), float(np.sqrt(np.mean(diff**2)) * MEV)
    return ModelError(e_ref, energy_error, mae, rmse)


def audit_structure(
    model: Model,
    atoms: Atoms,
    grid,
    lmax: int = 2,
    convergence_grids: Sequence = (),
    spectrum_rule=None,
    index: int = 0,
) -> StructureAudit:
    """Audit one structure on the reference quadrature ``grid``.

    ``convergence_grids`` are compared with ``grid``; ``spectrum_rule`` defaults to :func:`spectrum_grid`.
    Raises :class:`~symprobe.structures.StructureError` for bad input and :class:`AuditError` when the
    model returns non-finite values, both naming the structure.
    """
    grid = so3.get(grid)
    convergence_grids = [so3.get(g) for g in convergence_grids]
    spectrum_rule = spectrum_rule if spectrum_rule is not None else spectrum_grid(lmax, grid.improper, grid)
    label = structure_label(atoms, index)
    check_structure(atoms, label=label, species=model.species)

    rules = [grid, spectrum_rule, *convergence_grids]
    stacked = np.concatenate([np.eye(3)[None]] + [q.rotations for q in rules])
    unique, where = _unique_rotations(stacked)
    batch = _predict(model, atoms, unique, label)
    _check_finite(batch, label)
    bounds = np.cumsum([1] + [len(q) for q in rules])  # row 0 of ``stacked`` is the identity
    ref_rows, spectrum_rows, *convergence_rows = [where[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    raw = where[0]
    e_raw, f_raw = float(batch.energies[raw]), batch.forces[raw]

    def average(q, rows):
        e = float(_weighted_mean(q.weights, batch.energies[rows]))
        f = _weighted_mean(q.weights, batch.forces[rows])
        s = None if batch.stress is None else _weighted_mean(q.weights, batch.stress[rows])
        return e, f, s

    e_sym, f_sym, s_sym = average(grid, ref_rows)
    energies = batch.energies[ref_rows]
    force_dev = f_raw - f_sym
    per_atom = np.linalg.norm(force_dev, axis=1)

    stress_dev_rms = stress_std = None
    if batch.stress is not None and atoms.pbc.all():
        stress_dev_rms = float(np.sqrt(np.mean((batch.stress[raw] - s_sym) ** 2)) * MEV)
        stress_std = _weighted_std(grid.weights, batch.stress[ref_rows], s_sym) * MEV

    isolated = not atoms.pbc.any()
    torque_fields: dict[str, float | None] = dict.fromkeys(
        ["net_force_raw_eV_per_A", "net_force_rms_eV_per_A", "torque_raw_eV", "torque_rms_eV", "torque_symmetrized_eV"]
    )
    if isolated:
        net, torque = _net_force_and_torque(atoms, batch.forces[ref_rows])
        net_raw, torque_raw = _net_force_and_torque(atoms, f_raw)
        _, torque_sym = _net_force_and_torque(atoms, f_sym)
        torque_fields = {
            "net_force_raw_eV_per_A": float(np.linalg.norm(net_raw)),
            "net_force_rms_eV_per_A": float(np.sqrt(grid.weights @ np.sum(net**2, axis=1))),
            "torque_raw_eV": float(np.linalg.norm(torque_raw)),
            "torque_rms_eV": float(np.sqrt(grid.weights @ np.sum(torque**2, axis=1))),
            "torque_symmetrized_eV": float(np.linalg.norm(torque_sym)),
        }

    spectrum = energy_spectrum(batch.energies[spectrum_rows], spectrum_rule, lmax)

    convergence = []
    for q, rows in zip(convergence_grids, convergence_rows):
        e_q, f_q, _ = average(q, rows)
        torque_q = float(np.linalg.norm(_net_force_and_torque(atoms, f_q)[1])) if isolated else None
        convergence.append(
            GridPoint(q.name, abs(e_q - e_sym) * MEV, float(np.mean(np.abs(f_q - f_sym)) * MEV), torque_q)
        )

    return StructureAudit(
        index=index,
        name=label,
        formula=atoms.get_chemical_formula(),
        n_atoms=len(atoms),
        periodic=bool(atoms.pbc.all()),
        energy_raw_eV=e_raw,
        energy_symmetrized_eV=e_sym,
        energy_deviation_meV=(e_raw - e_sym) * MEV,
        energy_std_meV=_weighted_std(grid.weights, energies, e_sym) * MEV,
        energies_eV=energies.tolist(),
        force_deviation_mae_meV_per_A=float(np.mean(np.abs(force_dev)) * MEV),
        force_deviation_rms_meV_per_A=float(np.sqrt(np.mean(force_dev**2)) * MEV),
        force_deviation_max_meV_per_A=float(per_atom.max() * MEV),
        force_deviation_per_atom_meV_per_A=(per_atom * MEV).tolist(),
        force_std_meV_per_A=_weighted_std(grid.weights, batch.forces[ref_rows], f_sym) * MEV,
        stress_deviation_rms_meV_per_A3=stress_dev_rms,
        stress_std_meV_per_A3=stress_std,
        spectrum=spectrum,
        convergence=convergence,
        model_error=_model_error(atoms, e_raw, f_raw, label),
        **torque_fields,
    )


def _predict(model: Model, atoms: Atoms, rotations: np.ndarray, label: str) -> BatchPrediction:
    """``model.predict_rotated``; a model that refuses the structure (e.g. a broken molecule) raises
    :class:`AuditError` naming it."""
    try:
        return model.predict_rotated(atoms, rotations)
    except StructureError:
        raise
    except (ValueError, RuntimeError) as error:
        raise AuditError(f"{label}: model {getattr(model, 'name', '')!r} failed: {error}") from error


def estimated_seconds(model: Model, structures: Sequence[Atoms], per_structure: int, sample: int = 8) -> tuple[float, float]:
    """(estimated wall time of auditing ``structures`` with ``per_structure`` evaluations each, time of the
    one timed call), both in s: one call of ``sample`` rotated copies of the largest structure (where the cost
    per atom is least dominated by fixed overheads), scaled linearly to every structure's atoms and evaluations."""
    import time

    largest = max(structures, key=len)
    rotations = so3.haar_rotations(min(sample, per_structure), np.random.default_rng(0))
    begin = time.perf_counter()
    _predict(model, largest, rotations, structure_label(largest))
    seconds = time.perf_counter() - begin
    per_atom_evaluation = seconds / (len(rotations) * len(largest))
    return per_atom_evaluation * per_structure * sum(len(atoms) for atoms in structures), seconds


def _check_finite(batch: BatchPrediction, label: str) -> None:
    bad = ~np.isfinite(batch.energies) | ~np.isfinite(batch.forces).all(axis=(1, 2))
    if batch.stress is not None:
        bad |= ~np.isfinite(batch.stress).all(axis=(1, 2))
    if bad.any():
        raise AuditError(f"{label}: the model returned NaN or infinite values for {int(bad.sum())} of {len(bad)} rotated copies")


# ---------------------------------------------------------------------------------------------------
# Many structures


def audit(
    model: Model,
    structures: Sequence[Atoms],
    grid=DEFAULT_GRID,
    lmax: int = 2,
    convergence_grids: Sequence | None = None,
    progress: bool = False,
    on_structure: Callable[[StructureAudit], None] | None = None,
    model_spec: str | None = None,
    skip_failures: bool = False,
    done: Sequence[StructureAudit] = (),
    on_estimate: Callable[[float, float], None] | None = None,
    isolated: bool = False,
) -> AuditReport:
    """Audit ``model`` on ``structures`` with reference quadrature ``grid`` (a name or a Quadrature).

    ``convergence_grids`` default to :func:`default_convergence_grids`; ``lmax`` is the largest λ of the
    spectrum (its rule is exact to 2·lmax and includes inversion when ``grid`` does). ``progress`` shows
    a tqdm bar; ``on_structure`` is called with each structure's result as it is done; ``model_spec`` is
    recorded as given. Checks every structure before evaluating any, so bad input fails fast, unless
    ``skip_failures``: then structures that fail the checks or that the model refuses are left out and
    listed in ``skipped`` with the reason (for real data sets with a few unusable frames). ``done`` are
    results of an interrupted audit of the same structures and settings: their structures are not evaluated again.
    ``on_estimate`` is called before the first structure with :func:`estimated_seconds` of the structures to go.
    ``isolated`` audits periodic structures as isolated (:func:`as_isolated`; a molecule in a large box, so that
    net force and torque are defined), refusing any whose cell is not large enough.
    """
    import symprobe

    if lmax < 0:
        raise ValueError(f"audit: lmax must be ≥ 0, got {lmax}")
    structures = list(structures)
    if not structures:
        raise ValueError("audit: no structures given")
    if isolated:
        structures = isolated_structures(model, structures)
    skipped: list[dict[str, Any]] = []
    todo = []
    for k, atoms in enumerate(structures):
        try:
            check_structure(atoms, label=structure_label(atoms, k), species=model.species)
        except StructureError as error:
            if not skip_failures:
                raise
            skipped.append({"index": k, "name": structure_label(atoms, k), "reason": str(error)})
            continue
        todo.append((k, atoms))
    grid = so3.get(grid)
    convergence_grids = [so3.get(g) for g in (default_convergence_grids() if convergence_grids is None else convergence_grids)]
    rule = spectrum_grid(lmax, grid.improper, grid)

    from tqdm.auto import tqdm

    results = list(done)
    finished = {r.index for r in results}
    todo = [(k, atoms) for k, atoms in todo if k not in finished]
    if on_estimate is not None and todo:
        try:
            on_estimate(*estimated_seconds(model, [atoms for _, atoms in todo], evaluations([grid, rule, *convergence_grids])))
        except AuditError:  # the model refuses the largest structure: the loop below names it (or skips it)
            pass
    for k, atoms in tqdm(todo, desc="audit", unit="structure", disable=not progress):
        try:
            result = audit_structure(model, atoms, grid, lmax, convergence_grids, rule, index=k)
        except (StructureError, AuditError) as error:
            if not skip_failures:
                raise
            skipped.append({"index": k, "name": structure_label(atoms, k), "reason": str(error)})
            continue
        results.append(result)
        if on_structure is not None:
            on_structure(result)

    if not results:
        raise AuditError(f"audit: none of the {len(structures)} structures could be audited; first: {skipped[0]['reason']}")

    report = AuditReport(
        model={"name": getattr(model, "name", type(model).__name__), "dtype": model_dtype(model), "spec": model_spec},
        grid=GridInfo.of(grid),
        spectrum_grid=GridInfo.of(rule),
        lmax=lmax,
        convergence_grids=[GridInfo.of(q) for q in convergence_grids],
        structures=sorted(results, key=lambda r: r.index),
        skipped=sorted(skipped, key=lambda s: s["index"]),
        symprobe_version=symprobe.__version__,
    )
    report.summary = summarize(report.structures)
    report.convergence = convergence_table(report.structures, report.convergence_grids, report.grid)
    return report


def summarize(results: Sequence[StructureAudit]) -> dict[str, Any]:
    """Summary over structures: the rotational errors, spread, torque, spectrum and the model's own error."""
    n_atoms = sum(r.n_atoms for r in results)
    dev_e = np.array([r.energy_deviation_meV for r in results])
    # force statistics pooled over all atoms and components: weight each structure by its atom count
    atoms_w = np.array([r.n_atoms for r in results], dtype=float)
    force_mae = float(np.sum(atoms_w * [r.force_deviation_mae_meV_per_A for r in results]) / n_atoms)
    force_rmse = float(np.sqrt(np.sum(atoms_w * np.square([r.force_deviation_rms_meV_per_A for r in results])) / n_atoms))
    isolated = [r for r in results if r.torque_rms_eV is not None]
    stressed = [r for r in results if r.stress_deviation_rms_meV_per_A3 is not None]
    rms = lambda values: float(np.sqrt(np.mean(np.square(values))))  # noqa: E731
    spectra = [r.spectrum for r in results]
    mean_of = lambda rows: None if rows[0] is None else np.mean(rows, axis=0).tolist()  # noqa: E731
    summary: dict[str, Any] = {
        "n_structures": len(results),
        "n_atoms": n_atoms,
        "rotational_energy_mae_meV": float(np.mean(np.abs(dev_e))),
        "rotational_energy_mae_meV_per_atom": float(np.sum(np.abs(dev_e)) / n_atoms),
        "rotational_energy_max_meV": float(np.max(np.abs(dev_e))),
        "rotational_force_mae_meV_per_A": force_mae,
        "rotational_force_rmse_meV_per_A": force_rmse,
        "rotational_force_max_meV_per_A": float(max(r.force_deviation_max_meV_per_A for r in results)),
        "energy_std_mean_meV": float(np.mean([r.energy_std_meV for r in results])),
        "force_std_rms_meV_per_A": rms([r.force_std_meV_per_A for r in results]),
        "rotational_stress_rms_meV_per_A3": rms([r.stress_deviation_rms_meV_per_A3 for r in stressed]) if stressed else None,
        "net_force_rms_eV_per_A": rms([r.net_force_rms_eV_per_A for r in isolated]) if isolated else None,
        "torque_rms_eV": rms([r.torque_rms_eV for r in isolated]) if isolated else None,
        "spectrum_mean_power_eV2": mean_of([s.power_eV2 for s in spectra]),
        "spectrum_mean_power_even_eV2": mean_of([s.power_even_eV2 for s in spectra]),
        "spectrum_mean_power_odd_eV2": mean_of([s.power_odd_eV2 for s in spectra]),
        "spectrum_mean_breaking_power_eV2": float(np.mean([s.breaking_power() for s in spectra])),
    }
    summary["model_error"] = model_error_summary(results)
    own = summary["model_error"]
    summary["force_error_ratio"] = (
        force_mae / own["force_mae_meV_per_A"]
        if own is not None and own["force_mae_meV_per_A"] not in (None, 0.0)
        else None
    )
    return summary


def model_error_summary(results: Sequence[StructureAudit]) -> dict[str, Any] | None:
    """The model's own error over the labelled structures, or None when no structure has labels.

    Energies are also given after removing the mean offset per atom (``energy_offset_meV_per_atom``):
    models fitted to another reference (e.g. q-TIP4P/F against DFT) sit on a different absolute scale,
    and only the offset-removed errors compare with the rotational error.
    """
    labelled = [r for r in results if r.model_error is not None]
    if not labelled:
        return None
    with_energy = [r for r in labelled if r.model_error.energy_error_meV is not None]
    with_forces = [r for r in labelled if r.model_error.force_mae_meV_per_A is not None]
    out: dict[str, Any] = {"n_structures": len(labelled)}
    if with_energy:
        err = np.array([r.model_error.energy_error_meV for r in with_energy])
        n = np.array([r.n_atoms for r in with_energy], dtype=float)
        offset = float(err.sum() / n.sum())
        shifted = err - offset * n
        out.update(
            energy_mae_meV=float(np.mean(np.abs(err))),
            energy_rmse_meV=float(np.sqrt(np.mean(err**2))),
            energy_mae_meV_per_atom=float(np.sum(np.abs(err)) / n.sum()),
            energy_offset_meV_per_atom=offset,
            energy_mae_offset_removed_meV=float(np.mean(np.abs(shifted))),
            energy_rmse_offset_removed_meV=float(np.sqrt(np.mean(shifted**2))),
        )
    else:
        out.update(dict.fromkeys(
            ["energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom", "energy_offset_meV_per_atom",
             "energy_mae_offset_removed_meV", "energy_rmse_offset_removed_meV"]
        ))
    if with_forces:
        n = np.array([r.n_atoms for r in with_forces], dtype=float)
        mae = np.array([r.model_error.force_mae_meV_per_A for r in with_forces])
        rmse = np.array([r.model_error.force_rmse_meV_per_A for r in with_forces])
        out.update(
            force_mae_meV_per_A=float(np.sum(n * mae) / n.sum()),
            force_rmse_meV_per_A=float(np.sqrt(np.sum(n * rmse**2) / n.sum())),
        )
    else:
        out.update(force_mae_meV_per_A=None, force_rmse_meV_per_A=None)
    return out


def convergence_table(
    results: Sequence[StructureAudit], grids: Sequence[GridInfo], reference: GridInfo
) -> list[dict[str, Any]]:
    """Per convergence grid: evaluations, mean |ΔĒ| (meV/structure), pooled force MAE (meV/Å) against the
    reference grid's average, and the RMS net torque of the averaged forces over isolated structures."""
    n_atoms = np.array([r.n_atoms for r in results], dtype=float)
    table = []
    for c, info in enumerate(grids):
        points = [r.convergence[c] for r in results]
        torques = [p.torque_eV for p in points if p.torque_eV is not None]
        table.append(
            {
                "grid": info.name,
                "evaluations": info.evaluations,
                "degree": info.degree,
                "improper": info.improper,
                "paper_grid": info.name.startswith("paper-"),
                "reference": reference.name,
                "energy_mae_meV": float(np.mean([p.energy_error_meV for p in points])),
                "force_mae_meV_per_A": float(np.sum(n_atoms * [p.force_mae_meV_per_A for p in points]) / n_atoms.sum()),
                "torque_rms_eV": float(np.sqrt(np.mean(np.square(torques)))) if torques else None,
            }
        )
    return table


def exceeds(report: AuditReport | dict, ratio: float) -> bool:
    """Whether the rotational force error exceeds ``ratio`` × the model's own force error (CI gate).

    Raises :class:`AuditError` when the structures carry no reference forces (the gate needs them).
    """
    summary = report.summary if isinstance(report, AuditReport) else report["summary"]
    own = summary["model_error"]
    if own is None or own["force_mae_meV_per_A"] is None:
        raise AuditError("--fail-above needs reference forces on the structures, and none carry them")
    return summary["rotational_force_mae_meV_per_A"] > ratio * own["force_mae_meV_per_A"]


def write_report(report: AuditReport | dict, path: str | Path) -> Path:
    """Write the report as JSON atomically (temporary file, then rename)."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    path = write_json(path, data)
    return path


def write_results(report: AuditReport | dict, out: str | Path) -> list[Path]:
    """Write audit.json and the figures into ``out`` as one set (:func:`~symprobe.files.replacing_set`): a
    failure while writing them (a full disk) leaves the previous set whole. Returns the paths, audit.json first."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    out = Path(out)
    with replacing_set(out, RESULT_FILES) as staging, writing_to(out):
        write_report(data, staging / "audit.json")
        figures = audit_figures(data, staging)
    return [out / "audit.json", *(out / figure.name for figure in figures)]


def summary_text(report: AuditReport | dict) -> str:
    """A few readable lines: rotational errors, spread, torque and the model's own error with the ratio."""
    data = report.to_dict() if isinstance(report, AuditReport) else report
    s, grid = data["summary"], data["grid"]
    fmt = lambda v, unit: "n/a" if v is None else f"{v:.4g} {unit}"  # noqa: E731
    lines = [
        f"model {data['model']['name']} ({data['model']['dtype']}), {s['n_structures']} structures, "
        f"reference grid {grid['name']} ({grid['evaluations']} evaluations, degree {grid['degree']})",
        f"rotational error (raw vs averaged): energy MAE {fmt(s['rotational_energy_mae_meV'], 'meV')} per structure, "
        f"force MAE {fmt(s['rotational_force_mae_meV_per_A'], 'meV/Å')}",
        f"spread over the grid: energy std {fmt(s['energy_std_mean_meV'], 'meV')}, "
        f"force std {fmt(s['force_std_rms_meV_per_A'], 'meV/Å')}",
    ]
    if s["torque_rms_eV"] is not None:
        lines.append(f"isolated structures: RMS net torque {fmt(s['torque_rms_eV'], 'eV')}, "
                     f"RMS net force {fmt(s['net_force_rms_eV_per_A'], 'eV/Å')}")
    own = s["model_error"]
    if own is not None:
        lines.append(
            f"model's own error ({own['n_structures']} labelled): energy MAE {fmt(own['energy_mae_meV'], 'meV')} "
            f"({fmt(own['energy_mae_offset_removed_meV'], 'meV')} after removing a mean offset of "
            f"{fmt(own['energy_offset_meV_per_atom'], 'meV/atom')}), force MAE {fmt(own['force_mae_meV_per_A'], 'meV/Å')}"
        )
        if s["force_error_ratio"] is not None:
            lines.append(f"rotational / own force error: {s['force_error_ratio']:.3g}")
    return "\n".join(lines)
