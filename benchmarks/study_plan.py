"""Issue 13: how long the paper's full protocols take, per stage, on this machine and (extrapolated) on one H200.

The CPU estimate is ``symprobe study --plan``: the study's call costs measured here, summed over the full
protocols' run lengths. Where no GPU is lent, the GPU column is an extrapolation, labelled as such: each
call's floating-point operations (counted by ``torch.utils.flop_counter`` on the same calls, forward and
backward) at ``--gpu-tflops`` (default 15 TFLOP/s, a quarter of the H200's 67 TFLOP/s float32 peak without
tensor cores: the bundled model's matrices are 64 wide), plus ``--gpu-pass-ms`` per pass for kernel
launches. When benchmarks/gpu_check.py has run on a GPU, its measured plan replaces the extrapolation.

    python benchmarks/study_plan.py --out results/study_plan.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from symprobe import so3
from symprobe.study.gas import isolated_molecules
from symprobe.study.ice import ice_cells
from symprobe.files import write_json
from symprobe.models.external import load_model
from symprobe.study import Plan, make_plan, parse_mts, plan_study
from symprobe.structures import water_box
from symprobe.symmetrize import AveragingCorrection


def flops(call) -> int:
    with FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


def call_flops(model, mts: str) -> dict[str, tuple[int, int]]:
    """(FLOPs, passes) of each call the study's cost model uses (the keys of ``costs_s_per_call``)."""
    grid = so3.paper_grid("2i")
    mts_grid, _ = parse_mts(mts)
    gas, gas_nvt = isolated_molecules(Plan.gas_nve_molecules), isolated_molecules(Plan.gas_nvt_molecules)
    liquid = water_box(4)
    cells, _ = ice_cells([2])
    ice = cells[0] if cells else water_box(4)
    correction = AveragingCorrection(model, so3.get(mts_grid))
    calls = {
        "gas_s": lambda: model.predict_many(gas), "gas_avg_s": lambda: model.predict_many(gas, [grid.rotations] * len(gas)),
        "gas_nvt_s": lambda: model.predict_many(gas_nvt),
        "gas_nvt_avg_s": lambda: model.predict_many(gas_nvt, [grid.rotations] * len(gas_nvt)),
        "liquid_s": lambda: model.predict(liquid), "liquid_corr_s": lambda: correction.predict(liquid),
        "ice_s": lambda: model.predict(ice), "ice_avg_s": lambda: model.predict_rotated(ice, grid.rotations),
    }
    out = {}
    for key, call in calls.items():
        passes = []
        forward = model._forward
        model._forward = lambda graph, *a, forward=forward: passes.append(1) or forward(graph, *a)
        total = flops(call)
        model._forward = forward
        out[key] = (total, len(passes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/study_plan.json"))
    parser.add_argument("--model", default="builtin:water-pet")
    parser.add_argument("--mts", default="2i/10")
    parser.add_argument("--gpu-tflops", type=float, default=15.0)
    parser.add_argument("--gpu-pass-ms", type=float, default=3.0)
    parser.add_argument("--gpu-plan", type=Path, default=Path("results/plan_cuda/plan.json"),
                        help="a plan measured on a GPU by gpu_check.py, used instead of the extrapolation when present")
    args = parser.parse_args()
    workdir = args.out.with_suffix("")
    cpu = plan_study(args.model, workdir, mts=args.mts, device="cpu")
    model = load_model(args.model)
    counted = call_flops(model, args.mts)
    gpu_costs = dict(cpu["costs_s_per_call"])
    for key, (total, passes) in counted.items():
        gpu_costs[key] = total / (args.gpu_tflops * 1e12) + passes * args.gpu_pass_ms * 1e-3
    gpu_costs["md_overhead_s"] = 0.001
    _, n_inner = parse_mts(args.mts)
    gpu_plan = make_plan(False, gpu_costs, mts_grid=parse_mts(args.mts)[0], n_inner=n_inner)
    measured = json.loads(args.gpu_plan.read_text()) if args.gpu_plan.exists() else None
    result = {
        "model": cpu["model"], "mts": args.mts, "load": os.getloadavg(), "torch_threads": torch.get_num_threads(),
        "cpu": {"estimate_h": {k: v / 3600 for k, v in cpu["estimate_s"].items()}, "total_h": cpu["total_h"],
                "costs_s_per_call": cpu["costs_s_per_call"], "label": "measured call costs on this machine's CPU"},
        "gpu": ({"estimate_h": {k: v / 3600 for k, v in measured["estimate_s"].items()}, "total_h": measured["total_h"],
                 "label": f"measured call costs on {measured['device']}"} if measured else
                {"estimate_h": {k: v / 3600 for k, v in gpu_plan.estimate_s.items()},
                 "total_h": sum(gpu_plan.estimate_s.values()) / 3600, "costs_s_per_call": gpu_costs,
                 "flops_and_passes_per_call": counted,
                 "label": f"EXTRAPOLATED, not measured: FLOPs at {args.gpu_tflops} TFLOP/s + {args.gpu_pass_ms} ms per pass"}),
        "goal_h_on_one_H200": 1.0,
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("cpu", "gpu")}, indent=1)[:3000])


if __name__ == "__main__":
    main()
