"""The study's plan: run lengths and sizes from a wall-time budget (quick) or the paper's protocols (full), and
the measured per-call and per-step costs they are planned from (seconds of wall time on the chosen device)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from symprobe import so3
from symprobe.models.base import Model
from symprobe.study.variants import REPEAT

MOST_GAS_NVT_MOLECULES = 256  # the most molecules a quick plan puts in the gas-phase NVT runs (raw, random, MTS)


@dataclass
class Plan:
    """Run lengths and sizes of one study (steps of 0.5 fs; budgets in seconds of wall time)."""

    quick: bool
    grid: str = "2i"
    mts_grid: str = "2i"
    n_inner: int = 10
    seed: int = 0
    gas_nve_molecules: int = 8
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

    def key(self) -> str:
        """A short id of the plan (MD directories are keyed by it)."""
        data = {k: v for k, v in asdict(self).items() if k != "estimate_s"}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


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


def _grid_convergence_s(plan: Plan, costs: dict[str, float]) -> tuple[float, float]:
    """Estimated seconds of the static grid-convergence evaluations (float64: about twice the float32 cost):
    the gas molecule's orientation-energy profiles and the ice relative energies, over the paper's grids."""
    per_grid_copy = 2.0 / len(so3.paper_grid(plan.grid))
    copies = sum(len(so3.paper_grid(label)) for label in so3.PAPER_LABELS) * ORIENTATION_DIRECTIONS
    orientation = plan.orientation_snapshots * copies * costs["gas_avg_s"] * per_grid_copy / Plan.gas_nve_molecules
    ice = len(plan.ice_frames) * sum(len(so3.paper_grid(label)) for label in ICE_GRIDS) * costs["ice_avg_s"] * per_grid_copy
    return orientation, ice


def make_plan(quick: bool, costs: dict[str, float], budget_s: float = 330.0, mts_grid: str = "2i", n_inner: int = 10) -> Plan:
    """Quick: lengths that fit ``budget_s`` seconds at the measured per-call ``costs`` (the caps on run
    lengths grow in proportion above the default 330 s); full: the paper's. MTS averages over ``mts_grid``
    every ``n_inner`` steps (the paper: 2i, 10)."""
    overhead = costs.get("md_overhead_s", 0.004)
    gas, gas_avg = costs["gas_s"] + overhead, costs["gas_avg_s"] + overhead
    # NVT orientation runs: raw, random, averaged and MTS on their larger set of molecules, stepped together
    nvt, nvt_avg = costs["gas_nvt_s"] + overhead, costs["gas_nvt_avg_s"]  # measured on Plan.gas_nvt_molecules

    def raw_nvt(molecules: int) -> float:
        """Seconds of one raw call on ``molecules``, interpolated linearly between the two measured sizes."""
        many = costs.get("gas_nvt_many_s", nvt * MOST_GAS_NVT_MOLECULES / Plan.gas_nvt_molecules)
        slope = (many - costs["gas_nvt_s"]) / (MOST_GAS_NVT_MOLECULES - Plan.gas_nvt_molecules)
        return costs["gas_nvt_s"] + slope * (molecules - Plan.gas_nvt_molecules) + overhead

    def per_nvt_step(plan: Plan) -> float:
        """Seconds per NVT step: raw, random and MTS inner on gas_nvt_molecules, MTS outer likewise (the averaged
        call scaled as the raw one), averaged on gas_nvt_averaged_molecules."""
        scale_avg = lambda n: nvt_avg * raw_nvt(n) / raw_nvt(Plan.gas_nvt_molecules)  # noqa: E731
        return 3 * raw_nvt(plan.gas_nvt_molecules) + scale_avg(plan.gas_nvt_averaged_molecules) + overhead \
            + scale_avg(plan.gas_nvt_molecules) / n_inner

    liq, liq_corr = costs["liquid_s"] + overhead, costs["liquid_corr_s"]
    ice, ice_avg = costs["ice_s"], costs["ice_avg_s"]
    if not quick:
        plan = Plan(quick=False, mts_grid=mts_grid, n_inner=n_inner)
        plan.estimate_s = {
            "gas_nve": plan.gas_nve_steps * (3 * gas + gas_avg + costs["gas_avg_s"] / plan.n_inner),
            "gas_nvt": plan.gas_nvt_steps * per_nvt_step(plan),
            "liquid": (plan.liquid_steps + plan.liquid_equilibration) * plan.liquid_replicas
            * (len(plan.liquid_variants) * liq + liq_corr / plan.n_inner) * 8,
            "ice": len(plan.ice_frames) * 150 * (ice + ice_avg) * 4,
            "rotational_errors": plan.error_cells * 3 * (ice_avg / 36 * 300),
        }
        orientation_s, ice_grids_s = _grid_convergence_s(plan, costs)
        plan.estimate_s["gas_orientation_grid"] = orientation_s
        plan.estimate_s["ice"] += ice_grids_s
        return plan
    share = {"gas_nve": 0.16, "gas_nvt": 0.34, "liquid": 0.26, "ice": 0.14, "rotational_errors": 0.10}
    plan = Plan(quick=True, mts_grid=mts_grid, n_inner=n_inner, gas_nve_molecules=8, gas_nvt_molecules=27,
                gas_bandwidth=0.3, torque_samples=24, orientation_snapshots=4, liquid_shared_512=False, liquid_pre_steps=300, liquid_stride=5, error_reference="3", error_cells=1,
                ice_frames=(2, 3), ice_fmax=0.05, liquid_replicas=5 if budget_s >= 1800 else 2)
    scale = max(1.0, budget_s / 330.0)
    orientation_s, ice_grids_s = _grid_convergence_s(plan, costs)  # fixed costs, taken from the gas NVE and ice shares
    per_nve_step = 3 * gas + gas_avg + costs["gas_avg_s"] / plan.n_inner
    plan.gas_nve_steps = _round((share["gas_nve"] * budget_s - orientation_s) / per_nve_step, 200, 6000 * scale)
    # the raw gas-phase orientation bias is a headline result: its error falls as 1/√(molecules × time), and the
    # cheap variants' molecules cost little beside the averaged variant's 36 copies, so longer budgets add molecules
    plan.gas_nvt_molecules = int(min(MOST_GAS_NVT_MOLECULES, round(Plan.gas_nvt_molecules * scale)))
    plan.gas_nvt_steps = _round(share["gas_nvt"] * budget_s / per_nvt_step(plan), 400, 10000 * scale)
    per_liquid_step = plan.liquid_replicas * (len(plan.liquid_variants) * liq + liq_corr / plan.n_inner)
    total_liquid = _round(share["liquid"] * budget_s / per_liquid_step, 60, 4000 * scale)
    plan.liquid_steps = total_liquid
    plan.liquid_equilibration = _round(total_liquid * 0.2, 10, 1000 * scale)
    plan.liquid_stride = max(1, min(10, total_liquid // 40))
    ice_calls = (share["ice"] * budget_s - ice_grids_s) / (len(plan.ice_frames) * (ice + ice_avg))
    plan.ice_max_steps = int(min(max(ice_calls - 1, 2), 100 * scale))
    plan.estimate_s = {  # what the chosen lengths cost: more than the share where a minimum length applies
        "gas_nve": plan.gas_nve_steps * per_nve_step, "gas_orientation_grid": orientation_s,
        "gas_nvt": plan.gas_nvt_steps * per_nvt_step(plan), "liquid": total_liquid * per_liquid_step,
        "ice": len(plan.ice_frames) * (plan.ice_max_steps + 1) * (ice + ice_avg) + ice_grids_s,
        "rotational_errors": share["rotational_errors"] * budget_s}
    return plan


def _step_costs(model: Model, box, mts_grid: so3.Quadrature, n_inner: int) -> dict[str, float]:
    """Seconds per 0.5 fs step of batched MD of ``box``, raw and with MTS (one block of ``n_inner`` steps each)."""
    from symprobe.md.batched import BatchedDynamics, Replica
    from symprobe.md.run import thermalized
    from symprobe.symmetrize import AveragingCorrection

    box = thermalized(box, 300.0, 0)
    seconds = {}
    for name, slow in (("liquid_raw_step_s", None), ("liquid_mts_step_s", AveragingCorrection(model, mts_grid))):
        dyn = BatchedDynamics([Replica(box, model, slow, n_inner)], 0.5)
        begin = time.perf_counter()
        for _ in range(n_inner):
            dyn.step()
        seconds[name] = (time.perf_counter() - begin) / n_inner
    return seconds


def costs_key(model: Model, mts_grid: str, n_inner: int) -> str:
    """The cache key of :func:`measure_costs`: what it times (a changed key re-measures)."""
    return f"costs:{model.name}:{mts_grid}/{n_inner}:nvt{Plan.gas_nvt_molecules}-{MOST_GAS_NVT_MOLECULES}:batched"


def measure_costs(model: Model, grid: so3.Quadrature, mts_grid: so3.Quadrature, n_inner: int = 10) -> dict[str, float]:
    """Seconds per call of ``model``, of its average over ``grid`` and of the MTS correction over ``mts_grid``
    on the systems the study simulates."""
    from symprobe.study.gas import isolated_molecules
    from symprobe.study.ice import ice_cells
    from symprobe.structures import water_box
    from symprobe.symmetrize import AveragingCorrection

    def timed(call: Callable[[], Any], repeats: int) -> float:
        call()  # warm-up: a first call pays for allocations that a run pays once
        begin = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - begin) / repeats

    gas = isolated_molecules(Plan.gas_nve_molecules)
    gas_nvt = isolated_molecules(Plan.gas_nvt_molecules)
    gas_nvt_many = isolated_molecules(MOST_GAS_NVT_MOLECULES)
    liquid = water_box(4)
    cells, _ = ice_cells([2])
    ice = cells[0] if cells else water_box(4)
    correction = AveragingCorrection(model, mts_grid)
    return {  # the gas costs are one batched call over all molecules
        "gas_s": timed(lambda: model.predict_many(gas), 3),
        "gas_avg_s": timed(lambda: model.predict_many(gas, [grid.rotations] * len(gas)), 1),
        "gas_nvt_s": timed(lambda: model.predict_many(gas_nvt), 3),
        "gas_nvt_avg_s": timed(lambda: model.predict_many(gas_nvt, [grid.rotations] * len(gas_nvt)), 1),
        "gas_nvt_many_s": timed(lambda: model.predict_many(gas_nvt_many), 3),
        "liquid_s": timed(lambda: model.predict(liquid), 1),
        "liquid_corr_s": timed(lambda: correction.predict(liquid), 1),
        **_step_costs(model, liquid, mts_grid, n_inner),
        "ice_s": timed(lambda: model.predict(ice), 1),
        "ice_avg_s": timed(lambda: model.predict_rotated(ice, grid.rotations), 1),
        "md_overhead_s": 0.004,
    }
