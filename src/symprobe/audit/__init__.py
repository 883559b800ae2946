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

Modules: :mod:`.results` (the result dataclasses, :class:`AuditError`), :mod:`.grids` (reference, convergence and
spectrum grids), :mod:`.spectrum` (the λ spectrum), :mod:`.structure` (:func:`audit_structure`, one structure),
:mod:`.run` (:func:`audit`, many structures), :mod:`.isolation` (periodic structures audited as isolated),
:mod:`.precision` (:func:`in_float64`), :mod:`.summary` (summaries over structures, :func:`exceeds`) and
:mod:`.report` (``audit.json``, figures, :func:`summary_text`).
"""

from symprobe.audit.grids import (DEFAULT_GRID, OWN_DEGREES, PAPER_GRIDS, default_convergence_grids, default_lmax, evaluations,
                                  spectrum_grid)
from symprobe.audit.isolation import as_isolated, isolated_structures
from symprobe.audit.precision import in_float64, model_dtype
from symprobe.audit.report import RESULT_FILES, summary_text, write_report, write_results
from symprobe.audit.results import (MEV, SCHEMA, AuditError, AuditReport, GridInfo, GridPoint, ModelError, Spectrum,
                                    StructureAudit)
from symprobe.audit.run import audit
from symprobe.audit.spectrum import energy_spectrum
from symprobe.audit.structure import audit_structure, estimated_seconds
from symprobe.audit.summary import convergence_table, exceeds, model_error_summary, summarize

__all__ = ["DEFAULT_GRID", "MEV", "OWN_DEGREES", "PAPER_GRIDS", "RESULT_FILES", "SCHEMA", "AuditError", "AuditReport",
           "GridInfo", "GridPoint", "ModelError", "Spectrum", "StructureAudit", "as_isolated", "audit", "audit_structure",
           "convergence_table", "default_convergence_grids", "default_lmax", "energy_spectrum", "estimated_seconds", "evaluations",
           "exceeds", "in_float64", "isolated_structures", "model_dtype", "model_error_summary", "spectrum_grid",
           "summarize", "summary_text", "write_report", "write_results"]
