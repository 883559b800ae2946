"""Issue 13: how long the paper's full protocols take, per stage, on this machine and (extrapolated) on one H200.

The CPU estimate is ``symprobe study --plan``: the study's batched MD steps and static calls timed here
(``study.plan.measure_costs``), scaled to the full protocols' sizes and lengths. Where no GPU is lent, the GPU
column is an extrapolation, labelled as such: the floating-point operations of the same steps and calls
(counted by ``torch.utils.flop_counter``, forward and backward) at ``--gpu-tflops`` (default 15 TFLOP/s, a
quarter of the H200's 67 TFLOP/s float32 peak without tensor cores: the bundled model's matrices are 64 wide),
plus ``--gpu-pass-ms`` per model pass for kernel launches. When benchmarks/gpu_check.py has run on a GPU, its
measured plan replaces the extrapolation.

    python benchmarks/study_plan.py --out results/study_plan.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from symprobe.files import write_json
from symprobe.models.external import load_model
from symprobe.study import Plan, make_plan, parse_mts, plan_study
from symprobe.study.plan import measure_costs


def extrapolated_seconds(model, tflops: float, pass_ms: float, counted: dict[str, Any]) -> Callable[[Callable[[], Any], int], float]:
    """A ``measure`` for ``measure_costs``: GPU seconds per call extrapolated from its FLOPs and model passes
    (each call's count is appended to ``counted["calls"]``)."""
    def measure(call: Callable[[], Any], repeats: int) -> float:
        call()  # warm-up, as the timed measure does
        passes: list[int] = []
        forward = model._forward
        model._forward = lambda graph, *a: passes.append(1) or forward(graph, *a)
        try:
            with FlopCounterMode(display=False) as counter:
                for _ in range(repeats):
                    call()
        finally:
            model._forward = forward
        flops, n = counter.get_total_flops() / repeats, len(passes) / repeats
        counted["calls"].append({"flops": flops, "passes": n})
        return flops / (tflops * 1e12) + n * pass_ms * 1e-3
    return measure


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
    mts_grid, n_inner = parse_mts(args.mts)
    counted: dict[str, Any] = {"calls": []}
    gpu_costs = measure_costs(model, Plan.grid, mts_grid, n_inner,
                              measure=extrapolated_seconds(model, args.gpu_tflops, args.gpu_pass_ms, counted))
    gpu_plan = make_plan(False, gpu_costs, mts_grid=mts_grid, n_inner=n_inner)
    measured = json.loads(args.gpu_plan.read_text()) if args.gpu_plan.exists() else None
    result = {
        "model": cpu["model"], "mts": args.mts, "load": os.getloadavg(), "torch_threads": torch.get_num_threads(),
        "cpu": {"estimate_h": {k: v / 3600 for k, v in cpu["estimate_s"].items()}, "total_h": cpu["total_h"],
                "costs_s_per_call": cpu["costs_s_per_call"], "label": "measured call costs on this machine's CPU"},
        "gpu": ({"estimate_h": {k: v / 3600 for k, v in measured["estimate_s"].items()}, "total_h": measured["total_h"],
                 "label": f"measured call costs on {measured['device']}"} if measured else
                {"estimate_h": {k: v / 3600 for k, v in gpu_plan.estimate_s.items()},
                 "total_h": sum(gpu_plan.estimate_s.values()) / 3600, "costs_s_per_call": gpu_costs,
                 "flops_and_passes_per_call": dict(zip(gpu_costs, counted["calls"])),
                 "label": f"EXTRAPOLATED, not measured: FLOPs at {args.gpu_tflops} TFLOP/s + {args.gpu_pass_ms} ms per pass"}),
        "goal_h_on_one_H200": 1.0,
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("cpu", "gpu")}, indent=1)[:3000])


if __name__ == "__main__":
    main()
