"""The training loop (:func:`train`): the loss, the learning-rate schedule, checkpoints and exact resume,
time budgets and signals, and the logs and learning curve it writes."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from symprobe.checks import ConfigError
from symprobe.files import atomic_write, check_writable, replacing, save_figure
from symprobe.interrupt import StopRequest, deferred_signals
from symprobe.models.device import device_name, precision
from symprobe.models.pet import PETModule, load_module, save_model
from symprobe.models.torch_model import Graph, energy_forces_stress
from symprobe.training.baseline import fit_baseline, refit_baseline, refit_best, refit_offset
from symprobe.training.config import TrainConfig, device_for
from symprobe.training.data import Sample, load_samples, make_batch, module_device, random_o3, training_split
from symprobe.training.evaluation import evaluate, rotation_gradient


def _loss(module: torch.nn.Module, graph: Graph, labels: dict[str, torch.Tensor], t: dict[str, Any], rng: np.random.Generator, samples: Sequence[Sample], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss and the energy residuals E_ref − E_pred (S,) of the batch."""
    use_stress = t["stress_weight"] > 0
    if t["forces"] == "direct":
        (energies, forces), stress = module.direct_forces(graph), None
    else:
        energies, forces, stress = energy_forces_stress(module, graph, stress=use_stress, create_graph=True)
    loss = t["energy_weight"] * (((energies - labels["energy"]) / labels["n_atoms"]) ** 2).mean()
    loss = loss + t["force_weight"] * ((forces - labels["forces"]) ** 2).mean()
    if use_stress:
        loss = loss + t["stress_weight"] * ((stress - labels["stress"]) ** 2).mean()
    if t["symmetry_penalty"] > 0 and t["penalty"] == "spread":
        k = int(t["penalty_rotations"])
        rotations = [random_o3(rng) for _ in range(k * len(samples))]
        rotated, _ = make_batch([s for _ in range(k) for s in samples], rotations, dtype, module_device(module))
        spread = module(rotated).reshape(k, len(samples)) / labels["n_atoms"]
        loss = loss + t["symmetry_penalty"] * spread.var(dim=0, unbiased=False).mean()
    elif t["symmetry_penalty"] > 0:
        per_atom = rotation_gradient(module, graph, create_graph=True) / labels["n_atoms"][:, None]
        loss = loss + t["symmetry_penalty"] * (per_atom**2).sum(dim=1).mean()
    return loss, (labels["energy"] - energies).detach()


def init_weights(module: PETModule, path: Path, train_set: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4,
                 refit_reference: bool = True) -> None:
    """Load the weights of the model file at ``path`` into ``module`` (same hyper-parameters required, except
    ``direct_forces``: a force head is dropped, or starts fresh), its energy scale and per-species reference
    energies (eV/atom) with them; with ``refit_reference`` the references are re-fitted on ``train_set`` (least
    squares of the residuals on composition: labels from another method, e.g. DFT after q-TIP4P/F)."""
    source = load_module(path)
    differ = sorted(k for k in module.hypers if k != "direct_forces" and source.hypers.get(k) != module.hypers[k])
    if differ:
        raise ConfigError(f"training.init_from {path}: hyper-parameters {differ} differ from the config's model section")
    target = module.state_dict()
    module.load_state_dict({**target, **{k: v for k, v in source.state_dict().items() if k in target}})
    if refit_reference:
        refit_offset(module, train_set, dtype, batch_size)


def block_prefixes(block: int) -> list[str]:
    """State-dict prefixes of the parameters that make message-passing block ``block``'s tokens: its species
    embeddings, geometry encoder, transformer layers and the messages it receives (not its readout heads)."""
    own = [f"core.{part}.{block}." for part in ("geometry", "neighbour_species", "centre_species", "layers")]
    return own + ([f"core.message.{block - 1}.", f"core.centre_message.{block - 1}."] if block > 0 else [])


def freeze_early_blocks(module: PETModule, blocks: int) -> int:
    """Stop training the token-making parameters of the first ``blocks`` blocks (:func:`block_prefixes`); every
    readout head stays trainable. Returns the number of frozen parameters."""
    prefixes = tuple(p for block in range(blocks) for p in block_prefixes(block))
    frozen = 0
    for name, parameter in module.named_parameters():
        if name.startswith(prefixes):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def _schedule(t: dict[str, Any], steps_per_epoch: int):
    warmup = max(1, int(t["warmup_epochs"] * steps_per_epoch))
    total = max(warmup + 1, int(t["epochs"] * steps_per_epoch))
    floor = t["lr_min"] / t["lr"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if t["schedule"] == "plateau":
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def train(config: TrainConfig, resume: bool = False, stop_after_epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) a training; returns the final summary (also written to ``log.json``).

    ``stop_after_epochs`` ends this session after that many epochs (as a time budget would), leaving a
    checkpoint to resume from.
    """
    from symprobe.progress import progress_bar

    t = config.training
    out = Path(config.output_dir)
    checkpoint_path = out / "checkpoint.pt"
    if resume and not checkpoint_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint_path}")
    if not resume and checkpoint_path.exists():
        raise ConfigError(f"{out} already holds a training run; use --resume to continue it or choose another output_dir")
    check_writable(out)
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    dtype = torch.float64 if t["dtype"] == "float64" else torch.float32
    session_start = time.time()

    cutoff = float(config.model["cutoff"])
    samples = load_samples(config.data["path"], cutoff)
    split = training_split(config, len(samples))
    train_set = [samples[k] for k in split["train"]]
    val_set = [samples[k] for k in split["val"]]
    if t["stress_weight"] > 0 and any(s.stress is None or not s.periodic for s in train_set):
        raise ConfigError("training.stress_weight > 0 but some training structures have no stress label")

    device = device_for(str(t["device"]))
    torch.manual_seed(int(t["seed"]))
    module = PETModule(config.model).to(dtype)
    reference, scale = fit_baseline(train_set, module.species)
    module.set_baseline(torch.tensor(reference), scale)
    module.to(device)
    if t["init_from"] is not None and not resume:
        init_weights(module, Path(t["init_from"]), train_set, dtype, refit_reference=t["energy_reference"] == "refit")
    frozen = freeze_early_blocks(module, int(t["freeze_blocks"]))
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=t["lr"])
    steps_per_epoch = math.ceil(len(train_set) / t["batch_size"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(t, steps_per_epoch))
    warmup_steps = max(1, int(t["warmup_epochs"] * steps_per_epoch))
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=t["plateau_factor"], patience=t["plateau_patience"], min_lr=t["lr_min"])
    state = {"epoch": 0, "best_force_mae": math.inf, "best_epoch": -1, "history": [], "wall_seconds": 0.0}
    within: dict[str, Any] | None = None  # where a checkpoint taken inside an epoch left off
    if resume:
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # a GPU's checkpoint loads anywhere
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        plateau.load_state_dict(saved["plateau"])
        torch.set_rng_state(saved["torch_rng"])
        state, within = saved["state"], saved.get("within_epoch")
        if saved["split"] != split:
            raise ConfigError(f"--resume: the data split of {checkpoint_path} differs from the config's")
    state["hardware"] = hardware(device, t)
    start_step = f", step {within['step'] // t['batch_size']}" if within else ""
    print(f"[{config.name}] {module.n_parameters()} parameters ({frozen} frozen), {len(train_set)} train / {len(val_set)} val structures, "
          f"{steps_per_epoch} steps per epoch, starting at epoch {state['epoch']}{start_step}", flush=True)

    def save_checkpoint(within_epoch: dict[str, Any] | None = None) -> None:
        _atomic_torch_save(
            {"model": module.state_dict(), "hypers": module.hypers, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "plateau": plateau.state_dict(), "torch_rng": torch.get_rng_state(), "state": state, "split": split, "config": config.as_dict(),
             "within_epoch": within_epoch},
            checkpoint_path,
        )

    epoch_seconds: list[float] = []
    step_seconds: list[float] = []
    epochs_this_session = 0
    rows_at_start = len(state["history"])
    try:
        with deferred_signals() as stop:
            while state["epoch"] < t["epochs"]:
                if stop_after_epochs is not None and epochs_this_session >= stop_after_epochs:
                    break
                if _over_budget(t, session_start, epoch_seconds):
                    print(f"[{config.name}] time budget of {t['max_hours']:.3g} h reached after epoch {state['epoch']}", flush=True)
                    break
                epoch = state["epoch"]
                rng = np.random.default_rng([int(t["seed"]), epoch])
                order = rng.permutation(len(train_set))
                done = within or {"step": 0, "losses": [], "residuals": [], "seconds": 0.0}
                within = None
                if "rng" in done:
                    rng.bit_generator.state = done["rng"]  # where the stopped epoch's draws left off
                losses, residuals = done["losses"], done["residuals"]
                seen = [train_set[k] for k in order[: done["step"]]]
                start = time.time() - done["seconds"]
                module.train()
                batches = range(done["step"], len(order), t["batch_size"])
                bar = progress_bar(batches, desc=f"{config.name} epoch {epoch + 1}/{t['epochs']}", enabled=progress, in_logs=False)
                for b in bar:
                    stopping = stop.requested or _over_budget(t, session_start, step_seconds)
                    if stopping or (b > done["step"] and (b // t["batch_size"]) % t["checkpoint_steps"] == 0):
                        save_checkpoint({"step": b, "rng": rng.bit_generator.state, "losses": losses, "residuals": residuals, "seconds": time.time() - start})
                    if stopping:
                        break
                    step_start = time.time()
                    batch = [train_set[k] for k in order[b : b + t["batch_size"]]]
                    rotations = [random_o3(rng) for _ in batch] if t["augmentation"] else None
                    graph, labels = make_batch(batch, rotations, dtype, device)
                    with precision(t["precision"], device):
                        loss, residual = _loss(module, graph, labels, t, rng, batch, dtype)
                        optimizer.zero_grad()
                        loss.backward()
                    residuals.extend(residual.double().tolist())
                    seen.extend(batch)
                    optimizer.step()
                    if t["schedule"] == "cosine" or scheduler.last_epoch < warmup_steps:
                        scheduler.step()  # in plateau mode only the warmup is stepwise
                    losses.append(loss.item())
                    bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                    step_seconds.append(time.time() - step_start)
                bar.close()
                if len(seen) < len(order):
                    where = f"in epoch {epoch + 1} after {len(seen) // t['batch_size']} of {steps_per_epoch} steps"
                    _interrupted(stop, where, checkpoint_path)
                    print(f"[{config.name}] time budget of {t['max_hours']:.3g} h reached {where}, saved in {checkpoint_path}", flush=True)
                    break
                refit_baseline(module, seen, residuals)
                module.eval()
                metrics = evaluate(module, val_set, dtype, direct=t["forces"] == "direct")
                if t["schedule"] == "plateau" and epoch >= t["warmup_epochs"]:
                    plateau.step(metrics["force_mae"])
                seconds = time.time() - start
                epoch_seconds.append(seconds)
                state["wall_seconds"] += seconds
                state["epoch"] = epoch + 1
                row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
                       **{f"val_{k}": v for k, v in metrics.items()}, "epoch_seconds": seconds, "wall_seconds": state["wall_seconds"]}
                state["history"].append(row)
                if metrics["force_mae"] < state["best_force_mae"]:
                    state["best_force_mae"], state["best_epoch"] = metrics["force_mae"], epoch + 1
                    save_model(module, out / "best.pt", card={"epoch": epoch + 1, "val": metrics, "config": config.as_dict(), "split": split})
                save_checkpoint()
                _write_logs(out, state["history"])
                epochs_this_session += 1
                _interrupted(stop, f"after epoch {state['epoch']}", checkpoint_path)
                print(f"[{config.name}] epoch {epoch + 1}: loss {row['train_loss']:.4g}, val energy MAE {metrics['energy_mae']:.2f} meV/atom, "
                      f"force MAE {metrics['force_mae']:.1f} meV/Å, RMSE {metrics['force_rmse']:.1f} meV/Å, lr {row['lr']:.2e}, {seconds:.1f} s", flush=True)
    finally:  # once per session: a plot takes longer than a GPU epoch
        if len(state["history"]) > rows_at_start:
            plot_learning_curve(state["history"], out / "learning_curve.png")

    summary = {"name": config.name, "epochs_done": state["epoch"], "best_epoch": state["best_epoch"],
               "best_val_force_mae": state["best_force_mae"], "wall_seconds": state["wall_seconds"], "parameters": module.n_parameters(),
               "frozen_parameters": frozen,
               "split": split, "finished": state["epoch"] >= t["epochs"]}
    if (out / "best.pt").exists() and summary["finished"]:
        refit_best(out / "best.pt", train_set, dtype, device)
    if split["test"] and (out / "best.pt").exists():
        best = load_module(out / "best.pt").to(dtype).to(device).eval()
        summary["test"] = evaluate(best, [samples[k] for k in split["test"]], dtype)
        atomic_write(out / "test_metrics.json", json.dumps(summary["test"], indent=2))
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _over_budget(t: dict[str, Any], session_start: float, seconds: Sequence[float]) -> bool:
    """Whether one more of the units timed in ``seconds`` (steps or epochs of this session, s) would end past
    ``training.max_hours``; never before one of them has run, so every session makes progress."""
    if t["max_hours"] is None or not seconds:
        return False
    return time.time() - session_start + max(seconds) > 3600 * float(t["max_hours"])


def hardware(device: torch.device, t: dict[str, Any]) -> str:
    """Where and in which precision training ``t`` runs, as the model card gives it."""
    import platform

    where = device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    return f"{where}, torch {torch.__version__}, {t['dtype'] if t['precision'] == 'float32' else t['precision']}"


def _interrupted(stop: StopRequest, where: str, checkpoint_path: Path) -> None:
    """Raise ``Interrupted`` if a signal came; the checkpoint was just written (``where`` says at which point)."""
    if stop.requested:
        raise stop.interrupted(f"stopped {where}, saved in {checkpoint_path}; continue with --resume")


def _write_logs(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write(out / "log.json", json.dumps(history, indent=2))
    with replacing(out / "log.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def plot_learning_curve(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation force/energy errors against epoch (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.semilogy(epochs, [row["train_loss"] for row in history])
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.semilogy(epochs, [row["val_force_mae"] for row in history], label="force MAE (meV/Å)")
    right.semilogy(epochs, [row["val_energy_mae"] for row in history], label="energy MAE (meV/atom)")
    right.set(xlabel="epoch", title="validation")
    right.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
