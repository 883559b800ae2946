"""Bundling a trained model: the best model of a run copied into the package (or a folder) with its model
card (``NAME.json`` and ``NAME.md``: test errors in meV/atom and meV/Å, rotational errors, training stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from symprobe.checks import ConfigError
from symprobe.files import atomic_write
from symprobe.models.pet import load_module, save_model
from symprobe.training.baseline import refit_best
from symprobe.training.config import TrainConfig, device_for
from symprobe.training.data import load_samples
from symprobe.training.evaluation import evaluate, rotational_errors
from symprobe.training.loop import hardware


def bundle(config: TrainConfig, name: str, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """Copy the best model of ``config``'s run into the package as built-in ``name`` (or into ``weights_dir``),
    with a model card (``name.json`` and ``name.md``) whose errors are computed here, on ``training.device``,
    on the run's test structures; for a config with ``pretrain``, its fine-tune stage's model."""
    from symprobe.models.pet import BUILTIN_NAMES, WEIGHTS_DIR
    from symprobe.training.stages import fine_tune_stage

    config = fine_tune_stage(config)

    if weights_dir is None and name not in BUILTIN_NAMES:
        raise ConfigError(f"bundle name {name!r} is not a built-in name ({', '.join(BUILTIN_NAMES)})")
    out = Path(config.output_dir)
    for needed in ("best.pt", "checkpoint.pt"):
        if not (out / needed).exists():
            raise ConfigError(f"{out / needed} does not exist: train first ({config.source or 'config'})")
    best_file = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    state, split = checkpoint["state"], checkpoint["split"]
    samples = load_samples(config.data["path"], float(config.model["cutoff"]))
    staged = out / "bundle-candidate.pt"
    save_model(load_module(out / "best.pt"), staged, card=best_file.get("card"))
    device = device_for(str(config.training["device"]))
    refit_best(staged, [samples[k] for k in split["train"]], torch.float32, device)
    module = load_module(staged).to(torch.float32).to(device).eval()
    test = [samples[k] for k in split["test"]]
    card = {
        "name": name,
        "architecture": "PET-style point-edge transformer" + (" (exactly invariant twin)" if module.hypers["invariant"] else " (unconstrained)"),
        "parameters": module.n_parameters(),
        "hypers": module.hypers,
        "species": module.species,
        "data": {"path": Path(config.data["path"]).name, "structures": len(samples), "units": "eV, Å",
                 "reference": "revPBE0-D3 liquid water, Cheng et al. PNAS 116, 1110 (2019); test set of Langer et al. 2024"},
        "split": {"seed": config.data["seed"], "train": len(split["train"]), "val": len(split["val"]), "test": len(split["test"]),
                  "test_indices": split["test"]},
        "training": config.training,
        "epochs_done": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stages": (stages := training_stages(config, state["epoch"], state["best_epoch"], state["wall_seconds"])),
        "training_wall_hours": sum(stage["wall_seconds"] or 0.0 for stage in stages) / 3600,
        "hardware": state.get("hardware") or hardware(torch.device("cpu"), config.training),
        "validation": best_file["card"].get("val"),
        "test": {**evaluate(module, test, torch.float32), "units": "energy meV/atom, forces meV/Å", "structures": len(test)},
        "rotational_errors_float64": {**rotational_errors(load_module(staged).to(device), test), "units": "meV/cell, meV/Å",
                                      "paper_PET": {"energy_per_cell": 5.1, "force": 2.0}},
    }
    target = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    target.mkdir(parents=True, exist_ok=True)
    save_model(module.cpu(), target / f"{name}.pt", card=card)
    atomic_write(target / f"{name}.json", json.dumps(card, indent=2))
    atomic_write(target / f"{name}.md", model_card_markdown(card, config))
    return card


def training_stages(config: TrainConfig, epochs: int, best_epoch: int, wall_seconds: float) -> list[dict[str, Any]]:
    """The training stages that led to ``config``'s best model, earliest first, following ``init_from``:
    each with its epochs, best epoch, wall time (s) and lr schedule. An earlier stage counts up to the epoch
    whose weights were carried on (its wall time from that run's ``log.json``)."""
    stages = [{"output_dir": str(config.output_dir), "epochs": epochs, "best_epoch": best_epoch, "wall_seconds": wall_seconds,
               "lr": config.training["lr"], "lr_min": config.training["lr_min"], "init_from": config.training["init_from"]}]
    source = config.training["init_from"]
    while source is not None and Path(source).exists():
        card = torch.load(source, map_location="cpu", weights_only=False).get("card", {})
        run = card.get("config", {})
        log = Path(source).parent / "log.json"
        rows = json.loads(log.read_text()) if log.exists() else []
        wall = next((row["wall_seconds"] for row in rows if row["epoch"] == card.get("epoch")), None)
        training = run.get("training", {})
        stages.insert(0, {"output_dir": run.get("output_dir"), "epochs": card.get("epoch"), "best_epoch": card.get("epoch"),
                          "wall_seconds": wall, "lr": training.get("lr"), "lr_min": training.get("lr_min"),
                          "init_from": training.get("init_from")})
        source = training.get("init_from")
    return stages


def model_card_markdown(card: dict[str, Any], config: TrainConfig) -> str:
    """The model card as Markdown (every number comes from ``card``)."""
    test, rot, h = card["test"], card["rotational_errors_float64"], card["hypers"]
    source = config.source or "the training config"
    return f"""# {card['name']}: {card['architecture']}

Generated by `symprobe train {source} --bundle {card['name']}`; numbers computed by code (see `{card['name']}.json`).

| | |
|---|---|
| parameters | {card['parameters']} |
| cutoff | {h['cutoff']} Å (smooth switching over the last {h['cutoff_width']} Å) |
| width / heads / blocks × layers / feed-forward | {h['width']} / {h['heads']} / {h['blocks']} × {h['layers_per_block']} / {h.get('feedforward') or 2 * h['width']} |
| invariant inputs only | {h['invariant']} |
| species | {card['species']} |
| data | {card['data']['path']} ({card['data']['reference']}) |
| split (seed {card['split']['seed']}) | {card['split']['train']} train / {card['split']['val']} validation / {card['split']['test']} test |
| augmentation | {card['training']['augmentation']} (one Haar rotation per structure per epoch, inversion with probability ½) |
| loss weights | energy/atom {card['training']['energy_weight']}, forces {card['training']['force_weight']} |
| optimiser | Adam, lr {card['training']['lr']} → {card['training']['lr_min']} ({card['training']['schedule']}), batch {card['training']['batch_size']} |
| epochs | {' + '.join(str(stage['epochs']) for stage in card['stages'])} (best validation force MAE at epoch {card['best_epoch']} of the last stage) |
| stages | {'; '.join(f"{stage['epochs']} epochs, lr {stage['lr']} → {stage['lr_min']}" + (' (from the previous stage)' if stage['init_from'] else '') for stage in card['stages'])} |
| training wall time | {card['training_wall_hours']:.2f} h in all on {card['hardware']} |

## Held-out test structures ({test['structures']})
| energy MAE (meV/atom) | force MAE (meV/Å) | force RMSE (meV/Å) |
|---|---|---|
| {test['energy_mae']:.2f} | {test['force_mae']:.1f} | {test['force_rmse']:.1f} |

## Rotational errors on the test structures (float64, {rot['rotations']} random rotations each)
RMS deviation from the rotational mean: energy {rot['energy_rms_per_cell']:.3g} meV/cell, forces {rot['force_rms']:.3g} meV/Å
(the paper's PET: 5.1 meV/cell and 2.0 meV/Å).
"""
