"""The config schemas: declared once (pydantic), their JSON schemas for editors current and usable, every key
described, and the one-line messages of bad values generated from the declarations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from symprobe.checks import ConfigError, config_keys, validate
from symprobe.cli import main
from symprobe.md import EXAMPLE, validate_config
from symprobe.models.pet import default_hypers
from symprobe.schemas import CONFIGS, config_model, json_schema, schema_text
from symprobe.training.config import ModelSection

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "reference" / "schemas"
GOOD_MD = {"structure": "builtin:water-monomer", "model": "builtin:qtip4pf", "timestep_fs": 0.5, "steps": 10}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_committed_schema_is_current_and_the_cli_prints_it(name, capsys):
    assert (SCHEMAS / f"{name}.schema.json").read_text() == schema_text(name), "run: make docs (or symprobe schema NAME)"
    assert main(["schema", name]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema(name)


def test_every_key_has_a_meaning_and_the_model_defaults_are_pets():
    for name in CONFIGS:
        undescribed = [key.key for key in config_keys(config_model(name)) if not key.meaning and not key.key.endswith(".kind")]
        assert not undescribed, (name, undescribed)
    assert ModelSection().model_dump() == default_hypers()


def test_example_configs_pass_their_json_schema_and_bad_ones_do_not():
    jsonschema = pytest.importorskip("jsonschema", reason="the test extra is not installed")
    files = {"md": sorted((ROOT / "configs").glob("md_*.yaml")), "train": sorted((ROOT / "configs").glob("train_*.yaml")),
             "pretrain-data": sorted((ROOT / "configs").glob("pretrain_*.yaml"))}
    assert len(files["md"]) >= 4 and len(files["train"]) >= 4 and files["pretrain-data"]
    for name, paths in files.items():
        for path in paths:
            jsonschema.validate(yaml.safe_load(path.read_text()), json_schema(name))
    md = json_schema("md")
    for bad in ({**GOOD_MD, "thermostat": "bussi"}, {**GOOD_MD, "steps": 0}, {**GOOD_MD, "engine": "lammps"},
                {**GOOD_MD, "ensemble": {"kind": "nvt-bussi", "tau_fs": 10}}, {**GOOD_MD, "output": {"log_every": 2}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, md)
        with pytest.raises(ConfigError):
            validate_config(bad)
    jsonschema.validate({**GOOD_MD, "ensemble": "nve", "symmetrizer": "random"}, md)  # names for sections without keys
    example = yaml.safe_load(EXAMPLE)  # the annotated example of the docs
    jsonschema.validate(example, md)
    assert validate_config(example).output.directory == Path("md")


@pytest.mark.parametrize("change, message", [
    ({"steps": 2.0}, "steps must be a positive integer, or null, got 2.0"),
    ({"steps": True}, "steps must be a positive integer, or null, got True"),
    ({"timestep_fs": "0.5"}, "timestep_fs must be a positive number, got '0.5'"),
    ({"timestep_fs": float("inf")}, "timestep_fs must be a positive number, got inf"),
    ({"seed": -1}, "seed must be non-negative, got -1"),
    ({"initial_temperature_K": "hot"}, "initial_temperature_K must be a non-negative number, or null, got 'hot'"),
    ({"symmetrizer": {"grid": "2i"}}, "symmetrizer must be a name or a mapping with 'kind' (one of none, grid, random, mts), got {'grid': '2i'}"),
    ({"symmetrizer": {"kind": "random", "inversion": 1}}, "symmetrizer.inversion must be true or false, got 1"),
    ({"symmetrizer": {"kind": "mts", "grid": "2i", "n_inner": 0}}, "symmetrizer.n_inner must be positive, got 0"),
    ({"ensemble": {"kind": "nvt-bussi", "tau_fs": 10}},
     "ensemble (nvt-bussi): missing required key(s) temperature_K; temperature_K: thermostat temperature (K)"),
    ({"output": {"trajectory_stride": 0}}, "output.trajectory_stride must be positive, got 0"),
    ({"output": {"trajectory": "run.dcd"}}, "output.trajectory must end in .extxyz, .xyz or .traj, got 'run.dcd'"),
    ({"output": "md"}, "output must be a mapping, got 'md'"),
    ({"structure": 3}, "structure must be a string, got 3"),
])
def test_md_refusals_are_one_line_naming_the_key(change, message):
    with pytest.raises(ConfigError) as refused:
        validate_config({**GOOD_MD, **change})
    assert str(refused.value) == message


def test_refusals_of_the_training_and_slurm_configs(tmp_path):
    train = config_model("train")
    data = {"path": "x.extxyz", "train": 2, "val": 1, "test": 0}
    cases = [({"data": {**data, "train": 1.5}}, "data.train must be an integer ≥ 1, got 1.5"),
             ({"data": data, "model": {"species": [1, 0]}}, "model.species[1] must be ≥ 1, got 0"),
             ({"data": data, "training": {"plateau_factor": 1}}, "training.plateau_factor must be positive and < 1, got 1"),
             ({"data": data, "training": {"schedule": "step"}}, "training.schedule must be one of cosine, plateau, got 'step'"),
             ({"data": data, "model": {"width": 10}}, "model.width (10) must be a multiple of model.heads (4)")]
    for raw, message in cases:
        with pytest.raises(ConfigError) as refused:
            validate(train, raw, "train.yaml", prefixed=True)
        assert str(refused.value) == f"train.yaml: {message}"
    with pytest.raises(ConfigError, match=r"^train.yaml: expected a mapping of keys to values, got list$"):
        validate(train, [1], "train.yaml", prefixed=True)
    slurm = config_model("slurm")
    settings = validate(slurm, {"cores": 8, "memory": "16GB", "walltime": "02:00:00", "jobs": 2, "job_script_prologue": ["a"]})
    assert settings.processes == 8 and settings.job_script_prologue == ("a",)
    with pytest.raises(ConfigError, match=r"^config: unknown key\(s\) nodes \(allowed: account, cores, "):
        validate(slurm, {"cores": 8, "memory": "16GB", "walltime": "02:00:00", "jobs": 2, "nodes": 3})
