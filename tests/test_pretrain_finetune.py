"""Pre-training on q-TIP4P/F labels then fine-tuning from one config (``pretrain`` section): bit-for-bit resume
from the checkpoint between the stages, frozen early blocks, per-species reference energies re-fitted on labels
with another zero of energy, bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from symprobe.cli import main
from symprobe.models.pet import PETModule, load_module
from symprobe.testing import write_labelled_water
from symprobe.training import (
    ConfigError,
    block_prefixes,
    bundle,
    init_weights,
    load_samples,
    make_batch,
    make_config,
    pretrain_stage,
    train,
    train_stages,
)

SMALL_MODEL = {"width": 16, "heads": 2, "blocks": 2, "layers_per_block": 1, "radial_basis": 6, "angular_degree": 2, "cutoff": 3.5}
ZERO_SHIFT = {8: -430.0, 1: -13.5}  # eV per atom: the fine-tune labels' zero of energy differs from q-TIP4P/F's

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def label_sets(toy_pretrain_set, tmp_path_factory) -> tuple[Path, Path]:
    """(the toy q-TIP4P/F pre-training set, with stress; 12 boxes with energies shifted by ZERO_SHIFT per atom)."""
    root = tmp_path_factory.mktemp("labels")
    frames = read(write_labelled_water(root / "water.extxyz", 12), index=":")
    for atoms in frames:
        shift = sum(ZERO_SHIFT[int(z)] for z in atoms.numbers)
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy() + shift, forces=atoms.get_forces())
    write(root / "shifted.extxyz", frames)
    return toy_pretrain_set, root / "shifted.extxyz"


def _raw(label_sets, out: Path, **training) -> dict:
    pretrain_path, fine_path = label_sets
    return {
        "name": "staged", "output_dir": str(out),
        "data": {"path": str(fine_path), "train": 6, "val": 4, "test": 2, "seed": 1},
        "model": SMALL_MODEL,
        "training": {"epochs": 2, "batch_size": 3, "lr": 1e-3, "warmup_epochs": 0.5, "threads": 1, "freeze_blocks": 1, **training},
        "pretrain": {"data": {"path": str(pretrain_path), "train": 12, "val": 4, "test": 0, "seed": 0},
                     "training": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "stress_weight": 1.0}},
    }


def test_pretraining_then_fine_tuning_resumes_bit_for_bit_from_the_checkpoint_between_the_stages(label_sets, tmp_path):
    straight = train_stages(make_config(_raw(label_sets, tmp_path / "a")), progress=False)
    assert straight["stage"] == "fine-tune" and straight["finished"]
    staged = make_config(_raw(label_sets, tmp_path / "b"))
    first = train(pretrain_stage(staged), progress=False)  # the pretrain stage alone: then the process ends
    assert first["finished"] and not (tmp_path / "b" / "checkpoint.pt").exists()
    part = train_stages(staged, resume=True, stop_after_epochs=1, progress=False)  # pretrain not rerun; 1 fine-tune epoch
    assert part["stage"] == "fine-tune" and part["epochs_done"] == 1
    resumed = train_stages(staged, resume=True, progress=False)
    for stage in ("pretrain/checkpoint.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "a" / stage, weights_only=False)
        b = torch.load(tmp_path / "b" / stage, weights_only=False)
        assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items()), stage
        assert [row["val_force_mae"] for row in a["state"]["history"]] == [row["val_force_mae"] for row in b["state"]["history"]]
    assert resumed["test"] == straight["test"]
    # the fine-tune started from the pretrain stage's best model; its first block's token layers stayed as they were
    source = load_module(tmp_path / "a" / "pretrain" / "best.pt").state_dict()
    tuned = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    frozen = [k for k in tuned if k.startswith(tuple(block_prefixes(0)))]
    assert frozen and all(torch.equal(tuned[k], source[k]) for k in frozen)
    assert straight["frozen_parameters"] == sum(tuned[k].numel() for k in frozen if "running" not in k)
    moved = [k for k in tuned if k.startswith(tuple(block_prefixes(1))) or "head" in k]
    assert all(not torch.equal(tuned[k], source[k]) for k in moved if k.endswith("weight"))
    # the pretrain stage fitted stress (q-TIP4P/F labels carry it); the model card lists both stages
    assert json.loads((tmp_path / "a" / "pretrain" / "summary.json").read_text())["finished"]
    card = bundle(make_config(_raw(label_sets, tmp_path / "a")), "staged", weights_dir=tmp_path / "weights")
    assert [stage["lr"] for stage in card["stages"]] == [3e-3, 1e-3]  # the learning-rate restart


def test_fine_tune_refits_the_reference_energies_on_labels_with_another_zero(label_sets, tmp_path):
    _pretrain_path, fine_path = label_sets
    cfg = make_config(_raw(label_sets, tmp_path / "a", epochs=1))
    train(pretrain_stage(cfg), progress=False)
    best = tmp_path / "a" / "pretrain" / "best.pt"
    fine = load_samples(fine_path, 3.5)[:6]
    shift = sum(ZERO_SHIFT[int(z)] for z in fine[0].numbers)  # eV per cell, the same for every cell (8 H2O)
    energies = {}
    for refit in (True, False):
        torch.manual_seed(0)
        module = PETModule({**cfg.model, "species": [1, 8]})
        init_weights(module, best, fine, torch.float32, refit_reference=refit)
        graph, labels = make_batch(fine, None, torch.float32)
        with torch.no_grad():
            energies[refit] = (module(graph) - labels["energy"]).double().numpy()
        if not refit:
            assert torch.equal(module.core.species_energy, load_module(best).core.species_energy)
    # refit: the residuals are centred (least squares on composition); keep: every cell is off by the same amount,
    # the shift of zero (and the few eV between q-TIP4P/F cut at 9 Å, the pre-training labels, and at 6 Å)
    assert abs(energies[True].mean()) < 1e-3
    offset = energies[False] - energies[True]
    assert np.ptp(offset) < 1e-3 and offset.mean() == pytest.approx(-shift, abs=5.0)


def test_bad_staged_configs_are_clear_errors(label_sets, tmp_path, capsys):
    raw = _raw(label_sets, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"training.freeze_blocks \(3\) must not exceed model.blocks \(2\)"):
        make_config({**raw, "training": {**raw["training"], "freeze_blocks": 3}})
    with pytest.raises(ConfigError, match="pretrain.training: unknown key\\(s\\) init_from"):
        make_config({**raw, "pretrain": {**raw["pretrain"], "training": {"init_from": "x.pt"}}})
    with pytest.raises(ConfigError, match="training.energy_reference must be one of refit, keep, got 'zero'"):
        make_config({**raw, "training": {**raw["training"], "energy_reference": "zero"}})
    with pytest.raises(ConfigError, match="pretrain.data: missing required key\\(s\\) val"):
        make_config({**raw, "pretrain": {**raw["pretrain"], "data": {"path": raw["data"]["path"], "train": 2, "test": 0}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**raw, "pretrain": {**raw["pretrain"], "data": {**raw["pretrain"]["data"], "path": "nowhere.extxyz"}}}))
    assert main(["train", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"symprobe train: error: {bad}: data file {tmp_path / 'nowhere.extxyz'} does not exist"
