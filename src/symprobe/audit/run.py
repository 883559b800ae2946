"""The audit of many structures (:func:`audit`): checks every structure first, audits each (optionally
skipping failures, resuming from finished results) and gathers the :class:`~symprobe.audit.results.AuditReport`."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ase import Atoms

from symprobe import so3
from symprobe.audit.channels import channel_summary
from symprobe.audit.grids import DEFAULT_GRID, default_convergence_grids, default_lmax, evaluations, spectrum_grid
from symprobe.audit.isolation import isolated_structures
from symprobe.audit.precision import model_dtype
from symprobe.audit.results import AuditError, AuditReport, GridInfo, StructureAudit
from symprobe.audit.structure import audit_structure, estimated_seconds
from symprobe.audit.summary import convergence_table, summarize
from symprobe.audit.verdict import verdict
from symprobe.models.base import Model
from symprobe.structures import StructureError, check_structure, structure_label

Farm = Callable[[list[tuple[int, Atoms]], so3.Quadrature, int, list[so3.Quadrature], so3.Quadrature, bool],
                tuple[list[StructureAudit], list[dict[str, Any]]]]
"""Audits ``(index, structure)`` pairs on (grid, lmax, convergence grids, spectrum rule, skip failures): (results, skipped)."""


def audit(
    model: Model,
    structures: Sequence[Atoms],
    grid=DEFAULT_GRID,
    lmax: int | None = None,
    convergence_grids: Sequence | None = None,
    progress: bool = False,
    on_structure: Callable[[StructureAudit], None] | None = None,
    model_spec: str | None = None,
    skip_failures: bool = False,
    done: Sequence[StructureAudit] = (),
    on_estimate: Callable[[float, float], None] | None = None,
    isolated: bool = False,
    farm: Farm | None = None,
) -> AuditReport:
    """Audit ``model`` on ``structures`` with reference quadrature ``grid`` (a name or a Quadrature).

    ``convergence_grids`` default to :func:`default_convergence_grids`; ``lmax`` is the largest λ of the
    spectrum (its rule is exact to 2·lmax and includes inversion when ``grid`` does; None: :func:`default_lmax`,
    what ``grid`` itself gives exactly). ``progress`` shows
    a progress bar (:func:`~symprobe.progress.progress_bar`); ``on_structure`` is called with each structure's result as it is done; ``model_spec`` is
    recorded as given. Checks every structure before evaluating any, so bad input fails fast, unless
    ``skip_failures``: then structures that fail the checks or that the model refuses are left out and
    listed in ``skipped`` with the reason (for real data sets with a few unusable frames). ``done`` are
    results of an interrupted audit of the same structures and settings: their structures are not evaluated again.
    ``on_estimate`` is called before the first structure with :func:`estimated_seconds` of the structures to go.
    ``isolated`` audits periodic structures as isolated (:func:`as_isolated`; a molecule in a large box, so that
    net force and torque are defined), refusing any whose cell is not large enough. ``farm`` audits the structures
    to go elsewhere (:func:`symprobe.audit.tasks.structure_farm`: one task per structure, on a cluster) instead of
    in turn here; ``progress`` and ``on_structure`` are then the farm's business.
    """
    import symprobe

    if lmax is not None and lmax < 0:
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
    lmax = default_lmax(grid) if lmax is None else lmax
    convergence_grids = [so3.get(g) for g in (default_convergence_grids() if convergence_grids is None else convergence_grids)]
    rule = spectrum_grid(lmax, grid.improper, grid)

    from symprobe.progress import progress_bar

    results = list(done)
    finished = {r.index for r in results}
    todo = [(k, atoms) for k, atoms in todo if k not in finished]
    if on_estimate is not None and todo:
        try:
            on_estimate(*estimated_seconds(model, [atoms for _, atoms in todo], evaluations([grid, rule, *convergence_grids])))
        except AuditError:  # the model refuses the largest structure: the loop below names it (or skips it)
            pass
    if farm is not None:
        farmed, left_out = farm(todo, grid, lmax, convergence_grids, rule, skip_failures)
        results += farmed
        skipped += left_out
    else:
        for k, atoms in progress_bar(todo, desc="audit", unit="structure", enabled=progress):
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
    report.summary["channels"] = channel_summary(report.structures, report.grid, report.summary["model_error"])
    report.summary["verdict"] = verdict(report.summary, lmax)
    report.convergence = convergence_table(report.structures, report.convergence_grids, report.grid)
    return report
