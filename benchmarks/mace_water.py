"""MACE (mace-torch) as a peer of the bundled PET-style water models, trained on the same split.

Two steps (MACE is an optional extra: ``pip install 'symprobe[mace]'``)::

    python benchmarks/mace_water.py train --hours 0.83 --threads 1 --out runs/mace-water
    python benchmarks/mace_water.py evaluate --model runs/mace-water/best.model --out results/mace_water.json

Both steps take ``--device`` (cpu, cuda or cuda:N; default cpu): MACE trains, refits and evaluates there
(``mace_run_train --device``, ``MACECalculator(device=...)``; for cuda:N the MACE process selects GPU N).

``train`` writes ``OUT/{train,valid,test}.xyz``: the structures of ``symprobe.training.water_split()``
(``split_indices(190, 150, 20, 20, seed=0)``) with the labels as ``REF_energy`` (eV) and
``REF_forces`` (eV/Å). It trains one epoch through ``mace_run_train`` to measure the epoch time, then resumes
from that checkpoint (``--restart_latest``) for as many epochs as fit in ``--hours``, the last quarter in
MACE's stage two (lower learning rate, energy weight 1000). Every MACE process runs with ``--threads``
torch/OpenMP threads. A run that reaches ``--hours`` is stopped, and its model is then built from MACE's
latest checkpoint (the best by validation loss). Running ``train`` again on the same OUT resumes the
planned schedule from that checkpoint (MACE re-trains the checkpoint's epoch). ``OUT/training.json`` keeps
the plan, the measured epoch time and the wall time summed over sessions.

MACE's model is ``OUT/raw.model``. Its force-weighted loss leaves a large constant per-atom energy offset
(≈ 1 eV/atom after a few epochs on these cells, which all have the same composition), so ``OUT/best.model``
has the per-species energies refitted by least squares on the training-set residuals, as
``symprobe train --bundle`` does for the PET-style models; forces are unchanged. ``evaluate`` reports the
test energy MAE both ways.

``evaluate`` measures, in float32 like ``benchmarks/train_water.py``: energy MAE (meV/atom) and force
MAE/RMSE (meV/Å) on the 20 test structures, and the throughput (atom-steps/s) of one test cell (192 atoms)
and its 2×2×2 supercell (1536 atoms) with ``symprobe.models.speed.throughput`` (one call = energy, forces and stress,
as symprobe's ``TorchModel`` does for periodic cells; MACE's neighbour list included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = Path("liquid/cheng2019_revPBE0-D3_liquid_test190.extxyz")
NAME = "mace-water"  # MACE's --name: files mace-water.model, checkpoints/mace-water_run-SEED_epoch-N.pt
FILES = {"train": "train.xyz", "val": "valid.xyz", "test": "test.xyz"}

# A small MACE for CPU (31.7 k parameters): 32 invariant channels (max_L 0), edge harmonics to ℓ = 2, body
# order 4 (correlation 3), two interactions, r_max 5 Å; force-weighted loss, EMA, stage two for the last
# quarter. float32: a training step costs 2.3× less than in float64 on one CPU thread (measured).
HYPERS: dict = {
    "model": "MACE",
    "default_dtype": "float32",
    "r_max": 5.0,
    "num_radial_basis": 8,
    "num_cutoff_basis": 5,
    "num_channels": 32,
    "max_L": 0,
    "max_ell": 2,
    "correlation": 3,
    "num_interactions": 2,
    "radial_MLP": "[32, 32, 32]",
    "MLP_irreps": "16x0e",
    "E0s": "average",
    "loss": "weighted",
    "energy_weight": 1.0,
    "forces_weight": 100.0,
    "swa": True,
    "swa_energy_weight": 1000.0,
    "swa_forces_weight": 100.0,
    "swa_lr": 0.001,
    "ema": True,
    "ema_decay": 0.99,
    "lr": 0.01,
    "scheduler_patience": 5,
    "batch_size": 5,
    "valid_batch_size": 10,
    "error_table": "PerAtomMAE",
    "seed": 0,
}


def data_file() -> Path:
    """The liquid-water reference file (under ``$SYMPROBE_DATA`` or ``../shared/data``)."""
    from symprobe.structures import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / DATA).exists():
        raise SystemExit(f"{DATA}: reference data not found (set SYMPROBE_DATA to the shared data folder)")
    return root / DATA


def write_split(out: Path, subset: int | None = None) -> dict[str, list[int]]:
    """Write ``out/{train,valid,test}.xyz`` with ``REF_energy`` (eV) and ``REF_forces`` (eV/Å).

    ``subset`` keeps only the first N training and validation structures (smoke tests).
    """
    from ase.io import write

    from symprobe.files import replacing
    from symprobe.structures import read_structures, reference_labels
    from symprobe.training import water_split

    frames = read_structures(data_file())
    indices = water_split()
    if subset is not None:
        indices = {name: index if name == "test" else index[:subset] for name, index in indices.items()}
    out.mkdir(parents=True, exist_ok=True)
    for name, index in indices.items():
        labelled = []
        for k in index:
            atoms = frames[k].copy()
            energy, forces = reference_labels(frames[k])
            atoms.calc = None
            atoms.info = {"REF_energy": energy, "structure_index": k}
            atoms.arrays.pop("forces", None)
            atoms.arrays["REF_forces"] = forces
            labelled.append(atoms)
        with replacing(out / FILES[name]) as tmp:
            write(tmp, labelled, format="extxyz")
    return indices


def mace_flags(hypers: dict, max_num_epochs: int, start_swa: int, restart: bool, device: str = "cpu") -> list[str]:
    """Command-line arguments of ``mace_run_train`` for a run in the current directory on ``device``'s type
    (MACE takes cpu or cuda; :func:`run_mace` selects the GPU of a cuda:N)."""
    flags = [f"--name={NAME}", f"--device={device}", f"--train_file={FILES['train']}", f"--valid_file={FILES['val']}",
             "--energy_key=REF_energy", "--forces_key=REF_forces", f"--max_num_epochs={max_num_epochs}",
             f"--start_swa={start_swa}", "--plot=False", "--work_dir=."]
    for key, value in hypers.items():
        if value is True:
            flags.append(f"--{key}")
        elif value is not False:
            flags.append(f"--{key}={value}")
    return flags + (["--restart_latest"] if restart else [])


def run_mace(out: Path, flags: list[str], threads: int, timeout_s: float, gpu: int | None = None) -> bool:
    """Run ``mace_run_train FLAGS`` in ``out`` with ``threads`` threads (on CUDA device ``gpu`` if given);
    False if stopped at ``timeout_s``."""
    select = "" if gpu is None else f"torch.cuda.set_device({gpu}); "
    code = f"import torch; torch.set_num_threads({threads}); {select}from mace.cli.run_train import main; main()"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(out / "mace_run_train.log", "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} mace_run_train {' '.join(flags)}\n")
        log.flush()
        try:
            subprocess.run([sys.executable, "-c", code, *flags], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT,
                           timeout=max(timeout_s, 1.0), check=True)
        except subprocess.TimeoutExpired:
            return False
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"mace_run_train failed (exit {error.returncode}): see {out / 'mace_run_train.log'}") from None
    return True


def metrics_rows(out: Path, seed: int) -> list[dict]:
    """MACE's per-step ('opt') and per-validation ('eval') rows, all sessions appended."""
    path = out / "results" / f"{NAME}_run-{seed}_train.txt"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def epochs_trained(rows: list[dict]) -> int:
    """Training epochs done: one validation row per epoch (the 'Initial' rows have no epoch)."""
    return sum(1 for row in rows if row.get("mode") == "eval" and row.get("epoch") is not None)


def epoch_seconds(rows: list[dict], epoch: int) -> float:
    """Wall time (s) of the optimiser steps and the validation of ``epoch`` (its last occurrence)."""
    last = max(i for i, row in enumerate(rows) if row.get("mode") == "eval" and row.get("epoch") == epoch)
    steps = []
    for row in reversed(rows[:last]):
        if row.get("mode") != "opt" or row.get("epoch") != epoch:
            break
        steps.append(row["time"])
    return float(sum(steps) + rows[last]["time"])


def latest_checkpoint(out: Path, seed: int) -> Path:
    """The checkpoint MACE restarts from: its highest stage-two epoch, else its highest epoch."""
    pattern = re.compile(rf"^{re.escape(NAME)}_run-{seed}_epoch-(\d+)(_swa)?\.pt$")
    found = [(bool(m.group(2)), int(m.group(1)), p) for p in (out / "checkpoints").glob("*.pt") if (m := pattern.match(p.name))]
    if not found:
        raise SystemExit(f"{out / 'checkpoints'}: no MACE checkpoint to build the model from")
    return max(found)[2]


def model_from_checkpoint(out: Path, seed: int, target: Path) -> Path:
    """Save the weights of MACE's latest checkpoint (EMA-averaged) into a copy of the run's saved model."""
    import torch

    from symprobe.files import replacing

    template = out / f"{NAME}.model"
    if not template.exists():
        raise SystemExit(f"{template}: no saved MACE model to hold the checkpoint's weights")
    checkpoint = latest_checkpoint(out, seed)
    model = torch.load(template, map_location="cpu", weights_only=False)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    except Exception as error:  # a checkpoint cut off by the time limit
        raise SystemExit(f"{checkpoint}: unreadable MACE checkpoint ({error})") from None
    model.load_state_dict(state)
    with replacing(target) as tmp:
        torch.save(model, tmp)
    return checkpoint


def refit_offsets(model_path: Path, train_file: Path, target: Path, dtype: str, device: str = "cpu") -> dict:
    """Refit the per-species energies (E0s) on the model's training-set residuals (evaluated on ``device``)
    and save to ``target``.

    The same least-squares fit on composition as MACE's ``E0s=average``, applied to E_ref − E_model: it
    removes the constant per-atom offset that MACE's force-weighted loss leaves (all cells are (H2O)64),
    as ``symprobe train --bundle`` does for the PET-style models. Forces are unchanged.
    """
    import torch
    from ase.io import read
    from mace.calculators import MACECalculator

    from symprobe.files import replacing

    model = torch.load(model_path, map_location="cpu", weights_only=False)
    species = [int(z) for z in model.atomic_numbers]
    calculator = MACECalculator(models=torch.load(model_path, map_location="cpu", weights_only=False), device=device, default_dtype=dtype)
    frames = read(train_file, ":")
    counts = np.array([[np.count_nonzero(atoms.numbers == z) for z in species] for atoms in frames], dtype=float)
    residuals = []
    for atoms in frames:
        reference = atoms.info["REF_energy"]
        atoms.calc = calculator
        residuals.append(reference - atoms.get_potential_energy())
    residuals = np.array(residuals)
    offsets = np.linalg.lstsq(counts, residuals, rcond=None)[0]
    model.atomic_energies_fn.atomic_energies += torch.tensor(offsets, dtype=model.atomic_energies_fn.atomic_energies.dtype)
    with replacing(target) as tmp:
        torch.save(model, tmp)
    per_atom = counts.sum(axis=1)
    return {
        "offsets_eV": {str(z): float(d) for z, d in zip(species, offsets)},
        "train_energy_mae_meV_per_atom_before": 1e3 * float(np.mean(np.abs(residuals / per_atom))),
        "train_energy_mae_meV_per_atom_after": 1e3 * float(np.mean(np.abs((residuals - counts @ offsets) / per_atom))),
    }


def _write_json(path: Path, data: dict) -> None:
    from symprobe.files import atomic_write

    atomic_write(path, json.dumps(data, indent=2) + "\n")


def train(out: Path, hours: float, threads: int, hypers: dict, subset: int | None = None, max_epochs: int | None = None,
          device: str = "cpu") -> Path:
    """Train MACE on ``device`` within ``hours`` of wall time (this session) and return ``out/best.model``."""
    import torch

    from symprobe.files import replacing
    from symprobe.training.data import WATER_SPLIT

    where = torch.device(device)
    gpu = where.index if where.type == "cuda" else None
    start, budget = time.perf_counter(), 3600.0 * hours
    out.mkdir(parents=True, exist_ok=True)
    state_path, best = out / "training.json", out / "best.model"
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None and (state["hypers"] != hypers or state["subset"] != subset):
        raise SystemExit(f"{out}: holds a run with other hyper-parameters or subset; use another --out")
    if state is not None and "max_num_epochs" not in state:
        raise SystemExit(f"{out}: its timing epoch did not finish; use another --out")
    if state is not None and state["finished"]:
        print(f"{out}: training already finished ({state['epochs_trained']} epochs); model {best}")
        return best
    seed = int(hypers["seed"])
    session = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads, "device": device, "budget_s": budget}
    try:
        if state is None:
            split_written = write_split(out, subset)
            state = {"hypers": hypers, "subset": subset, "split": WATER_SPLIT, "n_train": len(split_written["train"]),
                     "n_val": len(split_written["val"]), "threads": threads, "mace_version": _mace_version(),
                     "torch": _torch_version(), "cpu": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})",
                     "sessions": [], "wall_time_s": 0.0, "finished": False}
            # One epoch to measure the epoch time; its checkpoint is where the real schedule starts. Stage two
            # is set up (start 1 = max_num_epochs) but never reached, so the checkpoint's optimiser carries
            # the stage-two learning rate that MACE needs when the resumed run gets there.
            probe_start = time.perf_counter()
            if not run_mace(out, mace_flags(hypers, 1, 1, restart=False, device=where.type), threads, budget, gpu):
                raise SystemExit(f"one MACE epoch did not finish within --hours {hours}")
            probe_wall = time.perf_counter() - probe_start
            state["epoch_seconds"] = epoch_seconds(metrics_rows(out, seed), 0)
            state["overhead_seconds"] = max(probe_wall - state["epoch_seconds"], 0.0)  # start-up, final evaluation, save
            remaining = budget - (time.perf_counter() - start) - state["overhead_seconds"]
            planned = max(1, math.floor(0.95 * remaining / state["epoch_seconds"]))
            state["max_num_epochs"] = min(planned, max_epochs) if max_epochs else planned
            state["start_swa"] = max(1, state["max_num_epochs"] * 3 // 4)
            print(f"one epoch: {state['epoch_seconds']:.1f} s (+{state['overhead_seconds']:.0f} s start-up and final evaluation); "
                  f"planned max_num_epochs {state['max_num_epochs']}, stage two from epoch {state['start_swa']}")
        time_left = budget - (time.perf_counter() - start) - state["overhead_seconds"]
        flags = mace_flags(hypers, state["max_num_epochs"], state["start_swa"], restart=True, device=where.type)
        finished = time_left > 0 and run_mace(out, flags, threads, time_left, gpu)
        raw = out / "raw.model"
        if finished:
            stage_two = out / f"{NAME}_stagetwo.model"
            source = stage_two if stage_two.exists() else out / f"{NAME}.model"
            with replacing(raw) as tmp:
                shutil.copyfile(source, tmp)
            state["model_source"] = source.name
        else:
            state["model_source"] = model_from_checkpoint(out, seed, raw).name
            print(f"--hours {hours} reached: {raw} holds the weights of {state['model_source']}")
        state["energy_refit"] = refit_offsets(raw, out / FILES["train"], best, hypers["default_dtype"], device)
        state["finished"] = finished
        return best
    finally:
        if state is not None:
            session["wall_s"] = time.perf_counter() - start
            state["sessions"].append(session)
            state["wall_time_s"] = sum(s["wall_s"] for s in state["sessions"])
            state["epochs_trained"] = epochs_trained(metrics_rows(out, seed))
            _write_json(state_path, state)


def evaluate(model_path: Path, out: Path, threads: int, timing_seconds: float = 5.0, device: str = "cpu") -> dict:
    """Test errors and throughput of a MACE model (float32) on ``device``, with its training record, written to ``out``."""
    import torch
    from ase.build import make_supercell
    from mace.calculators import MACECalculator

    from symprobe.models.base import CalculatorModel
    from symprobe.models.speed import throughput
    from symprobe.structures import reference_labels
    from symprobe.training import water_split, water_test_structures

    class FreshCalculatorModel(CalculatorModel):
        """Recompute on every call: ASE would return cached results for an unchanged structure."""

        def _predict(self, atoms):
            self.calculator.reset()
            return super()._predict(atoms)

    torch.set_num_threads(threads)
    if not model_path.exists():
        raise SystemExit(f"{model_path}: no such MACE model (run 'train' first)")
    calculator = MACECalculator(model_paths=str(model_path), device=device, default_dtype="float32")
    model = FreshCalculatorModel(calculator, name="MACE", species=[int(z) for z in calculator.z_table.zs])
    training_path = model_path.parent / "training.json"
    training = json.loads(training_path.read_text()) if training_path.exists() else None
    refit = None if training is None or model_path.name != "best.model" else training.get("energy_refit")
    offsets = {} if refit is None else {int(z): d for z, d in refit["offsets_eV"].items()}
    test = water_test_structures(data_file())
    energy_errors, raw_energy_errors, force_errors = [], [], []
    for atoms in test:
        energy, forces = reference_labels(atoms)
        prediction = model.predict(atoms)
        energy_errors.append((prediction.energy - energy) / len(atoms))
        raw_energy_errors.append(energy_errors[-1] - sum(offsets.get(int(z), 0.0) for z in atoms.numbers) / len(atoms))
        force_errors.append((prediction.forces - forces).ravel())
    force_errors = np.concatenate(force_errors)
    cell = test[0].copy()
    cell.calc = None
    result = {
        "model": f"MACE (mace-torch {_mace_version()})",
        "model_file": str(model_path),
        "split": "symprobe.training.split_indices(190, 150, 20, 20, seed=0), as the bundled models",
        "test_indices": water_split()["test"],
        "parameters": sum(p.numel() for p in calculator.models[0].parameters()),
        "invariant": True,
        "test": {
            "energy_mae": 1e3 * float(np.mean(np.abs(energy_errors))),
            "force_mae": 1e3 * float(np.mean(np.abs(force_errors))),
            "force_rmse": 1e3 * float(np.sqrt(np.mean(force_errors**2))),
        },
        "test_energy_mae_before_offset_refit": None if refit is None else 1e3 * float(np.mean(np.abs(raw_energy_errors))),
        "energy_refit": refit,
        "training_wall_hours": None if training is None else training["wall_time_s"] / 3600,
        "epochs": None if training is None else training["epochs_trained"],
        "hardware": None if training is None else (f"{training['threads']} thread(s) on {training['cpu']}, torch {training['torch']}, "
                                                   f"{training['hypers']['default_dtype']}"),
        "throughput_atom_steps_per_s": {
            "192": throughput(model, cell, timing_seconds),
            "1536": throughput(model, make_supercell(cell, 2 * np.eye(3)), timing_seconds),
        },
        "evaluation": "float32; throughput calls = energy, forces and stress (like TorchModel on periodic cells)",
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "hypers": None if training is None else training["hypers"],
        "training": training,
    }
    _write_json(out, result)
    return result


def _mace_version() -> str:
    import mace

    return mace.__version__


def _torch_version() -> str:
    import torch

    return torch.__version__


def _hyper(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in HYPERS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(HYPERS)}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    train_parser = steps.add_parser("train", help="train MACE on the symprobe split within a wall-time budget")
    train_parser.add_argument("--hours", type=float, required=True, help="wall-time budget of this session (h)")
    train_parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the MACE processes and the refit")
    train_parser.add_argument("--out", type=Path, default=REPO / "runs" / "mace-water")
    train_parser.add_argument("--hyper", type=_hyper, action="append", default=[], metavar="KEY=VALUE",
                              help="override one of the default hyper-parameters (repeatable)")
    train_parser.add_argument("--max-epochs", type=int, default=None, help="cap MACE's max_num_epochs, trained after the timing epoch (smoke tests)")
    train_parser.add_argument("--subset", type=int, default=None, help="first N train and val structures only (smoke tests)")
    train_parser.add_argument("--device", default="cpu", help="where MACE trains and refits: cpu (default), cuda or cuda:N")
    eval_parser = steps.add_parser("evaluate", help="test errors and throughput → JSON")
    eval_parser.add_argument("--model", type=Path, default=REPO / "runs" / "mace-water" / "best.model")
    eval_parser.add_argument("--out", type=Path, default=REPO / "results" / "mace_water.json")
    eval_parser.add_argument("--threads", type=int, default=1, help="torch threads")
    eval_parser.add_argument("--timing-seconds", type=float, default=5.0)
    eval_parser.add_argument("--device", default="cpu", help="where MACE runs: cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)
    from symprobe.models.device import DeviceError, resolve_device

    try:
        device = str(resolve_device(args.device))
    except DeviceError as error:
        parser.error(f"--device: {error}")
    if args.step == "train":
        import torch

        torch.set_num_threads(args.threads)
        hypers = {**HYPERS, **dict(args.hyper)}
        print(f"model: {train(args.out.resolve(), args.hours, args.threads, hypers, args.subset, args.max_epochs, device)}")
    else:
        print(json.dumps(evaluate(args.model, args.out, args.threads, args.timing_seconds, device), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
