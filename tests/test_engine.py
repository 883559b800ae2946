"""The batch call of the model contract: many structures and their rotated copies in one call, equal to one
call per copy for every model type and symmetrizer; passes sized by a memory budget; the device setting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones

from symprobe import so3
from symprobe.models.base import CalculatorModel, Model
from symprobe.models.device import DeviceError, resolve_device
from symprobe.models.torch_model import TorchModel
from symprobe.analysis.observables import net_torque
from symprobe.structures import rotate, water_box, water_monomer
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation
from symprobe.testing import anisotropic_qtip4pf, random_pet, random_rotations


def structures() -> list[Atoms]:
    """Different sizes, periodic and not, each shifted off the origin."""
    dimer = water_monomer() + water_monomer()
    dimer.positions[3:] += [2.9, 0.3, 0.2]
    dimer.pbc, dimer.cell = False, np.zeros((3, 3))
    frames = [water_monomer(), water_box(2), dimer, water_box(3, seed=2)]
    for k, atoms in enumerate(frames):
        atoms.positions += 0.37 * k
    return frames


def pet(dtype=torch.float64) -> TorchModel:
    return TorchModel(random_pet(False, seed=4), name="pet", species=(1, 8), dtype=dtype)


def metatomic_pet(tmp_path_factory) -> Model:
    pytest.importorskip("metatomic.torch")
    from symprobe.models.export import export_metatomic
    from symprobe.models.external import MetatomicModel

    path = tmp_path_factory.mktemp("mta") / "pet.pt"
    export_metatomic(pet(), path)
    return MetatomicModel(path, dtype=torch.float64)


MODELS = {
    "pet": lambda _: pet(),
    "qtip4pf+Ylm": lambda _: anisotropic_qtip4pf({1: 0.02, 3: 0.03}, seed=2, cutoff=4.0),
    "lennard-jones (ASE)": lambda _: CalculatorModel(LennardJones(sigma=2.5, epsilon=0.01, rc=4.0)),
    "metatomic": metatomic_pet,
}
SYMMETRIZERS = {
    "raw": lambda m: m,
    "grid": lambda m: GridAverage(m, so3.group("T")),
    "correction": lambda m: AveragingCorrection(m, so3.paper_grid("2")),
    "random": lambda m: RandomRotation(m, seed=7, improper=True),
}


@pytest.mark.parametrize("wrap", SYMMETRIZERS)
@pytest.mark.parametrize("kind", MODELS)
def test_batched_predictions_equal_one_call_per_copy(kind, wrap, tmp_path_factory):
    model = MODELS[kind](tmp_path_factory)
    frames = structures()
    rotations = [random_rotations(k + 1, seed=k) for k in range(len(frames))]
    batched = SYMMETRIZERS[wrap](model).predict_many(frames, rotations)
    single = SYMMETRIZERS[wrap](model)  # a fresh one: a random rotation draws the same sequence
    for atoms, Rs, batch in zip(frames, rotations, batched):
        scale = max(1.0, abs(model.predict(atoms).energy))  # 1e-10 relative to the model's energy
        for R, energy, forces, k in zip(Rs, batch.energies, batch.forces, range(len(Rs))):
            one = single.predict(rotate(atoms, R))
            assert abs(energy - one.energy) <= 1e-10 * scale
            np.testing.assert_allclose(forces, one.forces @ R, rtol=0, atol=1e-10 * scale)  # Rᵀ F(R x), rows
            if atoms.pbc.all() and one.stress is not None:
                np.testing.assert_allclose(batch.stress[k], R.T @ one.stress @ R, rtol=0, atol=1e-10 * scale)
            else:
                assert batch.stress is None or not atoms.pbc.all()


def test_stress_is_the_strain_derivative():
    """σ = (1/V) ∂E/∂ε from the cell-gradient virial, against central differences of the energy."""
    model = pet()
    atoms = water_box(2)
    stress = model.predict(atoms).stress
    h, numeric = 2e-6, np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += 0.5 * sign * h
                strain[b, a] += 0.5 * sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                energies.append(model.predict(strained).energy)
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    np.testing.assert_allclose(stress, numeric, rtol=0, atol=2e-8)


def test_passes_follow_the_memory_budget(monkeypatch):
    model = pet()
    frames = structures()
    rotations = [random_rotations(6, seed=k) for k in range(len(frames))]
    whole = model.predict_many(frames, rotations)
    passes = []
    forward = model._forward
    monkeypatch.setattr(model, "_forward", lambda graph, *a: passes.append(graph.n_structures) or forward(graph, *a))
    monkeypatch.setenv("SYMPROBE_CPU_PASS_MB", "0.05")
    small = model.predict_many(frames, rotations)
    assert len(passes) > 4 and sum(passes) == 24  # many passes, every copy once
    for a, b in zip(whole, small):
        np.testing.assert_allclose(a.energies, b.energies, rtol=0, atol=1e-10)
        np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-10)
    monkeypatch.setenv("SYMPROBE_CPU_PASS_MB", "1000")
    passes.clear()
    model.predict_many(frames, rotations)
    assert passes == [24]


def test_float32_round_off_does_not_grow_away_from_the_origin():
    """Edge vectors are formed in float64: the averaged torque of a float32 model 200 Å from the origin is at
    its floor at the origin (it was 4x larger when positions were cast first)."""
    model = TorchModel(random_pet(True, seed=1), species=(1, 8), dtype=torch.float32)  # invariant: only round-off
    grid = so3.with_inversion(so3.group("O"))
    torques = []
    for shift in (0.0, 200.0):
        values = []
        for k, R in enumerate(random_rotations(8, seed=3)):
            molecule = rotate(water_monomer(0.0), R)
            molecule.positions += shift * np.array([0.6, -0.48, 0.64])
            forces = GridAverage(model, grid).predict(molecule).forces
            values.append(np.linalg.norm(net_torque(molecule.positions, forces, molecule.get_masses())))
        torques.append(np.sqrt(np.mean(np.square(values))))
    assert torques[0] > 0  # float32 does leave a floor
    assert torques[1] < 1.5 * torques[0], torques


def test_device_names_are_checked_before_any_work():
    assert resolve_device(None) == torch.device("cpu") and resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(DeviceError, match="expected cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(DeviceError, match="GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no GPU is present")
@pytest.mark.parametrize("argv", [
    ["audit", "builtin:qtip4pf", "--device", "cuda"],
    ["study", "--quick", "--device", "cuda"],
    ["export", "builtin:qtip4pf", "x.pt", "--device", "cuda"],
])
def test_cli_device_cuda_without_a_gpu_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    from symprobe.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err
    assert not any(tmp_path.iterdir())  # nothing started
