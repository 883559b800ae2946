"""What a training-time symmetry penalty buys on the bundled PET-style water model.

Three fine-tunes of ``builtin:water-pet`` on its own split (150/20/20, seed 0), same schedule and seed,
differing only in the penalty: none (the control: more training alone), the energy spread over random
rotations, and ORB's Equigrad (|∂E/∂θ|²). For the starting model and each fine-tune: test energy MAE
(meV/atom), force MAE/RMSE (meV/Å) and the rotational spread of energies (meV/cell) and forces (meV/Å) on
the test structures (float64, 8 random rotations, as ``benchmarks/train_water.py``); training wall time.
Runs live in ``runs/penalty-*`` (``--runs``) and resume (``symprobe.training``); the JSON is rewritten after each.
``--device`` (cpu, cuda or cuda:N; default cpu) is the fine-tunes' ``training.device`` and where the test
errors are evaluated; the rotational spreads (``symprobe.training.rotational_errors``) are computed on the CPU.

    python benchmarks/symmetry_penalty.py --out results/symmetry_penalty.json [--epochs 10] [--weight 1e5] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from symprobe.files import atomic_write
from symprobe.models.device import DeviceError, resolve_device
from symprobe.models.pet import builtin_path, load_module
from symprobe.training import evaluate, load_samples, make_config, rotational_errors, train

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "configs" / "train_water_pet_finetune.yaml"


def penalty_config(name: str, penalty: str | None, weight: float, epochs: int, runs: Path, device: str = "cpu") -> dict:
    """The stage-2 fine-tune config on ``device``, started from the bundled weights, with ``penalty`` (None: no penalty)."""
    raw = yaml.safe_load(BASE.read_text())
    raw["name"] = f"penalty-{name}"
    raw["output_dir"] = str(runs / f"penalty-{name}")
    raw["training"].update(epochs=epochs, lr=1e-4, lr_min=1e-6, warmup_epochs=0, max_hours=None,
                           init_from=str(builtin_path("water-pet")), symmetry_penalty=weight if penalty else 0.0,
                           penalty=penalty or "spread", device=device)
    return raw


def measure(module: torch.nn.Module, test, device: torch.device) -> dict:
    """Test errors (float32, on ``device``) and rotational spreads (float64, on the CPU, where
    ``rotational_errors`` runs)."""
    return {"test": evaluate(module.float().to(device), test, torch.float32),
            "rotational_errors_float64": rotational_errors(module.cpu(), test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "symmetry_penalty.json")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weight", type=float, default=1e5, help="symmetry_penalty weight, on (eV/atom)²")
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="where the fine-tunes are kept")
    parser.add_argument("--device", default="cpu", help="training.device of the fine-tunes and where test errors are "
                        "evaluated: cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    torch.set_num_threads(1)
    start = torch.load(builtin_path("water-pet"), map_location="cpu", weights_only=False)
    test_indices = start["card"]["split"]["test_indices"]
    result: dict = {"model": "builtin:water-pet", "epochs": args.epochs, "weight": args.weight, "device": str(device),
                    "runs": {}}

    def save() -> None:
        atomic_write(args.out, json.dumps(result, indent=2))

    for name, penalty in (("none", None), ("spread", "spread"), ("equigrad", "equigrad")):
        config = make_config(penalty_config(name, penalty, args.weight, args.epochs, args.runs, str(device)), base_dir=BASE.parent)
        samples = load_samples(config.data["path"], config.model["cutoff"])
        test = [samples[k] for k in test_indices]
        if "start" not in result:
            result["start"] = measure(load_module(builtin_path("water-pet")), test, device)
            save()
        out = Path(config.output_dir)
        summary = train(config, resume=(out / "checkpoint.pt").exists(), progress=False)
        result["runs"][name] = {"penalty": penalty, **measure(load_module(out / "best.pt"), test, device),
                                "wall_seconds": summary["wall_seconds"], "best_epoch": summary["best_epoch"]}
        print(f"{name}: {json.dumps(result['runs'][name])}", flush=True)
        save()


if __name__ == "__main__":
    main()
