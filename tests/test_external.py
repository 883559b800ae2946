"""Model specs: every form loads what it names, and every bad spec says what is wrong and what is valid."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones

from symprobe.models.base import CalculatorModel, Model
from symprobe.models.external import ModelSpecError, builtin_names, load_model
from symprobe.models.torch_model import TorchModel
from symprobe.structures import water_box, water_monomer
from symprobe.testing import random_rotations


def test_builtin_names():
    assert builtin_names() == ["qtip4pf", "water-pet", "water-pet-twin"]


def test_builtin_qtip4pf_is_the_testing_model():
    from symprobe.models.qtip4pf import qtip4pf

    model = load_model("builtin:qtip4pf")
    atoms = water_box(2)
    assert isinstance(model, TorchModel) and model.dtype == torch.float64
    assert model.predict(atoms).energy == pytest.approx(qtip4pf().predict(atoms).energy, rel=1e-14)
    assert load_model("builtin:qtip4pf", dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("name", ["water-pet", "water-pet-twin"])
def test_builtin_pet_models(name):
    from symprobe.models.pet import WEIGHTS_DIR

    if not (WEIGHTS_DIR / f"{name}.pt").exists():
        with pytest.raises(FileNotFoundError, match=name):
            load_model(f"builtin:{name}")
        return
    model = load_model(f"builtin:{name}", dtype=torch.float64)
    assert isinstance(model, TorchModel) and model.dtype == torch.float64
    assert model.species == frozenset({1, 8})
    assert np.isfinite(model.predict(water_monomer()).energy)


def test_symprobe_pet_file(tmp_path):
    from symprobe.models.pet import PETModule, save_model

    save_model(PETModule(), tmp_path / "pet.pt")
    model = load_model(str(tmp_path / "pet.pt"), dtype=torch.float64)
    assert isinstance(model, TorchModel) and model.name == "pet" and model.dtype == torch.float64


def test_module_attribute_calculator_factory():
    model = load_model("ase.calculators.lj:LennardJones")
    assert isinstance(model, CalculatorModel) and model.name == "ase.calculators.lj:LennardJones"
    atoms = water_monomer()
    reference = atoms.copy()
    reference.calc = LennardJones()
    prediction = model.predict(atoms)
    assert prediction.energy == pytest.approx(reference.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(prediction.forces, reference.get_forces(), atol=1e-12)
    # LJ is invariant: rotated copies, forces rotated back, all agree with the unrotated prediction
    batch = model.predict_rotated(atoms, random_rotations(3, seed=2))
    np.testing.assert_allclose(batch.energies, prediction.energy, rtol=1e-12)
    np.testing.assert_allclose(batch.forces, np.broadcast_to(prediction.forces, batch.forces.shape), atol=1e-10)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module holding a Model instance, a factory, a calculator instance and bad objects."""
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            from ase.calculators.lj import LennardJones
            from symprobe.models.qtip4pf import qtip4pf

            MODEL = qtip4pf()
            CALCULATOR = LennardJones(sigma=2.0)
            NOT_A_MODEL = 3.5

            def factory():
                return qtip4pf()

            def wrong_kind():
                return {"energy": 1.0}

            def broken():
                raise RuntimeError("no weights here")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


def test_module_attribute_forms(user_module):
    instance = load_model(f"{user_module}:MODEL")
    made = load_model(f"{user_module}:factory")
    assert isinstance(instance, Model) and isinstance(made, Model) and made is not instance
    calculator = load_model(f"{user_module}:CALCULATOR")
    assert isinstance(calculator, CalculatorModel) and calculator.calculator.parameters.sigma == 2.0


@pytest.mark.parametrize(
    "attribute, message",
    [
        ("NOT_A_MODEL", "neither a Model, an ASE calculator nor a factory"),
        ("wrong_kind", "got a dict, expected a symprobe Model or an ASE calculator"),
        ("broken", r"calling broken\(\) failed \(RuntimeError: no weights here\)"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_module_attribute_errors(user_module, attribute, message):
    with pytest.raises(ModelSpecError, match=message):
        load_model(f"{user_module}:{attribute}")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("builtin:nope", r"'builtin:nope': unknown built-in model 'nope' \(available: qtip4pf, water-pet, water-pet-twin\)"),
        ("no_such_module_xyz:thing", r"cannot import module 'no_such_module_xyz'.*builtin:NAME, metatomic:FILE.pt"),
        ("metatomic:/nonexistent/model.pt", "no such metatomic model file"),
        ("/nonexistent/model.pt", "no such model file"),
        ("water-pet", "did you mean 'builtin:water-pet'"),
        ("", "empty model spec"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ModelSpecError, match=message):
        load_model(spec)


def test_bad_files(tmp_path):
    structures = tmp_path / "water.xyz"
    structures.write_text("3\n\nO 0 0 0\nH 1 0 0\nH 0 1 0\n")
    with pytest.raises(ModelSpecError, match=r"unsupported model file suffix '.xyz'; supported: .pt"):
        load_model(str(structures))
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, junk)
    with pytest.raises(ModelSpecError, match="neither a metatomic model nor a symprobe PET-style model"):
        load_model(str(junk))
    with pytest.raises(ModelSpecError, match="cannot load as a metatomic model"):
        load_model(f"metatomic:{junk}")
