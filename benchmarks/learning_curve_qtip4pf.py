"""The price of learning symmetry where data are not the limit (issue 30, part 3): the PET-style model and its
exactly invariant twin trained on N = 100, 300, 1000 and 3000 q-TIP4P/F cells, the same wall time per point.

Data: the pre-training set of ``symprobe pretrain-data configs/pretrain_qtip4pf.yaml`` (64-molecule cells, energies,
forces). One split (``--val`` validation and ``--test`` held-out test cells, data seed 0) serves every point; a point
trains on the first N cells of its training split (``data.train_subset``), from training seed 0 and 1 (``--seeds``:
initial weights, order and rotations). Architecture, loss weights and augmentation are the bundled configs'
(configs/train_water_pet*.yaml).

Same wall time per point: each model's cost per optimiser step and per epoch's validation is measured first
(two one-epoch trainings of 4 and 12 steps, 1 and 4 with ``--toy``, kept in ``WORK/calibration.json``); every point
trains for the epochs that fill ``--hours`` at that cost (its cosine schedule spans them), and the wall time each point
took is reported beside the budget: the equality holds as far as the load stayed the same. Every ``--every`` steps (rounded to whole epochs) the PET-style model's
rotational error is measured on the first ``--rotation-cells`` test cells (float64, ``--rotations`` Haar rotations):
how fast symmetry is learned, against Shen et al.'s "equivariance learned within 1k–10k steps".

Reported: per point the held-out test errors, the validation force MAE against wall time; per model the fitted
exponent of MAE ∝ N^slope over all seeds (least squares in log-log, standard errors from the fit) and the curvature
(a quadratic term in log N: positive when the curve flattens); the crossing point of the two fits (where the
PET-style model's error falls below the twin's) with a 16–84 % interval from the fits' covariances, if there is one.
Figure: error against N (2 seeds, error bars their spread), against wall time, and rotational error against step.

Resumable: each point lives in ``WORK/MODEL-N-sSEED`` with its checkpoint; a rerun continues where the last stopped.
``--jobs`` points train at once, one process and one thread each.

    python benchmarks/learning_curve_qtip4pf.py --out results/learning_curve_qtip4pf.json --work runs/learning_curve_qtip4pf

``--toy`` trains a tiny model on ``--data`` (N = 4 and 8, 2 validation and 2 test cells): seconds (the tests).
Bad input: one line on stderr, exit code 2; interrupted: exit code 130 (checkpoints are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symprobe.checks import ConfigError, read_yaml
from symprobe.files import check_writable, save_figure, write_json
from symprobe.interrupt import Interrupted
from symprobe.training import (
    TrainConfig,
    load_samples,
    make_config,
    train,
    training_split,
)
from symprobe.training.jobs import run_trainings
from symprobe.training.tracking import train_tracking_rotation

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"water-pet": "train_water_pet.yaml", "water-pet-twin": "train_water_pet_twin.yaml"}
TRACKED = "water-pet"  # the model whose rotational error is followed along training
WARMUP_STEPS = 75
CALIBRATION_STEPS = {"full": (4, 12), "toy": (1, 4)}  # optimiser steps of the two calibration epochs
TOY_MODEL = {"cutoff": 3.5, "width": 16, "heads": 2, "blocks": 1, "layers_per_block": 1, "feedforward": 32,
             "radial_basis": 6, "angular_degree": 2}
SHEN_STEPS = (1000, 10000)  # Shen et al.: equivariance learned within 1k-10k steps


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the figure goes beside it, .png)")
    parser.add_argument("--work", type=Path, required=True, help="directory of the trainings (resumed)")
    parser.add_argument("--data", type=Path, default=ROOT / "runs" / "pretrain-qtip4pf" / "pretrain.extxyz",
                        help="q-TIP4P/F set of symprobe pretrain-data (default: configs/pretrain_qtip4pf.yaml's)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000], help="training-set sizes N")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds per point (default 0 1)")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--hours", type=float, default=1.0, help="wall time of every point, h (default 1)")
    parser.add_argument("--val", type=int, default=100, help="validation cells (default 100)")
    parser.add_argument("--test", type=int, default=200, help="held-out test cells (default 200)")
    parser.add_argument("--every", type=int, default=500, help="steps between rotational-error measurements (default 500)")
    parser.add_argument("--rotations", type=int, default=4, help="Haar rotations per cell (default 4)")
    parser.add_argument("--rotation-cells", type=int, default=10, help="test cells of the rotational error (default 10)")
    parser.add_argument("--jobs", type=int, default=2, help="points at once, one thread each (default 2)")
    parser.add_argument("--toy", action="store_true", help="tiny model, N = 4 and 8 (the tests)")
    args = parser.parse_args(argv)
    for flag in ("val", "test", "every", "rotations", "rotation_cells", "jobs"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if not args.hours > 0 or min(args.sizes) < 1 or min(args.seeds) < 0:
        raise ConfigError(f"--hours and --sizes must be positive and --seeds non-negative, got {args.hours}, {args.sizes}, {args.seeds}")
    if not args.data.is_file():
        raise ConfigError(f"--data: {args.data} is not a file (make it: symprobe pretrain-data configs/pretrain_qtip4pf.yaml)")
    return args


def point_config(name: str, n: int, seed: int, args: argparse.Namespace, epochs: int = 1, out: Path | None = None) -> TrainConfig:
    """Model ``name`` on the first ``n`` training cells from training seed ``seed``, for ``epochs`` epochs."""
    base = read_yaml(ROOT / "configs" / CONFIGS[name])
    data = {"path": str(args.data.resolve()), "train": max(args.sizes), "val": args.val, "test": args.test, "seed": 0, "train_subset": n}
    per_epoch = math.ceil(n / base["training"]["batch_size"])
    training = {**base["training"], "seed": seed, "epochs": epochs, "max_hours": None, "threads": 1, "device": "cpu",
                "warmup_epochs": min(WARMUP_STEPS / per_epoch, epochs / 2)}
    model = {**base["model"], **(TOY_MODEL if args.toy else {})}
    return make_config({"name": f"{name}-{n}-s{seed}", "output_dir": str(out or args.work / f"{name}-{n}-s{seed}"), "data": data,
                        "model": model, "training": training}, base_dir=ROOT / "configs")


def calibrate(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per optimiser step and per epoch's validation of model ``name`` (two one-epoch trainings), cached."""
    path = args.work / "calibration.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if name not in cached:
        torch.set_num_threads(1)
        seconds, counts = [], CALIBRATION_STEPS["toy" if args.toy else "full"]
        for steps in counts:
            run = args.work / "calibration" / f"{name}-{steps}"
            if not (run / "log.json").exists():
                train(point_config(name, 2 * steps, 0, args, out=run), progress=False)
            seconds.append(json.loads((run / "log.json").read_text())[0]["epoch_seconds"])
        step = (seconds[1] - seconds[0]) / (counts[1] - counts[0])
        cached = {**(json.loads(path.read_text()) if path.exists() else {}),
                  name: {"step_seconds": max(step, 1e-6), "validation_seconds": max(seconds[0] - counts[0] * step, 0.0),
                         "load_average": list(os.getloadavg())}}
        write_json(path, cached)
    return cached[name]


def train_point(name: str, n: int, seed: int, args: argparse.Namespace, cost: dict[str, float]) -> dict[str, Any]:
    """Train (or resume) one point for ``args.hours`` of wall time, following the rotational error of the tracked model."""
    torch.set_num_threads(1)
    per_epoch = math.ceil(n / 2)
    epochs = max(1, int(3600 * args.hours / (per_epoch * cost["step_seconds"] + cost["validation_seconds"])))
    config = point_config(name, n, seed, args, epochs=epochs)
    samples = load_samples(config.data["path"], float(config.model["cutoff"]))
    split = training_split(config, len(samples))
    test = [samples[k] for k in split["test"]]
    run = Path(config.output_dir)
    every = max(1, round(args.every / per_epoch)) if name == TRACKED else epochs
    summary, along = train_tracking_rotation(config, test[: args.rotation_cells], every, args.rotations, run / "rotational.json", per_epoch)
    history = json.loads((run / "log.json").read_text())
    return {"model": name, "n_train": n, "seed": seed, "epochs_planned": epochs, "epochs": summary["epochs_done"],
            "steps": summary["epochs_done"] * per_epoch, "wall_seconds": summary["wall_seconds"], "finished": summary["finished"],
            "best_epoch": summary["best_epoch"], "test": summary["test"], "rotational_along": along,
            "validation_along": [{"step": row["epoch"] * per_epoch, "wall_seconds": row["wall_seconds"], "force_mae": row["val_force_mae"],
                                  "energy_mae": row["val_energy_mae"]} for row in history]}


def fit(points: list[dict[str, Any]]) -> dict[str, Any]:
    """log MAE = a + slope · log N over every seed's point: slope and intercept with standard errors and their
    covariance; the curvature of a quadratic fit in log N (> 0: the curve flattens) with its standard error."""
    x = np.log([p["n_train"] for p in points])
    y = np.log([p["test"]["force_mae"] for p in points])
    out: dict[str, Any] = {"points": len(points)}
    if len(set(x)) < 2:
        return out
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, residual, _, _ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - 2
    sigma2 = float(residual[0]) / dof if dof > 0 and len(residual) else float("nan")
    cov = sigma2 * np.linalg.inv(design.T @ design)
    out.update({"slope": float(coef[1]), "intercept": float(coef[0]), "covariance": cov.tolist() if dof > 0 else None,
                "slope_error": float(np.sqrt(cov[1, 1])) if dof > 0 else None})
    if len(set(x)) >= 3 and len(x) >= 4:
        quadratic = np.stack([np.ones_like(x), x, x**2], axis=1)
        qcoef, qres, _, _ = np.linalg.lstsq(quadratic, y, rcond=None)
        qdof = len(x) - 3
        qsigma2 = float(qres[0]) / qdof if len(qres) else 0.0
        out["curvature"] = float(qcoef[2])
        out["curvature_error"] = float(np.sqrt(qsigma2 * np.linalg.inv(quadratic.T @ quadratic)[2, 2]))
    return out


def crossing(pet: dict[str, Any], twin: dict[str, Any], sizes: list[int]) -> dict[str, Any] | None:
    """Where the two fitted lines meet (N*, with a 16–84 % interval from 20000 draws of the fits' parameters), or None
    when they are parallel or a fit has no covariance."""
    if pet.get("covariance") is None or twin.get("covariance") is None or pet["slope"] == twin["slope"]:
        return None
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal([pet["intercept"], pet["slope"]], pet["covariance"], 20000)
    b = rng.multivariate_normal([twin["intercept"], twin["slope"]], twin["covariance"], 20000)
    draws = (b[:, 0] - a[:, 0]) / (a[:, 1] - b[:, 1])
    log_n = (twin["intercept"] - pet["intercept"]) / (pet["slope"] - twin["slope"])
    low, high = np.percentile(draws, [16, 84])
    return {"n": float(np.exp(log_n)), "n_16": float(np.exp(low)), "n_84": float(np.exp(high)),
            "within_measured_range": bool(min(sizes) <= np.exp(log_n) <= max(sizes)),
            "pet_better_above": bool(pet["slope"] < twin["slope"])}


def plot(result: dict[str, Any], path: Path) -> None:
    """Test force MAE against N (seed spread as error bars, the fits); validation error against wall time; the
    tracked model's rotational error against step, with Shen et al.'s 1k–10k steps shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    colours = {"water-pet": "tab:red", "water-pet-twin": "tab:blue"}
    for name, points in result["models"].items():
        sizes = sorted({p["n_train"] for p in points})
        maes = [[p["test"]["force_mae"] for p in points if p["n_train"] == n] for n in sizes]
        axes[0].errorbar(sizes, [np.mean(m) for m in maes], yerr=[np.ptp(m) / 2 for m in maes], fmt="o", color=colours[name], capsize=3,
                         label=name)
        fitted = result["fits"][name]
        if "slope" in fitted:
            grid = np.geomspace(min(sizes), max(sizes), 50)
            axes[0].plot(grid, np.exp(fitted["intercept"]) * grid ** fitted["slope"], "-", color=colours[name],
                         label=f"N^{fitted['slope']:.2f}" + (f" ± {fitted['slope_error']:.2f}" if fitted.get("slope_error") else ""))
        for k, n in enumerate(sizes):
            shade = 0.35 + 0.65 * (k + 1) / len(sizes)
            for p in (p for p in points if p["n_train"] == n):
                valid = p["validation_along"]
                axes[1].loglog([v["wall_seconds"] / 3600 for v in valid], [v["force_mae"] for v in valid], "-", color=colours[name],
                               alpha=shade, label=f"{name}, N = {n}" if p["seed"] == min(result["seeds"]) else None)
                along = p["rotational_along"]
                if name == TRACKED and along:
                    axes[2].semilogy([a["step"] for a in along], [a["force_rms"] for a in along], "o-", color=colours[name], alpha=shade,
                                     label=f"N = {n}" if p["seed"] == min(result["seeds"]) else None)
    if result.get("crossing"):
        axes[0].axvline(result["crossing"]["n"], color="grey", ls="--", label=f"crossing N ≈ {result['crossing']['n']:.3g}")
    axes[2].axvspan(*SHEN_STEPS, color="grey", alpha=0.15, label="Shen et al.: 1k–10k steps")
    axes[0].set(xscale="log", yscale="log", xlabel="training cells N (q-TIP4P/F)", ylabel="held-out force MAE (meV/Å)",
                title=f"Equal wall time per point ({result['hours_per_point']:g} h)")
    axes[1].set(xlabel="training wall time (h)", ylabel="validation force MAE (meV/Å)", title="Error against wall time")
    axes[2].set(xscale="log", xlabel="optimiser step", ylabel="rotational force error (meV/Å, float64)", title="PET-style: symmetry learned along training")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    begin, load_start = time.time(), os.getloadavg()
    try:
        args = parse(argv)
        if args.toy:
            args.sizes, args.val, args.test, args.rotation_cells = [4, 8], 2, 2, 2
        for name in args.models:
            point_config(name, max(args.sizes), 0, args)  # every config checked before any training
        check_writable(args.work)
        check_writable(args.out.parent)
    except (ConfigError, OSError) as error:
        print(f"learning_curve_qtip4pf.py: error: {error}", file=sys.stderr)
        return 2
    try:
        costs = {name: calibrate(name, args) for name in args.models}
        points = [(name, n, seed) for n in sorted(args.sizes, reverse=True) for name in args.models for seed in args.seeds]
        done = run_trainings(train_point, [(name, n, seed, args, costs[name]) for name, n, seed in points], args.jobs)
    except (Interrupted, KeyboardInterrupt) as stopped:
        print(f"learning_curve_qtip4pf.py: interrupted ({stopped}); rerun the same command to resume", file=sys.stderr)
        return 130
    models = {name: sorted((p for p in done if p["model"] == name), key=lambda p: (p["n_train"], p["seed"])) for name in args.models}
    fits = {name: fit(points) for name, points in models.items()}
    result = {"script": "benchmarks/learning_curve_qtip4pf.py", "arguments": argv, "torch": torch.__version__, "torch_threads_per_job": 1,
              "jobs": args.jobs, "cpu_count": os.cpu_count(), "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
              "wall_seconds_this_call": time.time() - begin, "toy": args.toy, "hours_per_point": args.hours, "seeds": args.seeds,
              "sizes": args.sizes, "calibration": costs, "shen_steps": list(SHEN_STEPS),
              "units": "force MAE and rotational force error meV/Å, energy MAE meV/atom, rotational energy error meV/cell, times s",
              "models": models, "fits": fits,
              "crossing": crossing(fits["water-pet"], fits["water-pet-twin"], args.sizes) if set(CONFIGS) <= set(fits) else None}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({"fits": {k: {m: v.get(m) for m in ("slope", "slope_error", "curvature")} for k, v in fits.items()},
                      "crossing": result["crossing"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
