"""``symprobe study``: the paper's gas, liquid and ice experiments for one model, cached stage by stage.

:func:`run_study` measures the model's cost, plans run lengths (quick: a fixed wall-time budget of a few
minutes on 2 cores; full: the paper's protocols, with the estimated time printed first), runs the stages
of :data:`STAGES`, and writes ``results.json`` (docs/results-schema.md) and ``report.html``. Every stage
writes ``stages/<name>.json`` atomically when it finishes and is not recomputed on a rerun; MD runs live
under ``md/<plan id>/`` and resume from their checkpoints after an interruption.

The paper's numbers (Langer, Pozdnyakov & Ceriotti, Mach. Learn.: Sci. Technol. 5, 04LT01 (2024),
arXiv 2406.17747) are in :data:`PAPER`, marked as cited.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from symprobe import so3, statistics
from symprobe.experiments import REPEAT, VARIANTS
from symprobe.files import write_json
from symprobe.models.base import Model

SCHEMA = "symprobe-study/1"
CITATION = ("Langer, Pozdnyakov & Ceriotti, Probing the effects of broken symmetries in machine learning, "
            "Mach. Learn.: Sci. Technol. 5, 04LT01 (2024), arXiv 2406.17747")
PAPER: dict[str, Any] = {
    "citation": CITATION,
    "note": "cited from the paper (values marked ≈ were read off its figures); not computed by symprobe",
    "model": "PET, revPBE0-D3 liquid water, float32",
    "rotational_energy_error_meV": {  # grid: [test cells meV/cell, bulk MD meV/cell, isolated molecule meV]
        "0": [5.09, 7.94, 2.82], "i": [2.57, 4.88, 1.06], "2": [0.56, 1.09, 0.084], "2i": [0.28, 0.68, 0.045],
        "3": [0.157, 0.41, 0.015]},
    "rotational_force_error_meV_per_A": {"0": [2.04, 1.21, 11.8], "i": [1.0, None, None], "2": [0.19, None, None],
                                         "2i": [0.10, None, None], "3": [0.05, None, None]},
    "rms_torque_eV": {"0": 5e-3, "i": 2.5e-3, "2": 4e-4, "2i": 2.5e-4, "3": 1e-4, "3i": 2.5e-5},
    "gas_L_swing_eV_fs": 3.0, "gas_L_magnitude_eV_fs": 3.2, "gas_L_duration_ps": 25.0,
    "gas_orientation_bias_kT": {"raw": 0.3, "averaged": 0.0},
    "dV_orders_below_V": [2, 4],
    "liquid_dipole_bias_kT": "≪ 0.1 for both",
    "liquid_msd_10ps_A2": 16.0, "liquid_diffusion_1e-5_cm2_s": 2.7, "liquid_c_uu_2ps": 0.5,
    "drift_meV_per_H2O_per_500ps": {"raw": 1.0, "mts": 6.0, "random": 10.0},
    "mts_cost_x_raw": 4.6,
    "ice_energy_difference_eV_per_atom": 1.4e-5, "ice_relaxation_difference_eV_per_atom": 2e-6,
    "ice_relative_change_meV_per_H2O": 0.007, "ice_relative_spread_meV_per_H2O": 0.32,
}
MOST_GAS_NVT_MOLECULES = 256  # the most molecules a quick plan puts in the gas-phase NVT runs (raw, random, MTS)
STAGES = ("costs", "gas_nve", "gas_torque", "gas_orientation_grid", "gas_spectra", "gas_nvt", "liquid", "rotational_errors", "ice", "control")
KNOWN_ANSWER_AMPLITUDES = {1: 0.02, 2: 0.02}  # eV per molecule, see known_answer_model
RESOLUTION_KT = 0.15  # an orientation verdict needs the bias error below half the paper's 0.3 kT


def known_answer_model() -> Model:
    """q-TIP4P/F plus an anisotropic term of degrees ℓ = 1, 2 (0.02 eV each): a model whose symmetry
    breaking the 2i grid removes exactly (spec ``symprobe.study:known_answer_model``)."""
    from symprobe.testing import anisotropic_qtip4pf

    return anisotropic_qtip4pf(KNOWN_ANSWER_AMPLITUDES, seed=0)


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
    from symprobe.experiments.gas import isolated_molecules
    from symprobe.experiments.ice import ice_cells
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


class Stages:
    """Stage cache in ``out/stages``: a finished stage's JSON is returned instead of recomputing it."""

    def __init__(self, out: Path, plan_key: str, progress: bool = True):
        self.out, self.plan_key, self.progress = Path(out), plan_key, progress
        self.timings: dict[str, float] = {}
        self.computed: list[str] = []

    def path(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def run(self, name: str, compute: Callable[[], dict[str, Any]], key: str | None = None) -> dict[str, Any]:
        """The cached result of stage ``name`` (with matching ``key``), else ``compute()`` saved atomically."""
        key = key or self.plan_key
        path = self.path(name)
        if path.exists():
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                self.timings[name] = cached["seconds"]
                self._say(f"stage {name}: cached ({cached['seconds']:.0f} s when computed)")
                return cached["result"]
        self._say(f"stage {name}: running")
        begin = time.perf_counter()
        result = compute()
        seconds = time.perf_counter() - begin
        write_json(path, {"stage": name, "key": key, "seconds": seconds, "result": result})
        self.timings[name] = seconds
        self.computed.append(name)
        self._say(f"stage {name}: done in {seconds:.0f} s")
        return result

    def _say(self, message: str) -> None:
        if self.progress:
            print(f"[study] {message}", flush=True)


def _model_info(model: Model, spec: str | None) -> dict[str, Any]:
    from symprobe.audit import model_dtype

    return {"spec": spec or model.name, "name": model.name, "dtype": model_dtype(model),
            "cutoff_A": getattr(model, "cutoff", None)}


def plan_study(model: Model | str, out: str | Path, mts: str = "2i/10", device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """The paper's full protocols (:func:`make_plan`, ``quick=False``) with the estimated wall time of each stage
    from call costs measured on ``device`` (cached in ``out/stages/costs.json``); written to ``out/plan.json``."""
    from symprobe.md import load_model

    model = load_model(model, device)
    mts_grid, n_inner = parse_mts(mts)
    key = costs_key(model, mts_grid, n_inner)
    costs = Stages(Path(out), key, progress).run("costs", lambda: measure_costs(model, so3.paper_grid("2i"), so3.get(mts_grid), n_inner), key=key)
    plan = make_plan(False, costs, mts_grid=mts_grid, n_inner=n_inner)
    document = {"model": model.name, "device": str(getattr(model, "device", "cpu")), "mts": mts, "costs_s_per_call": costs,
                "plan": {k: v for k, v in asdict(plan).items() if k != "estimate_s"}, "estimate_s": plan.estimate_s,
                "total_h": sum(plan.estimate_s.values()) / 3600.0,
                "note": "estimated from per-call costs of the model on this device (sums of calls; the batched engine "
                        "evaluates them together, which the estimate does not credit)"}
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
) -> dict[str, Any]:
    """Run (or resume) the study of ``model`` into ``out``; return the results dict (also results.json).

    ``mts`` is the multiple-time-stepping variant as GRID/N_INNER: the correction averaged over GRID every
    N_INNER steps of 0.5 fs (the paper's is 2i/10). The averaged variant always uses the 2i grid.

    ``control`` is an invariant model run as a control (the bundled invariant twin); ``note`` is a
    sentence for the report (e.g. why a fallback model is used); ``plan`` overrides the planned lengths;
    ``stop_after`` ends after that stage (for tests of resumption; no results.json then). ``device`` is where
    model specs are loaded (model objects run where they are).
    """
    from symprobe.experiments import gas, ice, liquid
    from symprobe.md import load_model
    from symprobe.symmetrize import GridAverage, grid_errors

    spec = model if isinstance(model, str) else None
    model = load_model(model, device)
    control_spec = control if isinstance(control, str) else None
    control_model = None if control is None else load_model(control, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = so3.paper_grid("2i")
    mts_grid, n_inner = parse_mts(mts)
    started = time.perf_counter()

    key = costs_key(model, mts_grid, n_inner)
    costs_stage = Stages(out, key, progress)
    costs = costs_stage.run("costs", lambda: measure_costs(model, grid, so3.get(mts_grid), n_inner), key=key)
    plan = plan or make_plan(quick, costs, budget_s, mts_grid, n_inner)
    stages = Stages(out, plan.key(), progress)
    stages.timings.update(costs_stage.timings)
    if progress:
        total = sum(plan.estimate_s.values())
        print(f"[study] {'quick' if plan.quick else 'full'} mode, model {model.name}: estimated time "
              f"{total / 60:.1f} min ({', '.join(f'{k} {v / 60:.1f}' for k, v in plan.estimate_s.items())} min)", flush=True)
    md_root = out / "md" / plan.key()
    averaged = GridAverage(model, grid)
    results: dict[str, Any] = {}

    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"stop_after: unknown stage {stop_after!r} (one of {', '.join(STAGES)})")

    def done(name: str) -> bool:
        return stop_after == name

    results["gas_nve"] = stages.run("gas_nve", lambda: gas.angular_momentum_runs(
        model, md_root / "gas_nve", VARIANTS, n_molecules=plan.gas_nve_molecules, steps=plan.gas_nve_steps,
        grid=plan.grid, n_inner=plan.n_inner, mts_grid=plan.mts_grid, seed=plan.seed, trajectory_stride=4,
        progress=progress))
    if done("gas_nve"):
        return results

    def torque() -> dict[str, Any]:
        from symprobe.audit import in_float64
        from symprobe.experiments import read_trajectory

        grids = [so3.paper_grid(label) for label in so3.PAPER_LABELS]
        names = {q.name for q in grids}
        for degree in range(1, 7):
            q = so3.smallest(degree, improper=True)
            if q.name not in names:
                grids.append(q)
                names.add(q.name)
        frames = read_trajectory(md_root / "gas_nve" / "raw")
        return gas.torque_convergence(in_float64(model), frames, grids, plan.torque_samples, plan.seed)

    results["gas_torque"] = stages.run("gas_torque", torque)
    if done("gas_torque"):
        return results

    def spectra() -> dict[str, Any]:
        from symprobe.experiments import read_trajectory

        frames = read_trajectory(md_root / "gas_nve" / "raw")
        return gas.potential_spectra(model, averaged, frames, timestep_fs=2.0)

    def orientation_grid() -> dict[str, Any]:
        from symprobe.audit import in_float64
        from symprobe.experiments import read_trajectory

        frames = read_trajectory(md_root / "gas_nve" / "raw")
        grids = [so3.paper_grid(label) for label in so3.PAPER_LABELS]
        return gas.orientation_energy_convergence(in_float64(model), frames, grids, plan.orientation_snapshots)

    results["gas_orientation_grid"] = stages.run("gas_orientation_grid", orientation_grid)
    if done("gas_orientation_grid"):
        return results
    results["gas_spectra"] = stages.run("gas_spectra", spectra)
    if done("gas_spectra"):
        return results
    results["gas_nvt"] = stages.run("gas_nvt", lambda: gas.orientation_runs(
        model, md_root / "gas_nvt", VARIANTS,
        n_molecules=plan.gas_nvt_molecules, n_averaged_molecules=plan.gas_nvt_averaged_molecules, steps=plan.gas_nvt_steps, grid=plan.grid, seed=plan.seed, trajectory_stride=10,
        bandwidth=plan.gas_bandwidth, n_inner=plan.n_inner, mts_grid=plan.mts_grid, progress=progress))
    if done("gas_nvt"):
        return results

    def liquid_stage() -> dict[str, Any]:
        n = plan.liquid_replicas
        boxes = [_liquid_start(md_root, plan, progress, k) for k in range(2 * n)]
        starts = {v: [box for box, _ in (boxes[n:] if v == REPEAT else boxes[:n])] for v in plan.liquid_variants}
        data = liquid.liquid_runs(model, starts, md_root / "liquid", steps=plan.liquid_steps,
                                  equilibration_steps=plan.liquid_equilibration, grid=plan.grid, n_inner=plan.n_inner,
                                  mts_grid=plan.mts_grid, seed=plan.seed, trajectory_stride=plan.liquid_stride,
                                  n_blocks=8, progress=progress)
        data["start"] = [description for _, description in boxes[:n]]
        data["repeat_start"] = [description for _, description in boxes[n:]]
        data.update(liquid.compare_variants(data))
        return data

    results["liquid"] = stages.run("liquid", liquid_stage)
    if done("liquid"):
        return results

    def rotational_errors() -> dict[str, Any]:
        return _rotational_errors(model, md_root, plan, grid_errors)

    results["rotational_errors"] = stages.run("rotational_errors", rotational_errors)
    if done("rotational_errors"):
        return results

    def ice_stage() -> dict[str, Any]:
        cells, description = ice.ice_cells(plan.ice_frames)
        if not cells:
            return {"skipped": description}
        from symprobe.audit import in_float64

        grids = [so3.paper_grid(label) for label in ICE_GRIDS]
        data = ice.ice_study(model, averaged, cells, plan.ice_fmax, plan.ice_max_steps, grids, in_float64(model))
        data["source"] = description
        return data

    results["ice"] = stages.run("ice", ice_stage)
    if done("ice"):
        return results

    def control_stage() -> dict[str, Any]:
        if control_model is None:
            return {"skipped": "no invariant control model (the twin is used when the model is the bundled water-pet)"}
        nve = gas.angular_momentum_runs(control_model, md_root / "control_nve", ("raw",), n_molecules=plan.gas_nve_molecules,
                                        steps=min(plan.gas_nve_steps, 2000), grid=plan.grid, n_inner=plan.n_inner,
                                        seed=plan.seed, trajectory_stride=4, progress=progress)
        from symprobe.audit import in_float64
        from symprobe.experiments import read_trajectory

        frames = read_trajectory(md_root / "control_nve" / "raw")
        torques = gas.torque_convergence(in_float64(control_model), frames, [so3.paper_grid("0"), so3.paper_grid("2i")],
                                         min(plan.torque_samples, 8), plan.seed)
        return {"model": _model_info(control_model, control_spec), "gas_nve": nve, "torque": torques}

    results["control"] = stages.run("control", control_stage)

    document = {
        "schema": SCHEMA,
        "mode": "quick" if plan.quick else "full",
        "model": _model_info(model, spec),
        "note": note,
        "grid": {"name": grid.name, "label": plan.grid, "evaluations": len(grid), "degree": grid.degree},
        "variants": list(VARIANTS),
        "confidence": statistics.DEFAULT_CONFIDENCE,
        "plan": {k: v for k, v in asdict(plan).items()},
        "costs_s_per_call": costs,
        "experiments": results,
        "mts_cost": _mts_cost(results, costs, plan),
        "findings": findings(results),
        "paper": PAPER,
        "timings_s": {**stages.timings, "total_this_run": time.perf_counter() - started},
    }
    write_json(out / "results.json", document)
    from symprobe.report import write_report

    write_report(document, out / "report.html")
    return document


def _liquid_start(md_root: Path, plan: Plan, progress: bool, index: int = 0):
    """The ``index``-th independent liquid starting box: the shared 512 box (full; from index 1 on, after its own
    q-TIP4P/F equilibration), the index-th shared revPBE0-D3 liquid snapshot of 64 intact H2O (quick, when
    present), else a generated box pre-equilibrated with q-TIP4P/F (seed + index)."""
    from symprobe.experiments.liquid import starting_box
    from symprobe.observables import water_molecules
    from symprobe.structures import read_structures, shared_data_dir

    data = shared_data_dir()
    test_set = None if data is None else data / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz"
    if plan.quick and test_set is not None and test_set.exists():
        found = 0
        for k, atoms in enumerate(read_structures(test_set)):
            molecules = water_molecules(atoms)
            density = len(atoms) / 3 * 18.015 / 0.6022 / atoms.get_volume()
            ordered = len(molecules.triples) == len(atoms) // 3 and (atoms.numbers.reshape(-1, 3) == [8, 1, 1]).all()
            if ordered and 0.95 < density < 1.05:
                if found == index:
                    start = atoms.copy()
                    start.calc = None
                    start.info = {"name": f"revPBE0-D3 liquid snapshot {k}"}
                    return start, f"an equilibrated revPBE0-D3 liquid snapshot (shared data test set, frame {k}, 64 intact H2O)"
                found += 1
            if k > 60:
                break
    return starting_box(md_root / ("liquid_start" if index == 0 else f"liquid_start_{index}"), plan.liquid_n_per_side,
                        plan.liquid_shared_512, plan.liquid_pre_steps, plan.seed + index, progress, fresh=index > 0)


def _rotational_errors(model: Model, md_root: Path, plan: Plan, grid_errors) -> dict[str, Any]:
    """Mean absolute deviation of the raw and coarse-grid predictions from the reference grid's average
    (the paper's measure) on test cells, bulk MD frames and isolated molecules, per grid label."""
    from symprobe.audit import in_float64
    from symprobe.experiments import read_trajectory
    from symprobe.observables import water_molecules
    from symprobe.structures import read_structures, shared_data_dir

    model = in_float64(model)
    labels = [label for label in ("0", "i", "2", "2i", "3") if label != plan.error_reference]
    candidates = [so3.paper_grid(label) for label in labels]
    reference = so3.paper_grid(plan.error_reference)
    sets: dict[str, list] = {}
    data = shared_data_dir()
    test_set = None if data is None else data / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz"
    if test_set is not None and test_set.exists():
        cells = []
        for atoms in read_structures(test_set):
            if len(water_molecules(atoms).triples) == len(atoms) // 3 and (atoms.numbers.reshape(-1, 3) == [8, 1, 1]).all():
                atoms.calc = None
                cells.append(atoms)
            if len(cells) >= plan.error_cells:
                break
        sets["test cells"] = cells
    frames = read_trajectory(md_root / "liquid" / f"{plan.liquid_variants[0]}/0")
    sets["bulk MD"] = frames[-1 :: -max(1, len(frames) // plan.error_cells)][: plan.error_cells]
    gas_frames = read_trajectory(md_root / "gas_nve" / "raw")
    molecules = []
    for k in range(min(4 * plan.error_cells, 8)):
        frame = gas_frames[(k * 7) % len(gas_frames)]
        from ase import Atoms

        molecules.append(Atoms(frame.numbers[:3], positions=frame.get_positions()[3 * (k % 2): 3 * (k % 2) + 3], pbc=False))
    sets["isolated molecule"] = molecules
    table: dict[str, Any] = {"reference": reference.name, "sets": {}}
    for name, structures in sets.items():
        if not structures:
            continue
        errors = grid_errors(model, structures, candidates, reference)
        table["sets"][name] = {
            "n_structures": len(structures),
            "rows": [{"grid": label, "evaluations": e.evaluations, "energy_meV": 1000 * e.energy,
                      "force_meV_per_A": 1000 * e.forces} for label, e in zip(labels, errors)],
        }
    return table


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


def findings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's qualitative findings, each tested on our results: holds True/False, with evidence."""
    out: list[dict[str, Any]] = []

    def add(key: str, claim: str, holds: bool | None, evidence: str) -> None:
        out.append({"id": key, "claim": claim, "holds": holds, "evidence": evidence})

    nve = results["gas_nve"]["variants"]
    raw, avg = nve["raw"]["L_change_final"], nve["averaged"]["L_change_final"]
    n = results["gas_nve"]["n_molecules"]
    test = statistics.difference_significance(raw["value"], raw["error"] or 0.0, avg["value"], avg["error"] or 0.0, dof=n - 1)
    add("gas_angular_momentum_drifts_raw", "An isolated molecule's angular momentum is not conserved with the raw model",
        bool(test["significant"] and raw["value"] > avg["value"]),
        f"|L(t)−L(0)| after {nve['raw']['duration_ps']:.3g} ps: raw {raw['value']:.3g} ± {raw['error'] or 0:.2g} eV·fs, "
        f"averaged {avg['value']:.3g} ± {avg['error'] or 0:.2g} eV·fs ({test['verdict']})")
    add("gas_angular_momentum_fixed_by_averaging", "Grid averaging restores angular-momentum conservation",
        bool(avg["value"] < 0.1 * raw["value"]),
        f"averaged/raw change ratio {avg['value'] / max(raw['value'], 1e-300):.2g}")
    mts = nve["mts"]["L_change_final"]
    add("gas_mts_reproduces_averaged", "MTS reproduces the averaged model's conservation of L (gas)",
        bool(mts["value"] < 0.1 * raw["value"]),
        f"MTS change {mts['value']:.3g} eV·fs vs raw {raw['value']:.3g} and averaged {avg['value']:.3g}")
    nvt = results["gas_nvt"]["variants"]
    h_raw, h_avg = nvt["raw"]["harmonic"], nvt["averaged"]["harmonic"]

    def resolved(h: dict[str, Any], flat_expected: bool) -> bool | None:
        """The verdict, or None when the run cannot resolve a bias of half the paper's 0.3 kT."""
        if h["significant"] != flat_expected:
            return True
        return None if h["bias_kT"]["error"] is None or h["bias_kT"]["error"] > RESOLUTION_KT else False

    static = {row["grid"]: row["bias_kT"] for row in results.get("gas_orientation_grid", {}).get("rows", [])}

    def static_profile(grid: str) -> str:
        """The noise-free static-profile bias of ``grid``, as supporting evidence (it does not enter the verdict)."""
        b = static.get(grid)
        return "" if b is None else f"; static orientation-energy profile {b['value']:.2g} ± {b['error']:.1g} kT"

    add("gas_orientation_not_flat_raw", "The raw model's gas-phase orientation map is not flat", resolved(h_raw, False),
        f"low-order bias {h_raw['bias_kT']['value']:.3g} ± {h_raw['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_raw['p_value']:.2g}"
        + ("" if h_raw["significant"] or h_raw["bias_kT"]["error"] <= RESOLUTION_KT else
           f"; inconclusive: the run is too short to resolve {RESOLUTION_KT} kT") + static_profile("paper-0"))
    add("gas_orientation_flat_averaged", "The averaged model's orientation map is flat within noise", resolved(h_avg, True),
        f"low-order bias {h_avg['bias_kT']['value']:.3g} ± {h_avg['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_avg['p_value']:.2g}"
        + ("" if h_avg["significant"] or h_avg["bias_kT"]["error"] <= RESOLUTION_KT else
           f"; flat within this noise, which is too large to resolve {RESOLUTION_KT} kT") + static_profile("paper-2i"))
    if "paper-0" in static and "paper-2i" in static:
        raw_profile, averaged_profile = static["paper-0"], static["paper-2i"]
        add("gas_orientation_energy_flat_averaged",
            "The 2i grid average flattens the molecule's orientation-energy profile (static, noise-free)",
            bool(averaged_profile["value"] < 0.01 * raw_profile["value"]),
            f"low-order profile bias raw {raw_profile['value']:.3g} ± {raw_profile['error']:.1g} kT, "
            f"2i {averaged_profile['value']:.2g} ± {averaged_profile['error']:.1g} kT")
    if "mts" in nvt:
        h_mts = nvt["mts"]["harmonic"]
        add("gas_orientation_flat_mts", "MTS gives a flat orientation map, as the averaged model does", resolved(h_mts, True),
            f"low-order bias {h_mts['bias_kT']['value']:.3g} ± {h_mts['bias_kT']['error']:.2g} kT, Hotelling T² p = {h_mts['p_value']:.2g}")
    torque = {row["grid"]: row["rms_torque"]["value"] for row in results["gas_torque"]["rows"]}
    add("torque_falls_with_grid", "RMS torque falls by more than 10x from raw to the 2i grid",
        bool(torque["paper-2i"] < 0.1 * torque["paper-0"]),
        f"raw {torque['paper-0']:.3g} eV, 2i {torque['paper-2i']:.3g} eV")
    liquid_results = results["liquid"]
    verdicts = {v: row for v, row in liquid_results.get("verdicts", {}).items() if v != REPEAT}
    tests = {f"{v}:{name}": test for v, row in verdicts.items() for name, test in row.items()}
    alone = [name for name, test in tests.items() if test["significant"]]
    family = statistics.family_significance(tests) if tests else None
    calibration = liquid_results.get("calibration")
    claim = "Bulk-liquid observables of raw, averaged (MTS) and random-rotation runs agree within errors"
    if family is None:
        add("liquid_indistinguishable", claim, None, "no comparisons")
    elif calibration is not None and not calibration["passed"]:
        add("liquid_indistinguishable", claim, None, f"no verdict: the null comparison (raw against a second raw set) is "
            f"{calibration['verdict']}")
    else:
        not_equivalent = [name for name, test in tests.items() if not test.get("equivalent", False)]
        add("liquid_indistinguishable", claim, not family["significant"],
            f"{family['n_tests']} comparisons, family-wise at 95 % confidence (Bonferroni over comparisons): "
            f"significant: {', '.join(family['significant']) or 'none'}; individually significant at 95 %: {', '.join(alone) or 'none'}"
            + "".join(f" ({name}: family-wise p = {family['adjusted_p'][name]:.2g})" for name in alone)
            + ("; null comparison " + calibration["verdict"] if calibration else "; no null comparison")
            + f"; equivalence within the stated margins not shown for: {', '.join(not_equivalent) or 'none'}")
    ice = results["ice"]
    if "relative_change" in ice:
        # unconverged relaxations follow different paths: then compare the two models at identical geometries
        converged = ice.get("converged", True) or "relative_change_same_geometry" not in ice
        change = ice["relative_change" if converged else "relative_change_same_geometry"]["value"]
        spread = ice["relative_spread"]["value"]
        how = "after relaxing with each model" if converged else (
            f"at the raw-relaxed geometries (relaxations stopped at {ice['max_steps']} steps, short of "
            f"{ice['fmax_eV_per_A']} eV/Å; after the two relaxations: {ice['relative_change']['value']:.3g})")
        add("ice_relative_energies_unchanged", "Averaging changes ice relative energies far less than their spread",
            bool(change < 0.1 * spread), f"change {change:.3g} meV/H2O {how} vs spread {spread:.3g} meV/H2O")
    else:
        add("ice_relative_energies_unchanged", "Averaging changes ice relative energies far less than their spread", None,
            ice.get("skipped", "fewer than two cells"))
    return out
