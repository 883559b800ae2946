"""The study's plan: run lengths and sizes from a wall-time budget (quick) or the paper's protocols (full), and
the measured per-call and per-step costs they are planned from (seconds of wall time on the chosen device)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from symprobe import so3
from symprobe.models.base import Model
from symprobe.study.variants import REPEAT, VARIANTS

PROTOCOL = 2  # raised when a stage's protocol changes, so that no cached stage of an older one is reused
MOST_GAS_NVT_MOLECULES = 256  # the most molecules a quick plan puts in the gas-phase NVT runs (raw, random, MTS)


@dataclass
class Plan:
    """Run lengths and sizes of one study (steps of 0.5 fs; budgets in seconds of wall time)."""

    quick: bool
    grid: str = "2i"
    mts_grid: str = "2i"
    n_inner: int = 10
    seed: int = 0
    gas_nve_molecules: int = 40  # × 25 ps = 1 ns in all per variant
    gas_nve_steps: int = 50_000
    gas_nvt_molecules: int = 27  # raw, random, MTS
    gas_nvt_averaged_molecules: int = 27  # the averaged variant (36 copies per step): the first of the same molecules
    gas_nvt_steps: int = 500_000
    gas_bandwidth: float = 0.1
    torque_samples: int = 64
    orientation_snapshots: int = 16
    liquid_n_per_side: int = 4
    liquid_shared_512: bool = True
    liquid_pre_steps: int = 2000
    liquid_steps: int = 40_000  # per replica: 5 × 20 ps = 100 ps per variant (the paper ran 5 ns)
    liquid_equilibration: int = 4_000  # per replica
    liquid_stride: int = 20
    liquid_variants: tuple[str, ...] = ("raw", "mts", "random", REPEAT)
    liquid_replicas: int = 5  # independent boxes per variant: errors from their scatter (5: a conclusive null check)
    error_reference: str = "3i"
    error_cells: int = 10
    ice_frames: tuple[int, ...] = tuple(range(2, 11))
    ice_fmax: float = 0.01
    ice_max_steps: int = 500
    estimate_s: dict[str, float] = field(default_factory=dict)

    def key(self, without: tuple[str, ...] = ()) -> str:
        """A short id of the plan, less its fields named in ``without``, and of :data:`PROTOCOL` (MD directories and
        cached stages are keyed by it)."""
        ignored = ("estimate_s", *without)
        return plan_key({k: v for k, v in asdict(self).items() if k not in ignored}, PROTOCOL)


def plan_key(settings: dict[str, Any], protocol: int) -> str:
    """A short id (10 hex digits) of a plan's ``settings`` and its ``protocol`` number."""
    return hashlib.sha1(json.dumps(settings | {"protocol": protocol}, sort_keys=True).encode()).hexdigest()[:10]


def _round(n: float, lo: int, hi: int, multiple: int = 10) -> int:
    return int(multiple * round(min(max(n, lo), hi) / multiple))


def parse_mts(text: str) -> tuple[str, int]:
    """'GRID/N_INNER' (e.g. '2i/10', 'T/12') as (grid name, inner steps); a clear error otherwise."""
    grid, _, n = str(text).partition("/")
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"MTS setting {text!r}: expected GRID/N_INNER with a positive integer N_INNER, e.g. '2i/10'")
    so3.get(grid)  # names the problem if the grid is unknown
    return grid, int(n)


ICE_GRIDS = ("0", "i", "2", "2i", "3")  # paper grids of the ice relative-energy convergence (the last is the reference)
ORIENTATION_DIRECTIONS = 38 * 3  # molecule orientations per snapshot of gas.orientation_energy_convergence
ICE_EXPECTED_STEPS = 10  # L-BFGS steps a plan expects per ice relaxation (the shared cells took 3–4 at 0.05 eV/Å)
GAS_AVERAGED_MOLECULES = 8  # molecules of the timed grid-averaged gas call (costs "gas_avg_s")
NVE_SIZES = (8, 40)  # gas NVE molecules per variant at which the batched step is timed (quick, full)
NVT_SIZES = (27, MOST_GAS_NVT_MOLECULES)  # gas NVT molecules per variant (the averaged variant: 27) likewise
# a quick plan gives the fixed-size stages at most these shares of the budget, and splits the rest among the runs
FIXED_SHARES = {"ice": 0.12, "rotational_errors": 0.08}
RUN_SHARES = {"gas_nve": 0.15, "gas_nvt": 0.50, "liquid": 0.35}


def _interpolate(costs: dict[str, float], name: str, sizes: tuple[int, int], n: int) -> float:
    """Seconds per step of ``name`` at size ``n``, linear between the two timed sizes."""
    (a, b), (ta, tb) = sizes, (costs[f"{name}_{sizes[0]}"], costs[f"{name}_{sizes[1]}"])
    return max(ta + (tb - ta) * (n - a) / (b - a), min(ta, tb))


def estimate_s(plan: Plan, costs: dict[str, float]) -> dict[str, float]:
    """Estimated seconds of wall time of each stage of ``plan``: the MD stages from the batched steps timed by
    :func:`measure_costs`, the static evaluations from per-call costs (float64 counted as twice float32)."""
    per_copy = 2.0 * costs["ice_avg_s"] / len(so3.paper_grid(plan.grid))  # a float64 copy of a 192–288-atom cell
    paper_copies = sum(len(so3.paper_grid(label)) for label in so3.PAPER_LABELS)
    ice_copies = sum(len(so3.paper_grid(label)) for label in ICE_GRIDS)
    error_copies = sum(len(so3.paper_grid(label)) for label in ("0", "i", "2", "2i", "3")) + len(so3.paper_grid(plan.error_reference))
    gas_copy = 2.0 * costs["gas_avg_s"] / len(so3.paper_grid(plan.grid)) / GAS_AVERAGED_MOLECULES
    liquid_step = costs["liquid_raw_step_s"] * (len(plan.liquid_variants) - 1) + costs["liquid_mts_step_s"]
    return {
        "gas_nve": plan.gas_nve_steps * _interpolate(costs, "gas_nve_step_s", NVE_SIZES, plan.gas_nve_molecules),
        "gas_orientation_grid": plan.orientation_snapshots * paper_copies * ORIENTATION_DIRECTIONS * gas_copy,
        "gas_nvt": plan.gas_nvt_steps * _interpolate(costs, "gas_nvt_step_s", NVT_SIZES, plan.gas_nvt_molecules),
        "liquid": (plan.liquid_steps + plan.liquid_equilibration) * plan.liquid_replicas * liquid_step
        * (8 if plan.liquid_shared_512 else 1),
        "ice": len(plan.ice_frames) * ((min(plan.ice_max_steps, ICE_EXPECTED_STEPS) + 1) * (costs["ice_s"] + costs["ice_avg_s"])
                                       + ice_copies * per_copy),
        "rotational_errors": 2 * plan.error_cells * error_copies * per_copy,
    }


FARMED_STAGES = ("gas_nve", "gas_nvt", "liquid", "ice")  # stages whose pieces run as tasks with --cluster (study.tasks)


def liquid_task_s(plan: Plan, costs: dict[str, float]) -> list[float]:
    """Estimated seconds of each liquid task (one replica of one variant, equilibration included) run alone."""
    scale = 8 if plan.liquid_shared_512 else 1
    return [(plan.liquid_steps + plan.liquid_equilibration) * scale
            * (costs["liquid_mts_step_s"] if variant == "mts" else costs["liquid_raw_step_s"])
            for variant in plan.liquid_variants for _ in range(plan.liquid_replicas)]


def gas_task_s(plan: Plan, stage_s: float, stage: str) -> list[float]:
    """Estimated seconds of each task of a gas stage (one variant's molecules) from the stage's batched estimate
    ``stage_s``, split in proportion to the model calls per step: one copy per molecule (raw, random and the repeat),
    the grid's copies (averaged), one plus the MTS grid's copies every ``n_inner`` steps (mts); the averaged variant
    of the NVT stage on its own, smaller set of molecules."""
    molecules = plan.gas_nve_molecules if stage == "gas_nve" else plan.gas_nvt_molecules
    averaged = molecules if stage == "gas_nve" else min(molecules, plan.gas_nvt_averaged_molecules)
    weights = {"raw": molecules, "random": molecules, REPEAT: molecules,
               "averaged": averaged * len(so3.paper_grid(plan.grid)),
               "mts": molecules * (1 + len(so3.get(plan.mts_grid)) / plan.n_inner)}
    total = sum(weights.values())
    return [stage_s * weight / total for weight in weights.values()]


def makespan_s(task_s: list[float], workers: int) -> float:
    """Wall time (s) of tasks of ``task_s`` seconds on ``workers`` workers, each task given to the first free worker,
    longest first (Graham's LPT list schedule: within 4/3 of the optimum)."""
    import heapq

    free = [0.0] * max(1, workers)
    for seconds in sorted(task_s, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def estimate_on_workers(plan: Plan, costs: dict[str, float], workers: int) -> dict[str, float]:
    """Estimated seconds of wall time of each stage on ``workers`` one-task workers like the device the costs were
    measured on: the farmed stages (:data:`FARMED_STAGES`) as the LPT schedule of their tasks (the ice cells equal), the
    others in turn on the client as on one machine (their estimate unchanged). Tasks run alone, not batched: extrapolated."""
    stages = estimate_s(plan, costs)
    tasks = {"liquid": liquid_task_s(plan, costs), "ice": [stages["ice"] / len(plan.ice_frames)] * len(plan.ice_frames),
             **{stage: gas_task_s(plan, stages[stage], stage) for stage in ("gas_nve", "gas_nvt")}}
    return {**stages, **{stage: makespan_s(task_s, workers) for stage, task_s in tasks.items()}}


def make_plan(quick: bool, costs: dict[str, float], budget_s: float = 330.0, mts_grid: str = "2i", n_inner: int = 10) -> Plan:
    """Quick: sizes and lengths that fit ``budget_s`` seconds at the measured ``costs`` (:func:`quick_plan`); full:
    the paper's protocols. MTS averages over ``mts_grid`` every ``n_inner`` steps (the paper: 2i, 10)."""
    plan = quick_plan(costs, budget_s, mts_grid, n_inner) if quick else Plan(quick=False, mts_grid=mts_grid, n_inner=n_inner)
    plan.estimate_s = estimate_s(plan, costs)
    return plan


def quick_plan(costs: dict[str, float], budget_s: float, mts_grid: str, n_inner: int) -> Plan:
    """A plan for ``budget_s`` seconds. First the fixed-size stages: as many of the paper's 9 ice cells (at least
    2) and rotational-error cells (1–10) as fit within :data:`FIXED_SHARES`. The rest of the budget goes to the
    runs by :data:`RUN_SHARES`: the gas-phase orientation bias is the headline (its error falls as
    1/√(molecules × time), and raw molecules are cheap beside the averaged variant's 36 copies, so longer budgets
    add molecules, up to :data:`MOST_GAS_NVT_MOLECULES`), then the liquid (5 independent boxes per variant from
    30 minutes on, the fewest for a conclusive null comparison; 2 below) and the gas NVE. Caps on run lengths grow
    in proportion to the budget above 330 s."""
    scale = max(1.0, budget_s / 330.0)
    plan = Plan(quick=True, mts_grid=mts_grid, n_inner=n_inner, gas_nve_molecules=NVE_SIZES[0],
                gas_nvt_molecules=int(min(MOST_GAS_NVT_MOLECULES, round(NVT_SIZES[0] * scale))), gas_bandwidth=0.3,
                torque_samples=24, orientation_snapshots=4, liquid_shared_512=False, liquid_pre_steps=300, liquid_stride=5,
                error_reference="3", error_cells=1, ice_frames=(2, 3), ice_fmax=0.05, ice_max_steps=int(100 * scale),
                liquid_replicas=5 if budget_s >= 1800 else 2)
    for frames in range(9, 2, -1):
        if estimate_s(replace(plan, ice_frames=tuple(range(2, 2 + frames))), costs)["ice"] <= FIXED_SHARES["ice"] * budget_s:
            plan.ice_frames = tuple(range(2, 2 + frames))
            break
    plan.error_cells = max([1] + [n for n in range(1, 11) if estimate_s(replace(plan, error_cells=n), costs)["rotational_errors"]
                                  <= FIXED_SHARES["rotational_errors"] * budget_s])
    first = estimate_s(plan, costs)
    rest = max(0.0, budget_s - first["ice"] - first["rotational_errors"] - first["gas_orientation_grid"])
    per_step = {name: first[name] / getattr(plan, f"{name}_steps") for name in ("gas_nve", "gas_nvt")}
    plan.gas_nve_steps = _round(RUN_SHARES["gas_nve"] * rest / per_step["gas_nve"], 200, 6000 * scale)
    plan.gas_nvt_steps = _round(RUN_SHARES["gas_nvt"] * rest / per_step["gas_nvt"], 400, 10000 * scale)
    per_liquid_step = first["liquid"] / (plan.liquid_steps + plan.liquid_equilibration)
    total = RUN_SHARES["liquid"] * rest / per_liquid_step  # steps per replica, equilibration included
    plan.liquid_steps = _round(total / 1.2, 60, 4000 * scale)
    plan.liquid_equilibration = _round(plan.liquid_steps * 0.2, 10, 1000 * scale)
    plan.liquid_stride = max(1, min(10, plan.liquid_steps // 40))
    return plan


def timed(call: Callable[[], Any], repeats: int) -> float:
    """Seconds of wall time per ``call()``, averaged over ``repeats`` after one warm-up call (a first call pays for
    allocations and neighbour lists that a run pays once)."""
    call()
    begin = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - begin) / repeats


def batched_stepper(model: Model, starts: dict[str, list[Any]], ensemble: dict[str, Any], grid: str, mts_grid: str,
                    n_inner: int) -> Callable[[], None]:
    """One 0.5 fs step of the batched engine running ``starts`` (groups of variants, as in
    :func:`~symprobe.study.variants.run_variants`), as a call; ``n_inner`` consecutive calls hold one MTS correction."""
    from symprobe.md.batched import BatchedDynamics
    from symprobe.study.variants import variant_replicas

    replicas, _ = variant_replicas(model, starts, grid=grid, n_inner=n_inner, ensemble=ensemble, seed=0, mts_grid=mts_grid,
                                   initial_temperature_K=300.0)
    return BatchedDynamics(replicas, 0.5).step


def costs_key(model: Model, mts_grid: str, n_inner: int) -> str:
    """The cache key of :func:`measure_costs`: what it times (a changed key re-measures)."""
    return f"costs:{model.name}:{mts_grid}/{n_inner}:nve{NVE_SIZES}:nvt{NVT_SIZES}:batched-steps"


def measure_costs(model: Model, grid: str, mts_grid: str, n_inner: int = 10,
                  measure: Callable[[Callable[[], Any], int], float] = timed) -> dict[str, float]:
    """Seconds of wall time, measured on the model's device: per 0.5 fs step of the study's batched runs at the
    sizes a plan interpolates between (gas NVE and NVT with every variant and the null set; one liquid box raw
    and with MTS), and per call of the static evaluations (the averaged gas molecules, an ice cell raw and
    averaged over ``grid``, the liquid MTS correction over ``mts_grid``). ``measure(call, repeats)`` gives the
    seconds per call (default :func:`timed`; benchmarks/study_plan.py extrapolates them from FLOPs instead)."""
    from symprobe.structures import water_box
    from symprobe.study import gas
    from symprobe.study.ice import ice_cells
    from symprobe.symmetrize import AveragingCorrection

    variants = (*VARIANTS, REPEAT)
    step = lambda starts, ensemble: measure(batched_stepper(model, starts, ensemble, grid, mts_grid, n_inner), n_inner)  # noqa: E731
    rotations = so3.get(grid).rotations
    molecules = gas.isolated_molecules(GAS_AVERAGED_MOLECULES)
    liquid = water_box(4)
    cells, _ = ice_cells([2])
    ice = cells[0] if cells else water_box(4)
    correction = AveragingCorrection(model, so3.get(mts_grid))
    return {
        **{f"gas_nve_step_s_{n}": step(gas.nve_starts(variants, n, 0), gas.NVE) for n in NVE_SIZES},
        **{f"gas_nvt_step_s_{n}": step(gas.nvt_starts(variants, n, 0, NVT_SIZES[0]), gas.NVT) for n in NVT_SIZES},
        "liquid_raw_step_s": step({"raw": [liquid]}, {"kind": "nve"}),
        "liquid_mts_step_s": step({"mts": [liquid]}, {"kind": "nve"}),
        "gas_avg_s": measure(lambda: model.predict_many(molecules, [rotations] * len(molecules)), 1),
        "liquid_s": measure(lambda: model.predict(liquid), 1),
        "liquid_corr_s": measure(lambda: correction.predict(liquid), 1),
        "ice_s": measure(lambda: model.predict(ice), 1),
        "ice_avg_s": measure(lambda: model.predict_rotated(ice, rotations), 1),
    }
