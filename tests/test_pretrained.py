"""Pretrained universal potentials as model specs (``sevenn:NAME``, ``chgnet:VERSION``): loaded offline from the
weights in their wheels, benched on a small molecule and a crystal against their own numerical floor."""

import pytest

from symprobe.bench import bench_model, builtin_set
from symprobe.models.external import ModelSpecError, load_model

STRUCTURES = ("H2O", "Si-diamond")


def _bench(spec: str) -> dict:
    model = load_model(spec)
    assert {1, 8, 14} <= set(model.species) and model.dtype is not None
    return bench_model(model, builtin_set(STRUCTURES), grid="2", lmax=1)


def test_sevenn_equivariant_model_sits_at_its_floor():
    pytest.importorskip("sevenn", reason="the pretrained extra (sevenn) is not installed")
    result = _bench("sevenn:7net-0")
    assert result["model"] == "sevenn:7net-0" and not result["skipped"]
    for name in STRUCTURES:
        row = result["structures"][name]
        assert row["floor"]["precision"] == "float32"
        assert not row["above_floor"], (name, row["walk"]["mean_dF_meV_per_A"], row["floor"])
        assert row["audit"]["force_deviation_rms_meV_per_A"] < 0.01  # meV/Å: float32 round-off only


def test_chgnet_invariant_model_on_a_crystal_and_a_boxed_molecule():
    pytest.importorskip("chgnet", reason="the pretrained extra (chgnet) is not installed")
    result = _bench("chgnet:0.3.0")
    crystal, molecule = result["structures"]["Si-diamond"], result["structures"]["H2O"]
    assert not crystal["above_floor"], (crystal["walk"]["mean_dF_meV_per_A"], crystal["floor"])
    # the isolated molecule runs in a cube of vacuum (CHGNet needs a cell): its rotated copies differ by round-off
    # of the float32 graph only, far below a meV/Å, though above the translation/permutation floor (README)
    assert 0 < molecule["walk"]["mean_dF_meV_per_A"] < 0.5
    assert molecule["audit"]["torque_raw_eV"] is not None


@pytest.mark.parametrize("spec, words", [("sevenn:7net-omat", "ship in the sevenn wheel"), ("chgnet:9.9", "ship in the chgnet wheel")])
def test_weights_that_would_need_a_download_are_refused(spec, words):
    pytest.importorskip(spec.partition(":")[0], reason="the pretrained extra is not installed")
    with pytest.raises(ModelSpecError, match=words):
        load_model(spec)


@pytest.mark.parametrize("spec", ["sevenn:7net-0", "chgnet:0.3.0"])
def test_batched_copies_equal_the_calculator_one_at_a_time(spec):
    pytest.importorskip(spec.partition(":")[0], reason="the pretrained extra is not installed")
    import numpy as np

    from symprobe.models.base import CalculatorModel
    from symprobe.structures import rotate
    from symprobe.testing import random_rotations

    model = load_model(spec)
    one_at_a_time = CalculatorModel(model.calculator)
    boxed = getattr(model, "_boxed", lambda atoms: atoms)  # CHGNet's calculator is given the same cube of vacuum
    for name, atoms in builtin_set(["H2O", "Si-diamond"]).items():
        copies = [rotate(atoms, R) for R in random_rotations(3, seed=4)]
        batched = model._pass(copies)
        for copy, prediction in zip(copies, batched):
            single = one_at_a_time.predict(boxed(copy))
            assert abs(prediction.energy - single.energy) < 1e-5, name  # eV, float32
            assert np.abs(prediction.forces - single.forces).max() < 1e-5, name  # eV/Å
            if atoms.pbc.all():
                assert np.abs(prediction.stress - single.stress).max() < 1e-6, name  # eV/Å³
            else:
                assert prediction.stress is None
