"""The price of learning symmetry (issue 15, part 3): held-out force MAE and rotational error against the
number of training structures, for the PET-style model and its exactly invariant twin at equal training budget.

Each model of ``--models`` is trained from scratch on the first N structures of the bundled models' 150-structure
training split, for each N of ``--sizes`` (default 19, 38, 75, 150); the 20 validation and 20 test cells are the
same for every N (``data.train_subset``). Everything else is the bundled stage-1 configs'
(configs/train_water_pet*.yaml): architecture, loss weights, augmentation (PET-style only), cosine schedule.
Equal budget means the same number of optimiser steps (``--steps``, batches of 2 structures) for every N and
model, so a smaller N sees each structure more often; the warmup is the same number of steps too.

Every ``--every`` steps (rounded to whole epochs) the rotational error of the current weights is computed on
the test cells (float64, ``--rotations`` Haar rotations each; ``symprobe.training.rotational_errors``): how the
learned symmetry develops during training. At the end, the best-validation model's test errors (the held-out
force MAE of the learning curve), its errors on its own training structures and its rotational error.

Resumable: each training lives in ``WORK/MODEL-N`` with its checkpoint (``symprobe.training.train``), and its
rotational errors in ``WORK/MODEL-N/rotational.json``; a rerun continues where the last stopped. ``--jobs``
trainings run at once, one process and one thread each. Outputs: ``--out`` (JSON) and the figure beside it
(``.png``): test force MAE against N, rotational error against training step, validation error against step.

    python benchmarks/learning_curve.py --out results/learning_curve.json --work runs/learning_curve

``--toy`` trains a tiny model on ``--data`` (4 and 8 structures, 2 validation, 2 test): seconds (the tests).
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
from symprobe.models.pet import load_module
from symprobe.training import TrainConfig, evaluate, load_samples, make_config, rotational_errors, training_split
from symprobe.training.jobs import run_trainings
from symprobe.training.tracking import train_tracking_rotation

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"water-pet": "train_water_pet.yaml", "water-pet-twin": "train_water_pet_twin.yaml"}
WARMUP_STEPS = 75  # one epoch of the bundled recipe (150 structures, batches of 2)
TOY_MODEL = {"cutoff": 3.5, "width": 16, "heads": 2, "blocks": 1, "layers_per_block": 1, "feedforward": 32,
             "radial_basis": 6, "angular_degree": 2}
TOY_SPLIT = {"train": 8, "val": 2, "test": 2, "seed": 0}
PAPER_PET = {"force_mae": 16.6, "rotational_energy_per_cell": 5.1, "rotational_force": 2.0, "training_structures": 1303}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the figure goes beside it, .png)")
    parser.add_argument("--work", type=Path, required=True, help="directory of the trainings (resumed)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[19, 38, 75, 150], help="training-set sizes N")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps per training (equal budget; default 3000)")
    parser.add_argument("--every", type=int, default=375, help="steps between rotational-error measurements (default 375)")
    parser.add_argument("--rotations", type=int, default=4, help="Haar rotations per test cell (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each (default 2)")
    parser.add_argument("--data", type=Path, default=None, help="extended-XYZ file (default: the bundled configs' shared file)")
    parser.add_argument("--toy", action="store_true", help="tiny model on the first structures of --data (the tests)")
    args = parser.parse_args(argv)
    for flag in ("steps", "every", "rotations", "jobs"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    if min(args.sizes) < 1:
        raise ConfigError(f"--sizes must be positive, got {args.sizes}")
    if args.data is not None and not args.data.is_file():
        raise ConfigError(f"--data: {args.data} is not a file")
    return args


def point_config(name: str, n: int, args: argparse.Namespace) -> TrainConfig:
    """The config of model ``name`` trained on the first ``n`` training structures for ``args.steps`` steps."""
    base = read_yaml(ROOT / "configs" / CONFIGS[name])
    data = {**base["data"], **({"path": str(args.data.resolve())} if args.data else {}), **(TOY_SPLIT if args.toy else {}),
            "train_subset": n}
    if n > data["train"]:
        raise ConfigError(f"--sizes: {n} exceeds the {data['train']} structures of the training split")
    steps_per_epoch = math.ceil(n / base["training"]["batch_size"])
    training = {**base["training"], "epochs": math.ceil(args.steps / steps_per_epoch), "max_hours": None, "threads": 1,
                "warmup_epochs": min(WARMUP_STEPS, args.steps) / steps_per_epoch, "device": "cpu"}
    model = {**base["model"], **(TOY_MODEL if args.toy else {})}
    return make_config({"name": f"{name}-{n}", "output_dir": str(args.work / f"{name}-{n}"), "data": data, "model": model,
                        "training": training}, base_dir=ROOT / "configs")


def train_point(name: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one point of the learning curve, measuring the rotational error along the way."""
    torch.set_num_threads(1)
    config = point_config(name, n, args)
    run = Path(config.output_dir)
    steps_per_epoch = math.ceil(n / config.training["batch_size"])
    samples = load_samples(config.data["path"], float(config.model["cutoff"]))
    split = training_split(config, len(samples))
    test = [samples[k] for k in split["test"]]
    chunk = max(1, round(args.every / steps_per_epoch))
    summary, along = train_tracking_rotation(config, test, chunk, args.rotations, run / "rotational.json", steps_per_epoch)
    best = load_module(run / "best.pt").eval()
    history = json.loads((run / "log.json").read_text())
    return {
        "model": name, "n_train": n, "epochs": summary["epochs_done"], "steps": summary["epochs_done"] * steps_per_epoch,
        "best_epoch": summary["best_epoch"], "wall_seconds": summary["wall_seconds"], "parameters": summary["parameters"],
        "test": summary["test"], "train": evaluate(best, [samples[k] for k in split["train"]], torch.float32),
        "rotational_best": rotational_errors(best, test, args.rotations),
        "rotational_along": along,
        "validation_along": [{"step": row["epoch"] * steps_per_epoch, "wall_seconds": row["wall_seconds"],
                              "force_mae": row["val_force_mae"], "energy_mae": row["val_energy_mae"]} for row in history],
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Test force MAE against N; rotational force error against step; validation force MAE against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    colours = {"water-pet": "tab:red", "water-pet-twin": "tab:blue"}
    labels = {"water-pet": "PET-style (learns symmetry)", "water-pet-twin": "invariant twin"}
    for name, points in result["models"].items():
        sizes = sorted(points, key=int)
        axes[0].plot([int(n) for n in sizes], [points[n]["test"]["force_mae"] for n in sizes], "o-", color=colours[name], label=labels[name])
        for k, n in enumerate(sizes):
            shade = 0.35 + 0.65 * (k + 1) / len(sizes)
            along = points[n]["rotational_along"]
            if name == "water-pet":
                axes[1].semilogy([a["step"] for a in along], [a["force_rms"] for a in along], "o-", color=colours[name], alpha=shade,
                                 label=f"N = {n}")
            valid = points[n]["validation_along"]
            axes[2].semilogy([v["step"] for v in valid], [v["force_mae"] for v in valid], "-", color=colours[name], alpha=shade,
                             label=f"{labels[name].split(' (')[0]}, N = {n}")
    axes[0].axhline(PAPER_PET["force_mae"], color="grey", ls="--", label=f"paper's PET ({PAPER_PET['training_structures']} structures)")
    axes[0].set(xscale="log", yscale="log", xlabel="training structures N", ylabel="held-out force MAE (meV/Å)",
                title=f"Learning curve at equal budget ({result['steps']} steps)")
    axes[1].axhline(PAPER_PET["rotational_force"], color="grey", ls="--", label="paper's PET")
    axes[1].set(xlabel="optimiser step", ylabel="rotational force error (meV/Å, float64)", title="PET-style: learned symmetry during training")
    axes[2].set(xlabel="optimiser step", ylabel="validation force MAE (meV/Å)", title="Validation error during training")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    begin = time.time()
    try:
        args = parse(argv)
        for name in args.models:
            for n in args.sizes:
                point_config(name, n, args)  # every config checked before any training
        check_writable(args.work)
        check_writable(args.out.parent)
    except (ConfigError, OSError) as error:
        print(f"learning_curve.py: error: {error}", file=sys.stderr)
        return 2
    points = [(name, n, args) for n in sorted(args.sizes, reverse=True) for name in args.models]  # the longest first
    try:
        done = run_trainings(train_point, points, args.jobs)
    except (Interrupted, KeyboardInterrupt) as stopped:
        print(f"learning_curve.py: interrupted ({stopped}); rerun the same command to resume", file=sys.stderr)
        return 130
    models: dict[str, dict[str, Any]] = {name: {} for name in args.models}
    for point in done:
        models[point["model"]][str(point["n_train"])] = point
    result = {"script": "benchmarks/learning_curve.py", "arguments": argv, "torch": torch.__version__, "torch_threads_per_job": 1,
              "jobs": args.jobs, "load_average": list(os.getloadavg()), "steps": args.steps, "toy": args.toy,
              "wall_seconds_this_call": time.time() - begin, "paper_PET": PAPER_PET,
              "units": "force MAE and rotational force error meV/Å, energy MAE meV/atom, rotational energy error meV/cell, times s",
              "models": models, "premise": premise(models)}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps(result["premise"], indent=1))
    return 0


def premise(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per N: the PET-style model's held-out force MAE over the twin's (> 1: learning symmetry costs accuracy at
    equal budget), and the fitted exponent of each learning curve (MAE ∝ N^slope)."""
    out: dict[str, Any] = {}
    if {"water-pet", "water-pet-twin"} <= set(models):
        common = sorted(set(models["water-pet"]) & set(models["water-pet-twin"]), key=int)
        out["mae_ratio_pet_over_twin"] = {n: models["water-pet"][n]["test"]["force_mae"] / models["water-pet-twin"][n]["test"]["force_mae"]
                                          for n in common}
    for name, points in models.items():
        if len(points) >= 2:
            sizes = np.array([int(n) for n in points], dtype=float)
            maes = np.array([p["test"]["force_mae"] for p in points.values()])
            out[f"slope_{name}"] = float(np.polyfit(np.log(sizes), np.log(maes), 1)[0])
    return out


if __name__ == "__main__":
    sys.exit(main())
