"""Pre-training on q-TIP4P/F labels, then fine-tuning on the DFT cells (issue 30, part 2): the recipes side by side
at equal training budget, on the 20 held-out DFT cells.

Recipes, for the PET-style model and its invariant twin (architecture, split, loss weights and augmentation of
configs/train_water_pet.yaml and configs/train_water_pet_twin.yaml):

* ``scratch``: DFT cells only, lr 1e-3 → 1e-5 (cosine), for ``--steps`` optimiser steps (the bundled recipe's kind);
* ``pretrain``: ``--pretrain-share`` of the steps on the q-TIP4P/F set (``symprobe pretrain-data
  configs/pretrain_qtip4pf.yaml``; lr 1e-3 → 1e-4), then the rest on the DFT cells from its best model with a
  learning-rate restart (3e-4 → 1e-6), per-species reference energies re-fitted on the DFT cells, nothing frozen
  (a ``pretrain`` section of the training config: :mod:`symprobe.training.stages`);
* ``pretrain-freeze1``: the same, the first block's token layers frozen while fine-tuning.

Equal budget is equal optimiser steps of batches of 2 cells of 64 molecules in both label sets (so about equal CPU
time; validation of the pretrain stage uses ``--pretrain-val`` cells); the wall time of every stage is measured and
every call records the load average at its start and end. Reported per model and recipe: the best model's test
energy MAE (meV/atom) and force MAE (meV/Å) on the held-out DFT cells, its rotational errors (float64,
``--rotations`` Haar rotations per test cell; meV/cell, meV/Å), the validation force MAE against cumulative wall
time, and the wall hours.

Resumable: each training lives in ``WORK/MODEL/RECIPE`` with its checkpoints; a rerun continues where the last one
stopped and trains nothing that has finished. ``--jobs`` trainings run at once, one process and one thread each.
Outputs: ``--out`` (JSON) and the figure beside it (``.png``).

    python benchmarks/pretrain.py --out results/pretrain.json --work runs/pretrain_recipes

``--toy`` trains a tiny model on ``--data`` and ``--pretrain-data`` for a few steps: seconds (the tests).
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

import torch

from symprobe.checks import ConfigError, read_yaml
from symprobe.files import check_writable, save_figure, write_json
from symprobe.interrupt import Interrupted
from symprobe.models.pet import load_module
from symprobe.training import (
    TrainConfig,
    load_samples,
    make_config,
    rotational_errors,
    train_stages,
    training_split,
)
from symprobe.training.jobs import run_trainings

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"water-pet": "train_water_pet.yaml", "water-pet-twin": "train_water_pet_twin.yaml"}
RECIPES = {"scratch": None, "pretrain": 0, "pretrain-freeze1": 1}  # recipe → frozen blocks while fine-tuning
WARMUP_STEPS = 75  # one epoch of the bundled recipe (150 structures, batches of 2)
PRETRAIN_LR, PRETRAIN_LR_MIN, FINE_LR, FINE_LR_MIN = 1e-3, 1e-4, 3e-4, 1e-6
TOY_MODEL = {"cutoff": 3.5, "width": 16, "heads": 2, "blocks": 2, "layers_per_block": 1, "feedforward": 32,
             "radial_basis": 6, "angular_degree": 2}
TOY_SPLIT = {"train": 8, "val": 2, "test": 2, "seed": 0}
GOAL = {"force_mae": 50.0, "energy_mae": 2.0}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the figure goes beside it, .png)")
    parser.add_argument("--work", type=Path, required=True, help="directory of the trainings (resumed)")
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--steps", type=int, default=17250,
                        help="optimiser steps of every recipe, both stages together (default 17250: the bundled 120 + 110 epochs)")
    parser.add_argument("--pretrain-share", type=float, default=0.5, help="share of the steps spent pre-training (default 0.5)")
    parser.add_argument("--pretrain-data", type=Path, default=ROOT / "runs" / "pretrain-qtip4pf" / "pretrain.extxyz",
                        help="q-TIP4P/F set of symprobe pretrain-data (default: configs/pretrain_qtip4pf.yaml's)")
    parser.add_argument("--pretrain-train", type=int, default=9000, help="pre-training cells (default 9000)")
    parser.add_argument("--pretrain-val", type=int, default=200, help="pre-training validation cells (default 200)")
    parser.add_argument("--rotations", type=int, default=8, help="Haar rotations per test cell (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each (default 2)")
    parser.add_argument("--data", type=Path, default=None, help="DFT extended-XYZ file (default: the bundled configs' shared file)")
    parser.add_argument("--toy", action="store_true", help="tiny model on the first structures of --data (the tests)")
    args = parser.parse_args(argv)
    for flag in ("steps", "pretrain_train", "pretrain_val", "rotations", "jobs"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if not 0 < args.pretrain_share < 1:
        raise ConfigError(f"--pretrain-share must be between 0 and 1 (exclusive), got {args.pretrain_share}")
    for flag, path in (("--data", args.data), ("--pretrain-data", args.pretrain_data)):
        if path is not None and not path.is_file() and (flag == "--data" or set(args.recipes) - {"scratch"}):
            raise ConfigError(f"{flag}: {path} is not a file" + (" (make it: symprobe pretrain-data configs/pretrain_qtip4pf.yaml)"
                                                                 if flag == "--pretrain-data" else ""))
    return args


def recipe_config(name: str, recipe: str, args: argparse.Namespace) -> TrainConfig:
    """The training config of ``recipe`` for model ``name``: ``args.steps`` optimiser steps in all."""
    base = read_yaml(ROOT / "configs" / CONFIGS[name])
    data = {**base["data"], **({"path": str(args.data.resolve())} if args.data else {}), **(TOY_SPLIT if args.toy else {})}
    model = {**base["model"], **(TOY_MODEL if args.toy else {})}
    batch = int(base["training"]["batch_size"])
    fine_per_epoch = math.ceil(data["train"] / batch)
    common = {"max_hours": None, "threads": 1, "device": "cpu"}
    raw = {"name": f"{name}/{recipe}", "output_dir": str(args.work / name / recipe), "data": data, "model": model}
    if RECIPES[recipe] is None:
        epochs = math.ceil(args.steps / fine_per_epoch)
        return make_config({**raw, "training": {**base["training"], **common, "epochs": epochs,
                                                "warmup_epochs": min(WARMUP_STEPS, args.steps) / fine_per_epoch}}, base_dir=ROOT / "configs")
    pretrain_steps = max(1, round(args.pretrain_share * args.steps))
    fine_steps = max(1, args.steps - pretrain_steps)
    pretrain_train = min(args.pretrain_train, batch * pretrain_steps)  # at least one whole epoch
    pretrain_per_epoch = math.ceil(pretrain_train / batch)
    pretrain = {"data": {"path": str(args.pretrain_data.resolve()), "train": pretrain_train, "val": args.pretrain_val, "test": 0, "seed": 0},
                "training": {"epochs": max(1, round(pretrain_steps / pretrain_per_epoch)), "lr": PRETRAIN_LR, "lr_min": PRETRAIN_LR_MIN,
                             "warmup_epochs": min(WARMUP_STEPS, pretrain_steps) / pretrain_per_epoch}}
    training = {**base["training"], **common, "epochs": math.ceil(fine_steps / fine_per_epoch), "lr": FINE_LR, "lr_min": FINE_LR_MIN,
                "warmup_epochs": min(WARMUP_STEPS, fine_steps) / fine_per_epoch, "energy_reference": "refit",
                "freeze_blocks": RECIPES[recipe]}
    return make_config({**raw, "training": training, "pretrain": pretrain}, base_dir=ROOT / "configs")


def _finished(run: Path) -> bool:
    return (run / "summary.json").exists() and json.loads((run / "summary.json").read_text())["finished"]


def train_recipe(name: str, recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one recipe of one model; its test and rotational errors, validation curve and wall time."""
    torch.set_num_threads(1)
    config = recipe_config(name, recipe, args)
    run = Path(config.output_dir)
    stages = {"pretrain": run / "pretrain", "fine-tune": run} if config.pretrain else {"scratch": run}
    sessions_path = run / "sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.exists() else []
    if not _finished(run):
        begin, load_start = time.time(), os.getloadavg()
        train_stages(config, resume=any((stage / "checkpoint.pt").exists() for stage in stages.values()), progress=False)
        sessions.append({"wall_seconds": time.time() - begin, "load_average_start": list(load_start),
                         "load_average_end": list(os.getloadavg())})
        write_json(sessions_path, sessions)
    rotational_path = run / "rotational.json"
    if not rotational_path.exists():  # once, on the finished run's best model
        samples = load_samples(config.data["path"], float(config.model["cutoff"]))
        test = [samples[k] for k in training_split(config, len(samples))["test"]]
        write_json(rotational_path, rotational_errors(load_module(run / "best.pt"), test, args.rotations))
    curve, stage_hours, offset = [], {}, 0.0
    for stage, directory in stages.items():
        curve += [{"stage": stage, "hours": (offset + row["wall_seconds"]) / 3600, "epoch": row["epoch"], "val_force_mae": row["val_force_mae"]}
                  for row in json.loads((directory / "log.json").read_text())]
        stage_hours[stage] = json.loads((directory / "summary.json").read_text())["wall_seconds"] / 3600
        offset += 3600 * stage_hours[stage]
    summary = json.loads((run / "summary.json").read_text())
    return {"model": name, "recipe": recipe, "test": summary["test"], "rotational": json.loads(rotational_path.read_text()),
            "wall_hours": offset / 3600, "stage_wall_hours": stage_hours, "steps": args.steps,
            "frozen_parameters": summary["frozen_parameters"], "parameters": summary["parameters"], "validation_along": curve,
            "sessions": sessions}


def plot(result: dict[str, Any], path: Path) -> None:
    """Test force MAE per recipe; validation force MAE against wall time; rotational force error per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    models = list(result["models"])
    colours = {recipe: colour for recipe, colour in (("scratch", "tab:grey"), ("pretrain", "tab:red"), ("pretrain-freeze1", "tab:orange"))
               if any(recipe in result["models"][m] for m in models)}  # the recipes that ran
    width = 0.8 / max(1, len(colours))
    for k, recipe in enumerate(colours):
        rows = [result["models"][m].get(recipe) for m in models]
        where = [i for i, row in enumerate(rows) if row]
        shift = (k - (len(colours) - 1) / 2) * width
        axes[0].bar([i + shift for i in where], [rows[i]["test"]["force_mae"] for i in where], width, color=colours[recipe], label=recipe)
        axes[2].bar([i + shift for i in where], [max(rows[i]["rotational"]["force_rms"], 1e-9) for i in where], width,
                    color=colours[recipe], label=recipe)
        for model, style in zip(models, ("-", ":")):
            row = result["models"][model].get(recipe)
            for stage in ("pretrain", "fine-tune", "scratch") if row else ():
                along = [a for a in row["validation_along"] if a["stage"] == stage]
                if not along:
                    continue
                axes[1].semilogy([a["hours"] for a in along], [a["val_force_mae"] for a in along], style, color=colours[recipe],
                                 alpha=0.4 if stage == "pretrain" else 1.0, label=f"{model}, {recipe}" if stage != "pretrain" else None)
    axes[0].axhline(GOAL["force_mae"], color="green", lw=0.8, label=f"goal {GOAL['force_mae']:g} meV/Å")
    for ax, title, label in ((axes[0], "Held-out DFT cells", "test force MAE (meV/Å)"),
                             (axes[2], "Rotational error (float64)", "rotational force error (meV/Å)")):
        ax.set_xticks(range(len(models)), models)
        ax.set(ylabel=label, title=title)
    axes[2].set_yscale("log")
    axes[1].set(xlabel="training wall time (h; pretrain stage pale: its validation cells are q-TIP4P/F's)", ylabel="validation force MAE (meV/Å)",
                title=f"Equal budget: {result['steps']} steps per recipe")
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
        runs = [(name, recipe) for name in args.models for recipe in args.recipes]
        for name, recipe in runs:
            recipe_config(name, recipe, args)  # every config checked before any training
        check_writable(args.work)
        check_writable(args.out.parent)
    except (ConfigError, OSError) as error:
        print(f"pretrain.py: error: {error}", file=sys.stderr)
        return 2
    try:
        done = run_trainings(train_recipe, [(name, recipe, args) for name, recipe in runs], args.jobs)
    except (Interrupted, KeyboardInterrupt) as stopped:
        print(f"pretrain.py: interrupted ({stopped}); rerun the same command to resume", file=sys.stderr)
        return 130
    models: dict[str, dict[str, Any]] = {name: {} for name in args.models}
    for row in done:
        models[row["model"]][row["recipe"]] = row
    result = {"script": "benchmarks/pretrain.py", "arguments": argv, "torch": torch.__version__, "torch_threads_per_job": 1,
              "jobs": args.jobs, "cpu_count": os.cpu_count(), "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
              "wall_seconds_this_call": time.time() - begin, "steps": args.steps, "pretrain_share": args.pretrain_share,
              "toy": args.toy, "goal": GOAL,
              "units": "force MAE and rotational force error meV/Å, energy MAE meV/atom, rotational energy error meV/cell, wall time h",
              "models": models}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({name: {recipe: {"force_mae": row["test"]["force_mae"], "energy_mae": row["test"]["energy_mae"],
                                      "wall_hours": row["wall_hours"]} for recipe, row in rows.items()} for name, rows in models.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
