"""Training: exact resume, learning on data labelled by a known potential, symmetry penalty, bad configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from symprobe.models.pet import BUILTIN_NAMES, WEIGHTS_DIR, load_module
from symprobe.testing import write_labelled_water
from symprobe.training import (ConfigError, bundle, load_samples, make_batch, make_config, random_o3, rotation_gradient,
                               split_indices, train, training_split, water_split)
from symprobe.training.data import WATER_SPLIT
from symprobe.training.loop import _loss

SMALL_MODEL = dict(width=16, heads=2, blocks=2, layers_per_block=1, radial_basis=6, angular_degree=2, cutoff=3.5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def water_data(tmp_path_factory) -> Path:
    """14 disordered 8-molecule periodic boxes labelled by q-TIP4P/F, as extended XYZ."""
    return write_labelled_water(tmp_path_factory.mktemp("data") / "water.extxyz", 14)


def config(data_path, out, model=None, **training):
    return make_config(
        {
            "name": "tiny",
            "output_dir": str(out),
            "data": {"path": str(data_path), "train": 8, "val": 4, "test": 2, "seed": 1},
            "model": {**SMALL_MODEL, **(model or {})},
            "training": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 0.5, "threads": 1, **training},
        }
    )


def test_resumed_training_equals_uninterrupted(water_data, tmp_path):
    straight = train(config(water_data, tmp_path / "a"), progress=False)
    train(config(water_data, tmp_path / "b"), stop_after_epochs=1, progress=False)
    assert json.loads((tmp_path / "b" / "log.json").read_text())[-1]["epoch"] == 1
    resumed = train(config(water_data, tmp_path / "b"), resume=True, progress=False)
    assert resumed["epochs_done"] == straight["epochs_done"] == 2
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    history_a = [{k: v for k, v in row.items() if "seconds" not in k} for row in a["state"]["history"]]
    history_b = [{k: v for k, v in row.items() if "seconds" not in k} for row in b["state"]["history"]]
    assert history_a == history_b
    assert resumed["test"] == straight["test"]
    for name in ("log.csv", "learning_curve.png", "best.pt", "test_metrics.json"):
        assert (tmp_path / "b" / name).exists()


def test_time_budget_stops_inside_epochs_and_resumes_bit_for_bit(water_data, tmp_path):
    """A budget shorter than one step ends every session after its first step, inside an epoch; sessions resumed
    from those checkpoints end where one uninterrupted run ends, bit for bit."""
    straight = train(config(water_data, tmp_path / "a"), progress=False)
    sessions = [train(config(water_data, tmp_path / "b", max_hours=1e-9), progress=False)]
    while not sessions[-1]["finished"]:
        sessions.append(train(config(water_data, tmp_path / "b", max_hours=1e-9), resume=True, progress=False))
        assert len(sessions) <= 4  # 2 epochs of 2 steps, one step per session
    assert len(sessions) == 4 and [s["epochs_done"] for s in sessions] == [0, 1, 1, 2]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    assert [row["val_force_mae"] for row in a["state"]["history"]] == [row["val_force_mae"] for row in b["state"]["history"]]
    assert sessions[-1]["test"] == straight["test"] and b["within_epoch"] is None


def test_a_run_killed_inside_an_epoch_resumes_bit_for_bit_from_its_last_periodic_checkpoint(water_data, tmp_path, monkeypatch):
    """``checkpoint_steps: 1`` writes a checkpoint before every step but an epoch's first; a copy of the run directory as it was when one
    inside epoch 2 was written (what a SIGKILL just after it leaves) resumes to the uninterrupted run's end, bit for bit."""
    import shutil

    from symprobe.training import loop

    straight = train(config(water_data, tmp_path / "a", batch_size=2), progress=False)
    written, save = [], loop._atomic_torch_save

    def save_and_keep_a_copy(obj, path):
        save(obj, path)
        if obj["within_epoch"] is not None:
            written.append(shutil.copytree(path.parent, tmp_path / f"copy-{len(written)}"))

    monkeypatch.setattr(loop, "_atomic_torch_save", save_and_keep_a_copy)
    train(config(water_data, tmp_path / "b", batch_size=2, checkpoint_steps=1), progress=False)
    monkeypatch.undo()
    saved = [torch.load(path / "checkpoint.pt", weights_only=False) for path in written]
    assert [(s["state"]["epoch"], s["within_epoch"]["step"]) for s in saved] == [(0, 2), (0, 4), (0, 6), (1, 2), (1, 4), (1, 6)]
    shutil.copytree(written[4], tmp_path / "c")  # epoch 2, after 2 of its 4 steps
    resumed = train(config(water_data, tmp_path / "c", batch_size=2, checkpoint_steps=1), resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    c = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(value, c["model"][key]) for key, value in a["model"].items())
    assert [row["val_force_mae"] for row in a["state"]["history"]] == [row["val_force_mae"] for row in c["state"]["history"]]
    assert resumed["test"] == straight["test"]


def test_a_gpu_checkpoint_resumes_and_bundles_on_cpu(water_data, tmp_path, monkeypatch):
    """Files written on a GPU tag their tensors cuda:0; tagged so here, a plain ``torch.load`` on a machine without
    CUDA refuses them, while resuming, the test evaluation and bundling (which load onto the CPU) go on."""
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    train(config(water_data, tmp_path / "run"), stop_after_epochs=1, progress=False)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    summary = train(config(water_data, tmp_path / "run"), resume=True, progress=False)
    assert summary["epochs_done"] == 2 and summary["test"]["force_mae"] > 0
    card = bundle(config(water_data, tmp_path / "run"), "tiny", weights_dir=tmp_path / "weights")
    assert card["hardware"].startswith(f"{os.cpu_count()} CPU cores") and card["hardware"].endswith("float32")
    assert torch.load(tmp_path / "weights" / "tiny.pt", weights_only=False)["state_dict"]["core.energy_scale"].device.type == "cpu"


def test_training_lowers_validation_error(water_data, tmp_path):
    summary = train(config(water_data, tmp_path / "run", epochs=20, batch_size=2, lr=1e-2, augmentation=True), progress=False)
    history = json.loads((tmp_path / "run" / "log.json").read_text())
    untrained = load_samples(water_data, SMALL_MODEL["cutoff"])
    split = summary["split"]
    # the untrained model predicts zero forces: its force MAE is the mean |F component| of the validation set
    zero_mae = 1000 * np.mean(np.abs(np.concatenate([untrained[k].forces.ravel() for k in split["val"]])))
    assert summary["best_val_force_mae"] < 0.6 * zero_mae
    assert history[-1]["val_force_mae"] < history[0]["val_force_mae"]
    model = load_module(tmp_path / "run" / "best.pt")
    assert model.core.species_energy.abs().sum() > 0  # the composition baseline was fitted


def test_init_from_starts_where_the_source_model_ended(water_data, tmp_path):
    source = train(config(water_data, tmp_path / "source", epochs=3, batch_size=2, lr=1e-2), progress=False)
    best = tmp_path / "source" / "best.pt"
    tuned_config = config(water_data, tmp_path / "tuned", epochs=1, lr=1e-12, lr_min=1e-12, init_from=str(best))
    frozen = train(tuned_config, progress=False)
    fresh = train(config(water_data, tmp_path / "fresh", epochs=1, lr=1e-12, lr_min=1e-12), progress=False)
    # forces do not depend on the re-fitted composition offset, so a frozen fine-tune keeps the source's error
    assert frozen["best_val_force_mae"] == pytest.approx(source["best_val_force_mae"], rel=1e-4)
    assert abs(fresh["best_val_force_mae"] - source["best_val_force_mae"]) > 1.0  # meV/Å: the check can fail
    # the bundled model card records both stages and their summed wall time
    card = bundle(tuned_config, "tiny", weights_dir=tmp_path / "weights")
    assert [stage["epochs"] for stage in card["stages"]] == [source["best_epoch"], 1]  # up to the epoch carried on
    source_wall = json.loads((tmp_path / "source" / "log.json").read_text())[source["best_epoch"] - 1]["wall_seconds"]
    assert card["training_wall_hours"] * 3600 == pytest.approx(source_wall + frozen["wall_seconds"])
    assert f"{source['best_epoch']} + 1" in (tmp_path / "weights" / "tiny.md").read_text()
    assert load_module(tmp_path / "weights" / "tiny.pt").hypers == load_module(best).hypers
    with pytest.raises(ConfigError, match="hyper-parameters \\['width'\\] differ"):
        cfg = config(water_data, tmp_path / "wide", init_from=str(best))
        cfg.model["width"] = 32
        train(cfg, progress=False)
    with pytest.raises(ConfigError, match="training.init_from: model file .* does not exist"):
        config(water_data, tmp_path / "x", init_from=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("invariant", [False, True])
def test_direct_forces_are_equivariant_for_the_twin_and_leave_the_energy_alone(water_data, invariant):
    from symprobe.models.pet import PETModule

    cfg = config(water_data, "unused")
    torch.manual_seed(1)
    module = PETModule({**cfg.model, "invariant": invariant, "direct_forces": True}).double()
    with torch.no_grad():
        for head in [*module.core.force_head, *module.core.atom_head]:
            head[-1].weight.normal_(0, 0.3)
    plain = PETModule({**cfg.model, "invariant": invariant}).double()
    plain.load_state_dict({k: v for k, v in module.state_dict().items() if not k.startswith("core.force_head")})
    sample = load_samples(water_data, module.cutoff)[0]
    R = random_o3(np.random.default_rng(5))
    energies, forces = module.direct_forces(make_batch([sample], None, torch.float64)[0])
    rotated_energies, rotated_forces = module.direct_forces(make_batch([sample], [R], torch.float64)[0])
    assert torch.equal(energies, plain(make_batch([sample], None, torch.float64)[0]))  # the head never enters E
    assert forces.abs().max() > 1e-3  # eV/Å: a head that does something
    turned = (forces @ torch.as_tensor(R).T - rotated_forces).abs().max()  # F(R x) − R F(x)
    assert (turned < 1e-10) if invariant else (turned > 1e-4)


def test_direct_pretraining_then_conservative_fine_tuning(water_data, tmp_path):
    direct = config(water_data, tmp_path / "direct", model={"direct_forces": True}, epochs=3, batch_size=2, lr=1e-2, forces="direct")
    first = train(direct, progress=False)
    history = json.loads((tmp_path / "direct" / "log.json").read_text())
    assert history[-1]["val_force_mae"] < history[0]["val_force_mae"]  # the head learns (validated on its forces)
    best = tmp_path / "direct" / "best.pt"
    assert load_module(best).hypers["direct_forces"] and first["test"]["force_mae"] > 0  # test: −∂E/∂x
    tuned = train(config(water_data, tmp_path / "tuned", epochs=1, lr=1e-12, lr_min=1e-12, init_from=str(best)), progress=False)
    source = load_module(best).double()
    target = load_module(tmp_path / "tuned" / "best.pt").double()
    assert not target.hypers["direct_forces"] and not any(k.startswith("core.force_head") for k in target.state_dict())
    sample = load_samples(water_data, source.cutoff)[:1]
    graph = make_batch(sample, None, torch.float64)[0]
    forces = [torch.autograd.grad(m(graph.with_coordinates(graph.positions.requires_grad_(), graph.cells)).sum(), graph.positions)[0]
              for m in (source, target)]
    assert torch.allclose(forces[0], forces[1], atol=1e-6)  # the fine-tune starts from the pre-trained network
    assert tuned["best_val_force_mae"] > 0
    with pytest.raises(ConfigError, match="training.forces 'direct' needs model.direct_forces: true"):
        config(water_data, tmp_path / "x", forces="direct")


def _random_module(invariant: bool, cfg) -> torch.nn.Module:
    from symprobe.models.pet import PETModule

    torch.manual_seed(0)
    module = PETModule({**cfg.model, "invariant": invariant}).double()
    with torch.no_grad():
        for head in module.core.atom_head:
            head[-1].weight.normal_(0, 0.3)
    return module


@pytest.mark.parametrize("penalty", ["spread", "equigrad"])
def test_symmetry_penalty_vanishes_only_for_the_invariant_twin(water_data, penalty):
    samples = load_samples(water_data, SMALL_MODEL["cutoff"])[:2]
    graph, labels = make_batch(samples, None, torch.float64)
    for invariant, broken in ((False, True), (True, False)):
        cfg = config(water_data, "unused", symmetry_penalty=10.0, penalty=penalty, penalty_rotations=3)
        module = _random_module(invariant, cfg)
        t = cfg.training
        plain, _ = _loss(module, graph, labels, {**t, "symmetry_penalty": 0.0}, np.random.default_rng(0), samples, torch.float64)
        penalised, _ = _loss(module, graph, labels, t, np.random.default_rng(0), samples, torch.float64)
        gap = float((penalised - plain).detach())
        assert (gap > 1e-8) if broken else (abs(gap) < 1e-12)


def test_rotation_gradient_is_the_derivative_under_small_rotations(water_data):
    from scipy.spatial.transform import Rotation

    samples = load_samples(water_data, SMALL_MODEL["cutoff"])[:2]
    module = _random_module(False, config(water_data, "unused"))
    graph, _ = make_batch(samples, None, torch.float64)
    gradient = rotation_gradient(module, graph).numpy()
    h = 1e-5
    for axis in range(3):
        energies = []
        for sign in (1, -1):
            R = Rotation.from_rotvec(sign * h * np.eye(3)[axis]).as_matrix()
            rotated, _ = make_batch(samples, [R, R], torch.float64)
            energies.append(module(rotated).detach().numpy())
        assert np.allclose(gradient[:, axis], (energies[0] - energies[1]) / (2 * h), rtol=1e-5, atol=1e-9)
    assert np.abs(gradient).max() > 1e-3


def _rotational_spread(module: torch.nn.Module, samples, rotations: int = 6) -> float:
    """RMS over structures of the std of E(R x)/N (eV/atom) over random O(3) elements."""
    rng = np.random.default_rng(5)
    spreads = []
    for sample in samples:
        graph, _ = make_batch([sample] * rotations, [random_o3(rng) for _ in range(rotations)], torch.float64)
        spreads.append(float(module.double()(graph).detach().std()) / len(sample.numbers))
    return float(np.sqrt(np.mean(np.square(spreads))))


@pytest.mark.parametrize("penalty, weight", [("spread", 1e7), ("equigrad", 1e6)])
def test_training_with_a_symmetry_penalty_lowers_the_rotational_spread(water_data, tmp_path, penalty, weight):
    common = dict(epochs=4, batch_size=2, lr=1e-2, augmentation=False)
    train(config(water_data, tmp_path / "plain", **common), progress=False)
    train(config(water_data, tmp_path / "penalised", symmetry_penalty=weight, penalty=penalty, **common), progress=False)
    val = [load_samples(water_data, SMALL_MODEL["cutoff"])[k] for k in split_indices(14, 8, 4, 2, seed=1)["val"]]
    plain = _rotational_spread(load_module(tmp_path / "plain" / "best.pt"), val)
    penalised = _rotational_spread(load_module(tmp_path / "penalised" / "best.pt"), val)
    assert penalised < 0.5 * plain, (penalised, plain)


def test_split_is_reproducible_and_disjoint():
    a, b = split_indices(50, 30, 10, 5, seed=3), split_indices(50, 30, 10, 5, seed=3)
    assert a == b
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == 45
    assert split_indices(50, 30, 10, 5, seed=4) != a


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_water_split_is_the_bundled_models_split(name):
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert {key: card["split"][key] for key in ("train", "val", "test", "seed")} == {
        "train": WATER_SPLIT["n_train"], "val": WATER_SPLIT["n_val"], "test": WATER_SPLIT["n_test"], "seed": WATER_SPLIT["seed"]}
    assert card["data"]["structures"] == WATER_SPLIT["n"]
    assert water_split()["test"] == card["split"]["test_indices"]


def test_a_training_subset_keeps_validation_and_test_cells(water_data):
    full = config(water_data, "unused")
    part = make_config({**full.as_dict(), "data": {**full.data, "train_subset": 3}})
    whole, subset = training_split(full, 14), training_split(part, 14)
    assert subset["train"] == whole["train"][:3] and subset["val"] == whole["val"] and subset["test"] == whole["test"]
    with pytest.raises(ConfigError, match=r"data.train_subset \(9\) must not exceed data.train \(8\)"):
        make_config({**full.as_dict(), "data": {**full.data, "train_subset": 9}})


def test_bad_configs_are_clear_errors(water_data, tmp_path):
    good = {"data": {"path": str(water_data), "train": 8, "val": 4, "test": 2}}
    with pytest.raises(ConfigError, match="training: unknown key\\(s\\) epoch "):
        make_config({**good, "training": {"epoch": 3}})
    with pytest.raises(ConfigError, match="config: unknown key\\(s\\) optimiser "):
        make_config({**good, "optimiser": "adam"})
    with pytest.raises(ConfigError, match="model: unknown key\\(s\\) depth "):
        make_config({**good, "model": {"depth": 3}})
    with pytest.raises(ConfigError, match="training.penalty must be one of spread, equigrad, got 'torque'"):
        make_config({**good, "training": {"penalty": "torque"}})
    with pytest.raises(ConfigError, match="does not exist"):
        make_config({"data": {**good["data"], "path": str(tmp_path / "missing.extxyz")}})
    with pytest.raises(ConfigError, match="data: missing required key\\(s\\) val"):
        make_config({"data": {"path": str(water_data), "train": 8, "test": 2}})
    with pytest.raises(ConfigError, match="needs more structures"):
        train(make_config({"data": {**good["data"], "train": 100}, "output_dir": str(tmp_path / "x")}), progress=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(config(water_data, tmp_path / "none"), resume=True, progress=False)
    with pytest.raises(ConfigError, match="training.device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        make_config({**good, "training": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="training.precision must be one of float32, tf32, bf16, got 'fp16'"):
        make_config({**good, "training": {"precision": "fp16"}})
    with pytest.raises(ConfigError, match="training.precision 'bf16' needs training.dtype float32, got 'float64'"):
        make_config({**good, "training": {"precision": "bf16", "dtype": "float64"}})
    for section, key, value, message in [("training", "batch_size", 0, "≥ 1, got 0"),
                                         ("training", "lr", -0.01, "positive, got -0.01"),
                                         ("training", "epochs", -3, "≥ 1, got -3"),
                                         ("training", "augmentation", "yes", "true or false"),
                                         ("model", "width", -8, "≥ 1, got -8"),
                                         ("model", "feedforward", 0, "≥ 1, got 0"),
                                         ("model", "cutoff", "4 Å", "a positive number, got '4 Å'")]:
        with pytest.raises(ConfigError, match=f"^config: {section}\\.{key} must be .*{message}"):
            make_config({**good, section: {key: value}})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="training.device: .*CUDA is not available"):
            train(config(water_data, tmp_path / "cuda", device="cuda"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a lent GPU: pytest -k cuda)")
def test_training_on_cuda_matches_cpu(water_data, tmp_path):
    """Two float64 epochs on the GPU reach the CPU run's validation errors to round-off (index_add on CUDA
    sums in a different order, so the runs agree closely, not bit for bit)."""
    cpu = train(config(water_data, tmp_path / "cpu", dtype="float64"), progress=False)
    gpu = train(config(water_data, tmp_path / "gpu", dtype="float64", device="cuda"), progress=False)
    for key, value in cpu["test"].items():
        assert gpu["test"][key] == pytest.approx(value, rel=1e-6), key


def test_cli_reports_bad_config(tmp_path, capsys):
    from symprobe.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: nowhere.extxyz, train: 1, val: 1, test: 0}\ntraining: {lr: 0.1, momentum: 0.9}\n")
    assert main(["train", str(bad)]) == 2
    assert "symprobe train: error: " in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    bad.write_text("data: {path: x, train: 1\ntraining: [\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line" in err and err.count("\n") == 1
