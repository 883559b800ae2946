"""The audit's results: dataclasses of plain floats and lists (:class:`StructureAudit` per structure,
:class:`AuditReport` for a run), so that :meth:`AuditReport.to_dict` is valid JSON with the units in the key
names (``_eV``, ``_meV``, ``_meV_per_A``, ``_meV_per_A3``, ``_eV2``); and :class:`AuditError`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "symprobe-audit/1"
MEV = 1000.0  # meV per eV


class AuditError(RuntimeError):
    """The audit cannot proceed: the message names the structure and the problem."""


@dataclass
class GridInfo:
    """A quadrature as recorded in the report: name, number of evaluations, exactness degree, inversion."""

    name: str
    evaluations: int
    degree: int
    improper: bool

    @classmethod
    def of(cls, quadrature) -> "GridInfo":
        """The name, size, proven degree and improperness of ``quadrature``."""
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
class Channels:
    """One structure's breaking by channel on the reference grid (:mod:`symprobe.audit.channels`)."""

    rotation_energy_deviation_meV: float  # E(x) − Ē₊
    rotation_energy_std_meV: float  # weighted std of E(R x) over the proper rotations
    rotation_force_deviation_mae_meV_per_A: float  # mean |F(x) − F̄₊| over atoms and components
    rotation_force_deviation_max_meV_per_A: float  # largest per-atom |F_i(x) − F̄₊,i|
    inversion_energy_difference_meV: float | None  # Ē₊ − Ē₋; None when the grid has no improper rotations
    inversion_force_difference_mae_meV_per_A: float | None  # mean |F̄₊ − F̄₋|
    no_inversion_signal: str | None  # why the structure cannot show inversion breaking; None when chiral
    floor_energy_meV_per_atom: float
    floor_force_meV_per_A: float


@dataclass
class StructureAudit:
    """Audit of one structure on the reference grid (see :mod:`symprobe.audit` for definitions)."""

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
    channels: Channels | None = None  # None in results written before channels were measured

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StructureAudit:
        """A result back from its JSON form (``asdict``), for resumed audits."""
        error = data["model_error"]
        return cls(**{**data, "spectrum": Spectrum(**data["spectrum"]),
                      "convergence": [GridPoint(**point) for point in data["convergence"]],
                      "model_error": None if error is None else ModelError(**error),
                      "channels": None if data.get("channels") is None else Channels(**data["channels"])})


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
