"""Training recipes for the bundled (small) PET-style model on a CPU, compared by time to accuracy (issue 15,
part 2): validation force MAE against training wall time, one curve per recipe, old and new.

Recipes (each a sequence of ``symprobe.training`` stages on the bundled models' split and architecture, from
configs/train_water_pet.yaml; a later stage starts from the best model of the one before, ``init_from``):

* ``conservative``: the bundled recipe's first stage (forces −∂E/∂x from the start, lr 1e-3 → 1e-5);
* ``direct-then-conservative``: direct-force pre-training with a force head (no second derivative, about a third
  of the cost per step), then conservative fine-tuning (lr 3e-4 → 1e-6), the head dropped;
* ``conservative-wide`` (11 epochs) and ``conservative-wide-long`` (40 epochs): the conservative recipe on a model
  of twice the width (128, feed-forward 256, about four times the parameters): is the bundled architecture
  limited by its capacity or by CPU time?

The recipes train at once, one process each (``--threads`` each), so they share the machine alike; the bundled
models were trained the same way (two at once, one thread each). A call trains for at most ``--hours`` (checked before every step; a stopped stage leaves its checkpoint) and
the next call continues: each stage lives in ``WORK/RECIPE/STAGE``. The curves come from the stages' logs, with
the wall times of earlier stages added; during direct pre-training the validation error is that of the direct
forces (dashed in the figure). A finished recipe's held-out test errors are those of its last stage's best
model, as a potential (−∂E/∂x). The figure also shows the bundled model's end point (its card: 114 meV/Å after
3.1 h in two stages) and, when ``results/learning_curve.json`` exists, its conservative run on all 150
structures. Outputs: ``--out`` (JSON) and the figure beside it (``.png``), with every recipe that has a run in
``--work`` (``--recipes`` chooses which ones train).

    python benchmarks/train_recipes.py --hours 1 --out results/train_recipes.json

``--toy`` trains a tiny model on ``--data`` for a few epochs (the tests). Bad input: one line on stderr, exit
code 2; interrupted: exit code 130 (checkpoints are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from symprobe.checks import ConfigError, read_yaml
from symprobe.files import check_writable, save_figure, write_json
from symprobe.interrupt import Interrupted
from symprobe.models.pet import WEIGHTS_DIR
from symprobe.training import TrainConfig, make_config, train

ROOT = Path(__file__).resolve().parents[1]
BASE = "train_water_pet.yaml"
# The first two were sized to about 3 CPU-hours each from a timing under load (1.5 s per conservative step, 0.55 s
# per direct one, 75 steps per epoch); with two at once on 2 cores they ran at 0.69 s per conservative step and
# took 1.4 and 1.5 h. All of them together stay within issue 15's 6 CPU-hours.
RECIPES: dict[str, list[dict[str, Any]]] = {
    "conservative": [
        {"stage": "conservative", "training": {"epochs": 90}},
    ],
    "direct-then-conservative": [
        {"stage": "direct", "model": {"direct_forces": True}, "training": {"forces": "direct", "epochs": 100}},
        {"stage": "conservative", "training": {"epochs": 55, "lr": 3e-4, "lr_min": 1e-6, "warmup_epochs": 2}},
    ],
    # Measured: 1.45 s per step, 2.1x the bundled width's 0.69 s (median over epochs, two runs on 2 cores).
    "conservative-wide": [
        {"stage": "conservative", "width_factor": 2, "training": {"epochs": 11}},
    ],
    # The same, as long as issue 15's remaining budget allows (about 1.2 CPU-hours).
    "conservative-wide-long": [
        {"stage": "conservative", "width_factor": 2, "training": {"epochs": 40}},
    ],
}
TOY_MODEL = {"cutoff": 3.5, "width": 16, "heads": 2, "blocks": 1, "layers_per_block": 1, "feedforward": 32,
             "radial_basis": 6, "angular_degree": 2}
TOY_SPLIT = {"train": 8, "val": 2, "test": 2, "seed": 0}
TOY_EPOCHS = 2


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the figure goes beside it, .png)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "recipes", help="directory of the stages (resumed)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--hours", type=float, default=1.0, help="wall-time budget of this call, h (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per recipe (default 1: two recipes share 2 cores)")
    parser.add_argument("--data", type=Path, default=None, help="extended-XYZ file (default: the bundled config's shared file)")
    parser.add_argument("--learning-curve", type=Path, default=ROOT / "results" / "learning_curve.json",
                        help="learning-curve JSON whose 150-structure conservative run is drawn for comparison")
    parser.add_argument("--toy", action="store_true", help="tiny model, two epochs per stage (the tests)")
    args = parser.parse_args(argv)
    if not args.hours > 0 or args.threads < 1:
        raise ConfigError(f"--hours and --threads must be positive, got {args.hours} and {args.threads}")
    if args.data is not None and not args.data.is_file():
        raise ConfigError(f"--data: {args.data} is not a file")
    return args


def stage_config(recipe: str, k: int, args: argparse.Namespace, hours: float | None) -> TrainConfig:
    """Stage ``k`` of ``recipe``: the bundled stage-1 config with the stage's changes."""
    base, stage = read_yaml(ROOT / "configs" / BASE), RECIPES[recipe][k]
    data = {**base["data"], **({"path": str(args.data.resolve())} if args.data else {}), **(TOY_SPLIT if args.toy else {})}
    model = {**base["model"], **(TOY_MODEL if args.toy else {}), **stage.get("model", {})}
    if "width_factor" in stage:  # a wider model, its feed-forward layers 2 × width as in the bundled ones
        model["width"] = stage["width_factor"] * model["width"]
        model["feedforward"] = 2 * model["width"]
    training = {**base["training"], **stage["training"], "max_hours": hours, "threads": args.threads, "device": "cpu"}
    if args.toy:
        training["epochs"] = TOY_EPOCHS
    if k > 0:
        training["init_from"] = str(stage_dir(recipe, k - 1, args) / "best.pt")
        model["direct_forces"] = stage.get("model", {}).get("direct_forces", False)
    return make_config({"name": f"{recipe}/{stage['stage']}", "output_dir": str(stage_dir(recipe, k, args)), "data": data,
                        "model": model, "training": training}, base_dir=ROOT / "configs")


def stage_dir(recipe: str, k: int, args: argparse.Namespace) -> Path:
    return args.work / recipe / f"{k + 1}-{RECIPES[recipe][k]['stage']}"


def run_recipe(recipe: str, args: argparse.Namespace, deadline: float) -> None:
    """Train the recipe's stages in turn until the deadline (time.time()); each resumes its checkpoint."""
    for k in range(len(RECIPES[recipe])):
        run = stage_dir(recipe, k, args)
        if (run / "summary.json").exists() and json.loads((run / "summary.json").read_text())["finished"]:
            continue
        hours_left = max((deadline - time.time()) / 3600, 1e-9)  # train() makes one step however little is left
        summary = train(stage_config(recipe, k, args, hours_left), resume=(run / "checkpoint.pt").exists(), progress=False)
        if not summary["finished"]:
            return


def curve(recipe: str, args: argparse.Namespace) -> dict[str, Any]:
    """The recipe's validation force MAE against cumulative wall time, stage by stage, and its test errors."""
    stages, offset = [], 0.0
    for k, stage in enumerate(RECIPES[recipe]):
        run = stage_dir(recipe, k, args)
        if not (run / "log.json").exists():
            break
        history = json.loads((run / "log.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        stages.append({"stage": stage["stage"], "forces": stage["training"].get("forces", "conservative"),
                       "epochs_done": summary["epochs_done"], "epochs": RECIPES[recipe][k]["training"]["epochs"] if not args.toy else TOY_EPOCHS,
                       "finished": summary["finished"], "test": summary.get("test"),
                       "hours": [offset / 3600 + row["wall_seconds"] / 3600 for row in history],
                       "val_force_mae": [row["val_force_mae"] for row in history],
                       "val_energy_mae": [row["val_energy_mae"] for row in history]})
        offset += summary["wall_seconds"]
        if not summary["finished"]:
            break
    finished = len(stages) == len(RECIPES[recipe]) and stages[-1]["finished"]
    return {"stages": stages, "finished": finished, "wall_hours": offset / 3600, "test": stages[-1]["test"] if finished else None}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (recipe, data), colour in zip(result["recipes"].items(), ["tab:blue", "tab:red", "tab:green", "tab:purple"]):
        for stage in data["stages"]:
            direct = stage["forces"] == "direct"
            ax.plot(stage["hours"], stage["val_force_mae"], "--" if direct else "-", color=colour,
                    label=f"{recipe}: {stage['stage']}" + (" (direct forces)" if direct else ""))
    for reference in result["references"]:
        if "hours" in reference:
            ax.plot(reference["hours"], reference["val_force_mae"], ":", color="grey", label=reference["label"])
        else:
            ax.plot([reference["wall_hours"]], [reference["force_mae"]], "k*", ms=11, label=reference["label"])
    ax.axhline(result["goal_force_mae"], color="green", lw=0.8, label=f"goal ({result['goal_force_mae']:g} meV/Å)")
    ax.set(yscale="log", xlabel=f"training wall time (h; {result['threads']} thread(s) per run, two runs on 2 cores)", ylabel="validation force MAE (meV/Å)",
           title="Time to accuracy of training recipes (PET-style, 150 structures)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def references(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The bundled model's end point (its card) and the learning curve's 150-structure conservative run."""
    card = json.loads((WEIGHTS_DIR / "water-pet.json").read_text())
    out = [{"label": f"bundled water-pet (card; test {card['test']['force_mae']:.0f} meV/Å)", "wall_hours": card["training_wall_hours"],
            "force_mae": card["test"]["force_mae"], "source": "src/symprobe/weights/water-pet.json"}]
    if args.learning_curve.exists():
        point = json.loads(args.learning_curve.read_text())["models"].get("water-pet", {}).get("150")
        if point:
            out.append({"label": f"conservative, {point['steps']} steps (learning_curve.json)", "source": str(args.learning_curve.name),
                        "hours": [v["wall_seconds"] / 3600 for v in point["validation_along"]],
                        "val_force_mae": [v["force_mae"] for v in point["validation_along"]]})
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    begin = time.time()
    try:
        args = parse(argv)
        for recipe in args.recipes:
            stage_config(recipe, 0, args, None)  # checked before any training
        check_writable(args.work)
        check_writable(args.out.parent)
    except (ConfigError, OSError) as error:
        print(f"train_recipes.py: error: {error}", file=sys.stderr)
        return 2
    deadline = begin + 3600 * args.hours
    try:
        with ProcessPoolExecutor(max_workers=len(args.recipes)) as pool:  # at once: the same machine load for each
            list(pool.map(run_recipe, args.recipes, [args] * len(args.recipes), [deadline] * len(args.recipes)))
    except (Interrupted, KeyboardInterrupt) as stopped:
        print(f"train_recipes.py: {stopped}; rerun the same command to resume", file=sys.stderr)
        return 130
    result = {"script": "benchmarks/train_recipes.py", "arguments": argv, "torch": torch.__version__, "threads": args.threads,
              "load_average": list(os.getloadavg()), "toy": args.toy, "goal_force_mae": 50.0, "goal_energy_mae": 2.0,
              "units": "force MAE meV/Å, energy MAE meV/atom, wall time h",
              "recipes": {recipe: curve(recipe, args) for recipe in RECIPES if (stage_dir(recipe, 0, args) / "log.json").exists()},
              "references": references(args)}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({recipe: {"wall_hours": r["wall_hours"], "finished": r["finished"], "test": r["test"]}
                      for recipe, r in result["recipes"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
