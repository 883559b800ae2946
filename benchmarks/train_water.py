"""Accuracy and speed of the bundled PET-style water model and its invariant twin, measured in one run.

For each model: held-out energy MAE (meV/atom) and force MAE/RMSE (meV/Å) on the 20 test structures of
its model card and the same errors on its 150 training structures (is it under- or overfitting?), its
training wall time (from the card), inference throughput (atom-steps per second, energy + forces, float32)
on 192 and 1536 atoms, and the rotational errors on the test structures (float64, next to the paper's PET:
5.1 meV/cell, 2.0 meV/Å). Each test structure's errors are listed with its shortest O–O distance, and the
test errors are repeated on the test structures whose shortest O–O distance lies within the training
structures' range (a test cell outside it is an extrapolation).

The peers are measured in the same run, one after the other, with the same threads and device: a "MACE
(peer)" row by ``benchmarks/mace_water.py evaluate`` under ``--mace-python`` (mace-torch pins an e3nn that
the pretrained extra cannot share, so it lives in its own environment), and a "metatrain PET (reference)"
row by ``benchmarks/metatrain_pet.py evaluate`` under ``--metatrain-python`` (default: this Python, which
needs the metatomic extra). Their models (same split, trained by those scripts)
are kept in results/peer_models/; a peer whose model or Python is absent is left out, with a line on
stderr. The peers' own JSON files (mace_water.json, metatrain_pet.json) are rewritten beside ``--output``.
The machine's load average is recorded before and after the run.

``--device`` (cpu, cuda or cuda:N; default cpu) is where the test and training errors and the throughput
are measured; the rotational errors (``symprobe.training.rotational_errors``) are computed on the CPU.

    python benchmarks/train_water.py --output results/train_water.json --threads 1 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from ase.build import make_supercell

from symprobe.files import atomic_write
from symprobe.models.device import DeviceError, device_name, resolve_device
from symprobe.models.pet import BUILTIN_NAMES, builtin_path, load_module
from symprobe.models.speed import throughput
from symprobe.models.torch_model import TorchModel
from symprobe.structures import read_structures, shared_data_dir
from symprobe.training import evaluate, load_samples, rotational_errors, split_indices

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / "results" / "peer_models"
PAPER_PET = {"rotational_energy_per_cell_meV": 5.1, "rotational_force_meV_per_A": 2.0, "test_force_mae_meV_per_A": 16.6}


def shortest_oo(atoms) -> float:
    """The shortest O–O distance of a periodic cell (Å, minimum image)."""
    oxygens = atoms[atoms.numbers == 8]
    distances = oxygens.get_all_distances(mic=True)
    return float(distances[np.triu_indices(len(oxygens), 1)].min())


def benchmark_model(name: str, data_path: Path, timing_seconds: float, device: torch.device = torch.device("cpu")) -> dict:
    path = builtin_path(name)
    card = torch.load(path, map_location="cpu", weights_only=False)["card"]
    module = load_module(path).to(device=device, dtype=torch.float32).eval()
    samples = load_samples(data_path, module.cutoff)
    test = [samples[k] for k in card["split"]["test_indices"]]
    split = split_indices(len(samples), card["split"]["train"], card["split"]["val"], card["split"]["test"], card["split"]["seed"])
    if split["test"] != card["split"]["test_indices"]:
        raise SystemExit(f"{name}: the card's test indices do not follow from its split seed")
    frames = read_structures(data_path)
    cell = frames[card["split"]["test_indices"][0]]
    cell.calc = None
    model = TorchModel(module, name=name, species=module.species, dtype=torch.float32, device=device)
    training_oo = min(shortest_oo(frames[k]) for k in split["train"])
    test_oo = {k: shortest_oo(frames[k]) for k in split["test"]}
    in_range = [samples[k] for k in split["test"] if test_oo[k] >= training_oo]
    return {
        "parameters": module.n_parameters(),
        "invariant": bool(module.hypers["invariant"]),
        "test": evaluate(module, test, torch.float32),
        "train": evaluate(module, [samples[k] for k in split["train"]], torch.float32),  # fitting error: under- or overfit?
        "training_shortest_OO_A": training_oo,
        "test_per_structure": [{"index": k, "shortest_OO_A": test_oo[k], **evaluate(module, [samples[k]], torch.float32)}
                               for k in split["test"]],
        "test_within_training_OO_range": {"structures": len(in_range), **evaluate(module, in_range, torch.float32)},
        "training_wall_hours": card["training_wall_hours"],
        "epochs": card["epochs_done"],
        "hardware": card["hardware"],
        "throughput_atom_steps_per_s": {
            "192": throughput(model, cell, timing_seconds),
            "1536": throughput(model, make_supercell(cell, 2 * np.eye(3)), timing_seconds),
        },
        "rotational_errors_float64": rotational_errors(load_module(path), test),
    }


class PeerMissing(Exception):
    """A peer model, or the Python that runs it, is not on this machine."""


def mace_row(args: argparse.Namespace, out: Path, device: torch.device) -> dict:
    """The MACE row, measured now by ``mace_water.py evaluate`` in the MACE environment (written to ``out``)."""
    for needed in (args.mace, args.mace_python):
        if not needed.exists():
            raise PeerMissing(f"{needed} does not exist")
    subprocess.run([str(args.mace_python), str(HERE / "mace_water.py"), "evaluate", "--model", str(args.mace), "--out", str(out),
                    "--threads", str(torch.get_num_threads()), "--timing-seconds", str(args.timing_seconds),
                    "--device", str(device)], check=True, stdout=subprocess.DEVNULL)
    return {**json.loads(out.read_text()), "note": "trained on the same split by benchmarks/mace_water.py; measured in this run"}


def metatrain_row(args: argparse.Namespace, out: Path, device: torch.device) -> dict:
    """The metatrain PET row, measured now by ``metatrain_pet.py evaluate`` under ``--metatrain-python`` with this
    run's torch threads (written to ``out``)."""
    for needed in (args.metatrain, args.metatrain_python):
        if not needed.exists():
            raise PeerMissing(f"{needed} does not exist")
    subprocess.run([str(args.metatrain_python), str(HERE / "metatrain_pet.py"), "evaluate", "--model", str(args.metatrain),
                    "--out", str(out), "--timing-seconds", str(args.timing_seconds), "--device", str(device)],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    return {**json.loads(out.read_text()), "note": "the paper's architecture by metatrain, same split; measured in this run"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="results/train_water.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--timing-seconds", type=float, default=5.0)
    parser.add_argument("--device", default="cpu", help="where the models are evaluated: cpu (default), cuda or cuda:N")
    parser.add_argument("--mace", type=Path, default=PEERS / "mace-water" / "best.model",
                        help="MACE model from benchmarks/mace_water.py train (training.json beside it)")
    parser.add_argument("--mace-python", type=Path, default=HERE.parent / ".venv-mace" / "bin" / "python",
                        help="a Python with mace-torch and symprobe installed (default .venv-mace)")
    parser.add_argument("--metatrain", type=Path, default=PEERS / "metatrain-pet" / "model.pt",
                        help="metatrain PET exported by benchmarks/metatrain_pet.py train (training.json beside it)")
    parser.add_argument("--metatrain-python", type=Path, default=Path(sys.executable),
                        help="a Python with metatomic and symprobe installed (default: this one)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    if args.threads:
        torch.set_num_threads(args.threads)
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit("train_water.py: the shared data directory was not found (set $SYMPROBE_DATA)")
    data_path = shared / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz"
    output = Path(args.output)
    result = {
        "units": {"energy_mae": "meV/atom", "force_mae": "meV/Å", "force_rmse": "meV/Å", "rotational": "meV/cell, meV/Å"},
        "torch_threads": torch.get_num_threads(),
        "device": device_name(device),
        "load_average_before": list(os.getloadavg()),
        "paper_PET": PAPER_PET,
        "models": {name: benchmark_model(name, data_path, args.timing_seconds, device) for name in BUILTIN_NAMES},
    }
    for label, row, name in (("MACE (peer)", mace_row, "mace_water.json"), ("metatrain PET (reference)", metatrain_row, "metatrain_pet.json")):
        try:
            result["models"][label] = row(args, output.parent / name, device)
        except PeerMissing as missing:
            print(f"train_water.py: {label} left out: {missing}", file=sys.stderr)
    result["load_average_after"] = list(os.getloadavg())
    atomic_write(output, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
