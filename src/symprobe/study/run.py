"""``symprobe study``: the paper's gas, liquid and ice experiments for one model, cached stage by stage.

:func:`run_study` measures the model's costs (:mod:`.plan`), plans run lengths (quick: a wall-time budget;
full: the paper's protocols, with the estimated time printed first), runs the stages of :mod:`.stages`,
tests the paper's findings (:mod:`.findings`), and writes ``results.json`` (docs/results-schema.md) and
``report.html`` (:mod:`.report`). The paper's numbers are in :data:`symprobe.study.paper.PAPER`, cited.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from symprobe import so3
from symprobe.analysis import statistics
from symprobe.files import write_json
from symprobe.models.base import Model
from symprobe.study import stages
from symprobe.study.calibration import run_gate
from symprobe.study.findings import findings
from symprobe.study.paper import PAPER
from symprobe.study.plan import (
    FARMED_STAGES,
    Plan,
    costs_key,
    estimate_on_workers,
    make_plan,
    measure_costs,
    parse_mts,
)
from symprobe.study.report import write_report
from symprobe.study.stages import Context, StageCache
from symprobe.study.tasks import StudyFarm
from symprobe.study.variants import VARIANTS

SCHEMA = "symprobe-study/1"
STAGES = ("costs", *stages.STAGES)
KNOWN_ANSWER_AMPLITUDES = {1: 0.02, 2: 0.02}  # eV per molecule, see known_answer_model


def known_answer_model() -> Model:
    """q-TIP4P/F plus an anisotropic term of degrees ℓ = 1, 2 (0.02 eV each): a model whose symmetry
    breaking the 2i grid removes exactly (spec ``symprobe.study:known_answer_model``)."""
    from symprobe.testing import anisotropic_qtip4pf

    return anisotropic_qtip4pf(KNOWN_ANSWER_AMPLITUDES, seed=0)


def _model_info(model: Model, spec: str | None) -> dict[str, Any]:
    from symprobe.audit import model_dtype

    return {"spec": spec or model.name, "name": model.name, "dtype": model_dtype(model),
            "cutoff_A": getattr(model, "cutoff", None)}


def plan_study(model: Model | str, out: str | Path, mts: str = "2i/10", device: str = "cpu", progress: bool = True,
               workers: int | None = None) -> dict[str, Any]:
    """The paper's full protocols (:func:`make_plan`, ``quick=False``) with the estimated wall time of each stage
    from call costs measured on ``device`` (cached in ``out/stages/costs.json``); written to ``out/plan.json``. With
    ``workers``, also each stage's wall time on that many workers (:func:`estimate_on_workers`, ``on_workers_s``)."""
    from symprobe.md import load_model

    model = load_model(model, device)
    mts_grid, n_inner = parse_mts(mts)
    key = costs_key(model, mts_grid, n_inner)
    costs = StageCache(Path(out), key, progress).run("costs", lambda: measure_costs(model, Plan.grid, mts_grid, n_inner), key=key)
    plan = make_plan(False, costs, mts_grid=mts_grid, n_inner=n_inner)
    document = {"model": model.name, "device": str(getattr(model, "device", "cpu")), "mts": mts, "costs_s_per_call": costs,
                "plan": {k: v for k, v in asdict(plan).items() if k != "estimate_s"}, "estimate_s": plan.estimate_s,
                "total_h": sum(plan.estimate_s.values()) / 3600.0,
                "note": "estimated from batched MD steps and static calls timed on this device at small sizes, "
                        "scaled linearly to the protocols' sizes (study.plan.estimate_s)"}
    if workers is not None:
        on_workers = estimate_on_workers(plan, costs, workers)
        document.update({"workers": workers, "on_workers_s": on_workers, "on_workers_total_h": sum(on_workers.values()) / 3600.0,
                         "on_workers_note": f"extrapolated: the pieces of {', '.join(FARMED_STAGES)} (a liquid replica, a "
                         f"variant's gas molecules, an ice cell) as tasks on {workers} workers each as fast as this device, longest "
                         "first; the other stages in turn as here"})
    write_json(Path(out) / "plan.json", document)
    return document


def run_study(
    model: Model | str,
    out: str | Path,
    quick: bool = False,
    progress: bool = True,
    control: Model | str | None = None,
    note: str | None = None,
    budget_s: float = 330.0,
    plan: Plan | None = None,
    stop_after: str | None = None,
    mts: str = "2i/10",
    device: str = "cpu",
    farm: StudyFarm | None = None,
    long_liquid_ps: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study of ``model`` into ``out``; return the results dict (also results.json).

    ``mts`` is the multiple-time-stepping variant as GRID/N_INNER: the correction averaged over GRID every
    N_INNER steps of 0.5 fs (the paper's is 2i/10). The averaged variant always uses the 2i grid.

    ``control`` is an invariant model run as a control (the bundled invariant twin); ``note`` is a
    sentence for the report (e.g. why a fallback model is used); ``plan`` overrides the planned lengths;
    ``stop_after`` ends after that stage (for tests of resumption; no results.json then). ``device`` is where
    model specs are loaded (model objects run where they are). With ``farm`` each liquid replica of each variant is a
    task (:mod:`symprobe.study.tasks`) on its cluster, or in turn here, the model loaded from the farm's spec.
    ``long_liquid_ps`` adds long liquid runs of raw, random and MTS (:mod:`symprobe.study.liquid_long`, one
    64-molecule box each, that many ps) to the experiments and the report.
    """
    from symprobe.md import load_model

    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"stop_after: unknown stage {stop_after!r} (one of {', '.join(STAGES)})")
    spec = model if isinstance(model, str) else None
    if farm is not None and farm.spec != spec:
        raise ValueError(f"run_study: the farm's model {farm.spec!r} is not the study's {spec!r} (workers load it from its spec)")
    model = load_model(model, device)
    control_model = None if control is None else load_model(control, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = so3.paper_grid("2i")
    mts_grid, n_inner = parse_mts(mts)
    started = time.perf_counter()

    key = costs_key(model, mts_grid, n_inner)
    costs_cache = StageCache(out, key, progress)

    def measured_costs() -> dict[str, float]:
        return costs_cache.run("costs", lambda: measure_costs(model, Plan.grid, mts_grid, n_inner), key=key)

    # the costs plan the run lengths; with a given plan they are needed only by the finished study's MTS cost
    costs = measured_costs() if plan is None or stop_after == "costs" else None
    plan = plan or make_plan(quick, costs, budget_s, mts_grid, n_inner)
    if stop_after == "costs":
        return {}
    cache = StageCache(out, plan.key(), progress)
    if progress:
        total = sum(plan.estimate_s.values())
        print(f"[study] {'quick' if plan.quick else 'full'} mode, model {model.name}: estimated time "
              f"{total / 60:.1f} min ({', '.join(f'{k} {v / 60:.1f}' for k, v in plan.estimate_s.items())} min)", flush=True)
    context = Context(model, plan, out / "md" / plan.key(), progress, control_model,
                      None if control_model is None else _model_info(control_model, control if isinstance(control, str) else None),
                      farm=farm)
    results: dict[str, Any] = {}
    for name, stage in stages.STAGES.items():
        results[name] = cache.run(name, lambda: stage(context))
        if stop_after == name:
            return results
    if long_liquid_ps is not None:
        from symprobe.study.liquid_long import long_liquid_plan, run_long_liquid

        results["liquid_long"] = run_long_liquid(model, out / "liquid_long", long_liquid_plan(long_liquid_ps, mts, seed=plan.seed),
                                                 farm, progress)

    costs = costs or measured_costs()
    document = {
        "schema": SCHEMA,
        "mode": "quick" if plan.quick else "full",
        "model": _model_info(model, spec),
        "note": note,
        "grid": {"name": grid.name, "label": plan.grid, "evaluations": len(grid), "degree": grid.degree},
        "variants": list(VARIANTS),
        "confidence": statistics.DEFAULT_CONFIDENCE,
        "plan": asdict(plan),
        "costs_s_per_call": costs,
        "experiments": results,
        "calibration_gate": run_gate(results),
        "mts_cost": _mts_cost(results, costs, plan),
        "findings": findings(results),
        "paper": PAPER,
        "timings_s": {**costs_cache.timings, **cache.timings, "total_this_run": time.perf_counter() - started},
    }
    write_json(out / "results.json", document)
    write_report(document, out / "report.html")
    return document


def _mts_cost(results: dict[str, Any], costs: dict[str, float], plan: Plan) -> dict[str, Any]:
    """Wall time of MTS liquid MD per step relative to raw (measured on the batched engine by
    :func:`measure_costs`) and the estimate from the model's call costs."""
    from symprobe.symmetrize import correction_rule

    measured = costs.get("liquid_mts_step_s")
    if measured is not None:
        measured = measured / max(costs["liquid_raw_step_s"], 1e-9)
    estimate = 1.0 + costs["liquid_corr_s"] / plan.n_inner / costs["liquid_s"]
    copies = len(correction_rule(so3.get(plan.mts_grid))[0])
    return {"measured_x_raw": measured, "estimated_x_raw": estimate, "grid": plan.mts_grid, "n_inner": plan.n_inner,
            "grid_evaluations": copies, "paper_x_raw": PAPER["mts_cost_x_raw"]}

