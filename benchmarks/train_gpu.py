"""The GPU run-book (issue 15, part 1): the paper-size PET-style model and its invariant twin, trained in one
command of at most 9 minutes on one GPU, on the bundled models' split (150 train / 20 validation / 20 test,
seed 0, from configs/train_water_pet*.yaml).

Paper-size means the paper's PET hyper-parameters: cutoff 4 Å, d_model 128, 4 heads, 4 blocks × 2 layers,
feed-forward 512. Everything else (data, split, loss weights, augmentation) is the bundled configs', except
``--batch-size``, ``--lr`` and a 2-epoch warmup. Training is ``symprobe.training.train``, so each model's run
directory ``OUT/NAME`` holds ``checkpoint.pt`` and its logs, and a second call with the same ``--out`` resumes
(also from a checkpoint taken inside an epoch, by SIGINT/SIGTERM or by the time budget).

Per call and model:

1. a first call trains the two warmup epochs in strict float32 (whose learning rates do not depend on the
   epoch count); without ``--epochs`` the epoch count then fills the budget,
   ``epochs = done + ⌊0.9 × seconds left / seconds of the last epoch⌋``; an unfinished run keeps its target
   (and its schedule), a finished one is extended (its cosine schedule stretches to the new length);
2. the precision check: forces of the current weights on a few validation cells in each candidate precision
   (bf16 autocast; on CUDA also TF32 matrix products) against strict float32. Float32 noise is
   max |F(float32) − F(float64)|; a candidate is used only if max |F(candidate) − F(float32)| stays within
   ``NOISE_FACTOR`` × that noise, else training stays in strict float32. Decision and numbers go into the JSON;
3. training until the epochs are done or ``--minutes`` (minus ``RESERVE_SECONDS`` for the end) run out,
   checked before every step;
4. the held-out cells are evaluated (``test``), and the model is bundled with its card (``symprobe.training.bundle``)
   into ``OUT/weights`` as ``water-pet-large`` / ``water-pet-large-twin`` only if its held-out force MAE beats
   its bundled counterpart's card (water-pet, water-pet-twin) and any model already in ``OUT/weights``, which
   it then replaces (the JSON says so). Copy them into src/symprobe/weights by hand.

``OUT/train_gpu.json`` holds the device, torch version, budget, wall time and per model: epochs, precision
check, held-out force MAE (meV/Å), energy MAE (meV/atom) and the bundling decision. On CUDA the two models
train at once, in two processes sharing the GPU (``--jobs 2``; a signal to this process is passed on to both).

On a lent H200 (no network: ase and vesin come as wheels from ``benchmarks/gpu_wheels.sh``, the data file is
copied into the ignored folder ``.data``; see "Training on a GPU" in docs/about.md)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site:src python3 benchmarks/train_gpu.py --out runs/train_gpu \\
        --data .data/cheng2019_revPBE0-D3_liquid_test190.extxyz

``--toy`` trains a tiny model on 12 structures of ``--data`` with one thread: with ``--epochs 2 --device cpu``,
seconds on a CPU (the tests).
Bad input: one line on stderr, exit code 2; interrupted: exit code 130.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from symprobe.checks import ConfigError, read_yaml
from symprobe.files import check_writable, write_json
from symprobe.interrupt import Interrupted, deferred_signals
from symprobe.models.device import DeviceError, device_name, precision, resolve_device
from symprobe.models.pet import WEIGHTS_DIR, load_module
from symprobe.models.torch_model import energy_forces_stress
from symprobe.training import TrainConfig, bundle, load_samples, make_batch, make_config, train, training_split

ROOT = Path(__file__).resolve().parents[1]

MODELS = {"water-pet-large": "water-pet", "water-pet-large-twin": "water-pet-twin"}  # name → bundled counterpart
PAPER_MODEL = {"cutoff": 4.0, "width": 128, "heads": 4, "blocks": 4, "layers_per_block": 2, "feedforward": 512}
TOY_MODEL = {"cutoff": 3.5, "width": 16, "heads": 2, "blocks": 1, "layers_per_block": 1, "feedforward": 32,
             "radial_basis": 6, "angular_degree": 2}
TOY_SPLIT = {"train": 8, "val": 2, "test": 2, "seed": 0}
WARMUP_EPOCHS = 2  # the epochs that time the run are in the warmup, which does not depend on the epoch count
NOISE_FACTOR = 4.0  # a candidate precision may change forces by this many times float32's own round-off
CHECK_CELLS = 2  # validation cells in the precision check
RESERVE_SECONDS = 45.0  # kept for the end (offset refit, held-out evaluation, bundling); at most a tenth of --minutes
PAPER_PET = {"force_mae": 16.6, "energy_mae": 0.39}  # meV/Å, meV/atom: the paper's PET on 1303 structures
GOAL = {"force_mae": 25.0, "energy_mae": 1.0}  # issue 15, for the paper-size model on a GPU


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run directories, weights/ and train_gpu.json (resumed)")
    parser.add_argument("--minutes", type=float, default=8.5, help="wall-time budget of this call, minutes (default 8.5)")
    parser.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default cuda)")
    parser.add_argument("--data", type=Path, default=None, help="extended-XYZ file (default: the bundled configs' shared file)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch target (default: fill the budget)")
    parser.add_argument("--batch-size", type=int, default=4, help="structures per step (default 4)")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of the cosine schedule (default 5e-4)")
    parser.add_argument("--jobs", type=int, default=None, help="models trained at once, one process each (default: 2 on CUDA, else 1)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--to-beat", type=float, default=None,
                        help="held-out force MAE (meV/Å) to beat for bundling (default: the bundled counterpart's card)")
    parser.add_argument("--toy", action="store_true", help="tiny model on 12 structures, one thread (the CPU tests)")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # one model, in a child process
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)  # time.time() to stop by
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> list[str]:
    """The model names to train; :class:`ConfigError` for bad values (one line)."""
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or not names:
        raise ConfigError(f"--models: expected some of {', '.join(MODELS)}, got {args.models!r}")
    for flag, value in (("--minutes", args.minutes), ("--lr", args.lr), ("--batch-size", args.batch_size),
                        ("--epochs", args.epochs), ("--jobs", args.jobs)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} must be positive, got {value}")
    if args.data is not None and not args.data.is_file():
        raise ConfigError(f"--data: {args.data} is not a file")
    return names


def model_config(name: str, args: argparse.Namespace, epochs: int, threads: int) -> TrainConfig:
    """The training config of ``name``: the bundled model's config with the paper's (or toy) hyper-parameters."""
    invariant = name.endswith("-twin")
    base = read_yaml(ROOT / "configs" / ("train_water_pet_twin.yaml" if invariant else "train_water_pet.yaml"))
    data = {**base["data"], **({"path": str(args.data.resolve())} if args.data else {}), **(TOY_SPLIT if args.toy else {})}
    training = {**base["training"], "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr, "lr_min": args.lr / 100,
                "warmup_epochs": WARMUP_EPOCHS, "max_hours": None, "threads": threads, "device": args.device}
    model = {**base["model"], **(TOY_MODEL if args.toy else PAPER_MODEL)}
    return make_config({"name": name, "output_dir": str(args.out / name), "data": data, "model": model, "training": training},
                       base_dir=ROOT / "configs")


def epochs_target(done: int, saved_target: int | None, epoch_seconds: float, seconds_left: float) -> int:
    """Epochs to train to: an unfinished run keeps ``saved_target`` (its schedule stays as it was), else as
    many more epochs of ``epoch_seconds`` as fit into 90 % of ``seconds_left`` (at least one; the epochs of two
    processes sharing a device vary)."""
    if saved_target is not None and saved_target > done:
        return saved_target
    return done + max(1, int(0.9 * seconds_left / epoch_seconds))


def precision_check(checkpoint: Path, config: TrainConfig, device: torch.device, candidates: tuple[str, ...]) -> dict[str, Any]:
    """Max force differences (meV/Å) of each candidate precision against strict float32, on the model in
    ``checkpoint`` and ``CHECK_CELLS`` validation cells; the first candidate within ``NOISE_FACTOR`` × float32
    noise (max |F32 − F64|) is chosen, else float32."""
    samples = load_samples(config.data["path"], float(config.model["cutoff"]))
    split = training_split(config, len(samples))
    cells = [samples[k] for k in split["val"][:CHECK_CELLS]]

    def forces(dtype: torch.dtype, name: str) -> torch.Tensor:
        module = load_module(checkpoint).to(dtype).to(device).eval()
        graph, _ = make_batch(cells, None, dtype, device)
        with precision(name, device):
            return energy_forces_stress(module, graph)[1].detach().double().cpu()

    def difference(name: str) -> float | str:
        try:
            return 1000 * float((forces(torch.float32, name) - strict).abs().max())
        except RuntimeError as error:  # an op without a kernel in that precision: not a candidate
            return f"failed: {str(error).splitlines()[0]}"

    strict = forces(torch.float32, "float32")
    noise = 1000 * float((strict - forces(torch.float64, "float32")).abs().max())
    differences = {name: difference(name) for name in candidates}
    chosen = next((name for name, d in differences.items() if isinstance(d, float) and d <= NOISE_FACTOR * noise), "float32")
    return {"cells": len(cells), "float32_noise": noise, "tolerance": NOISE_FACTOR * noise, "difference_from_float32": differences,
            "units": "meV/Å, max over atoms and components", "chosen": chosen}


def bundle_reference(name: str, weights: Path, to_beat: float | None) -> dict[str, Any]:
    """The held-out force MAE (meV/Å) ``name`` must beat: ``to_beat``, else its bundled counterpart's card;
    and that of a model already bundled in ``weights`` (replaced only by a better one)."""
    card = json.loads((WEIGHTS_DIR / f"{MODELS[name]}.json").read_text())
    reference = {"to_beat": card["test"]["force_mae"] if to_beat is None else to_beat,
                 "source": f"{MODELS[name]}.json" if to_beat is None else "--to-beat", "existing": None}
    if (weights / f"{name}.json").exists():
        reference["existing"] = json.loads((weights / f"{name}.json").read_text())["test"]["force_mae"]
    return reference


def run_model(name: str, args: argparse.Namespace, deadline: float, threads: int) -> dict[str, Any]:
    """Train (or resume), check precision, evaluate and maybe bundle one model; the result, also written to
    ``OUT/NAME/train_gpu.json``."""
    begin = time.time()
    device = resolve_device(args.device)
    run = args.out / name
    checkpoint = run / "checkpoint.pt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False) if checkpoint.exists() else None
    config = model_config(name, args, epochs=args.epochs or WARMUP_EPOCHS, threads=threads)
    if saved is not None and saved["config"]["model"] != config.model:
        raise ConfigError(f"--out: {run} holds a run with other model hyper-parameters; choose another --out")
    reserve = min(RESERVE_SECONDS, 6 * args.minutes)  # at most a tenth of the budget

    def training_left() -> float:
        return deadline - reserve - time.time()

    result: dict[str, Any] = {"name": name, "resumed_from_epoch": saved["state"]["epoch"] if saved else None}
    history = saved["state"]["history"] if saved else []
    if not history:  # the first epochs, in strict float32, time an epoch and train the weights the precision check uses
        config.training["max_hours"] = max(training_left(), 1.0) / 3600
        train(config, resume=saved is not None, stop_after_epochs=WARMUP_EPOCHS, progress=False)
        history = json.loads((run / "log.json").read_text()) if (run / "log.json").exists() else []
    if args.epochs is None and history:
        saved_target = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"]["training"]["epochs"]
        config.training["epochs"] = epochs_target(len(history), saved_target, history[-1]["epoch_seconds"], training_left())
    result["precision_check"] = precision_check(checkpoint, config, device, ("bf16", "tf32") if device.type == "cuda" else ("bf16",))
    config.training["precision"] = result["precision_check"]["chosen"]
    config.training["max_hours"] = max(training_left(), 1.0) / 3600
    summary = train(config, resume=True, progress=False)
    result.update(epochs_target=config.training["epochs"], **{k: summary[k] for k in ("epochs_done", "finished", "best_epoch", "parameters")},
                  best_val_force_mae=summary["best_val_force_mae"] if summary["epochs_done"] else None,
                  training_wall_seconds=summary["wall_seconds"], test=summary.get("test"))
    result["bundle"] = maybe_bundle(name, config, summary, args)
    result["call_seconds"] = time.time() - begin
    write_json(run / "train_gpu.json", result)
    return result


def maybe_bundle(name: str, config: TrainConfig, summary: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Bundle into ``OUT/weights`` if the held-out force MAE beats the reference (see :func:`bundle_reference`)."""
    weights = args.out / "weights"
    decision = bundle_reference(name, weights, args.to_beat)
    mae = (summary.get("test") or {}).get("force_mae")  # None before the first epoch has ended
    bar = min(decision["to_beat"], math.inf if decision["existing"] is None else decision["existing"])
    decision.update(test_force_mae=mae, bundled=mae is not None and mae < bar)
    if decision["bundled"]:
        card = bundle(config, name, weights_dir=weights)
        (Path(config.output_dir) / "bundle-candidate.pt").unlink(missing_ok=True)  # the same weights as weights/NAME.pt
        decision.update(path=str(weights / f"{name}.pt"), replaced=decision["existing"], card_test=card["test"],
                        rotational_errors_float64=card["rotational_errors_float64"])
    return decision


def run_children(names: list[str], argv: list[str], deadline: float) -> list[int]:
    """Train each model in its own process (sharing the device); a SIGINT/SIGTERM here is passed on once, so
    each child writes its checkpoint. Returns the exit codes."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--deadline", repr(deadline)]
    children = [subprocess.Popen([*command, "--only", name], start_new_session=True) for name in names]
    with deferred_signals() as stop:
        forwarded = False
        while any(child.poll() is None for child in children):
            if stop.requested and not forwarded:
                for child in children:
                    if child.poll() is None:
                        child.send_signal(stop.signal)
                forwarded = True
            time.sleep(0.2)
    return [child.returncode for child in children]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    begin = time.time()
    deadline = args.deadline or begin + 60 * args.minutes
    try:
        names = check_arguments(args)
        device = resolve_device(args.device)
        try:
            check_writable(args.out)
        except OSError as error:
            raise ConfigError(str(error)) from None
        jobs = args.jobs or (len(names) if device.type == "cuda" else 1)
        threads = 1 if args.toy else max(1, (os.cpu_count() or 1) // jobs)
        if args.only:
            return finish_child(args, deadline, threads)
        if jobs > 1:
            codes = run_children(names, argv, deadline)
            results = [read_result(args.out / name, code) for name, code in zip(names, codes)]
        else:
            results = [run_model(name, args, time.time() + (deadline - time.time()) / (len(names) - k), threads)
                       for k, name in enumerate(names)]  # one after the other, each with an equal share of the time left
    except (ConfigError, DeviceError) as error:
        print(f"train_gpu.py: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(f"train_gpu.py: {stopped}", file=sys.stderr)
        return 130
    report = {"script": "benchmarks/train_gpu.py", "arguments": argv, "device": device_name(device), "torch": torch.__version__,
              "cuda": torch.version.cuda, "minutes_budget": args.minutes, "jobs": jobs, "wall_seconds": time.time() - begin,
              "toy": args.toy, "hypers": TOY_MODEL if args.toy else PAPER_MODEL, "paper_PET": PAPER_PET, "goal": GOAL,
              "units": "force MAE meV/Å, energy MAE meV/atom, times s", "models": results}
    write_json(args.out / "train_gpu.json", report)
    print(json.dumps(report, indent=1)[:6000])
    return 130 if any(r.get("exit_code") == 130 for r in results) else 1 if any("exit_code" in r for r in results) else 0


def finish_child(args: argparse.Namespace, deadline: float, threads: int) -> int:
    """One model in a child process: exit 0, or 130 when interrupted (its checkpoint is written)."""
    try:
        run_model(args.only, args, deadline, threads)
    except Interrupted as stopped:
        print(f"train_gpu.py [{args.only}]: {stopped}", file=sys.stderr)
        return 130
    return 0


def read_result(run: Path, code: int) -> dict[str, Any]:
    """A child's result; its exit code too when it did not finish."""
    result = json.loads((run / "train_gpu.json").read_text()) if code == 0 else {"name": run.name}
    return result if code == 0 else {**result, "exit_code": code}


if __name__ == "__main__":
    sys.exit(main())
