"""CUDA against CPU: every model type and symmetrizer agree in float64 to 1e-10 (relative to the energy), and the
batched MD engine follows the same trajectory. Skipped where no GPU is present (CI has none; benchmarks/gpu_check.py
runs this module on a lent GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from symprobe import so3
from symprobe.models.device import resolve_device
from symprobe.models.torch_model import TorchModel
from symprobe.structures import water_box, water_monomer
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation
from symprobe.testing import anisotropic_qtip4pf, random_pet, random_rotations

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def pair(kind: str, tmp_path) -> tuple:
    """The same model on the CPU and on CUDA, float64."""
    if kind == "pet":
        module = random_pet(False, seed=4)
        return tuple(TorchModel(module, species=(1, 8), device=d) for d in ("cpu", "cuda"))
    if kind == "twin":
        module = random_pet(True, seed=4)
        return tuple(TorchModel(module, species=(1, 8), device=d) for d in ("cpu", "cuda"))
    if kind == "qtip4pf+Ylm":
        cpu = anisotropic_qtip4pf({1: 0.02, 3: 0.03}, seed=2, cutoff=6.0)
        return cpu, cpu.converted(device="cuda")
    pytest.importorskip("metatomic.torch")
    from symprobe.models.export import export_metatomic
    from symprobe.models.external import MetatomicModel

    path = export_metatomic(TorchModel(random_pet(False, seed=4), species=(1, 8)), tmp_path / "pet.pt")
    return MetatomicModel(path, dtype=torch.float64, device="cpu"), MetatomicModel(path, dtype=torch.float64, device="cuda")


WRAPS = {"raw": lambda m: m, "grid": lambda m: GridAverage(m, so3.with_inversion(so3.group("O"))),
         "correction": lambda m: AveragingCorrection(m, so3.paper_grid("2i")), "random": lambda m: RandomRotation(m, 3, True)}


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("kind", ["pet", "twin", "qtip4pf+Ylm", "metatomic"])
def test_cuda_equals_cpu_in_float64(kind, wrap, tmp_path):
    cpu, cuda = pair(kind, tmp_path)
    frames = [water_monomer(), water_box(2), water_box(3, seed=1)]
    rotations = [random_rotations(3, seed=k) for k in range(len(frames))]
    a = WRAPS[wrap](cpu).predict_many(frames, rotations)
    b = WRAPS[wrap](cuda).predict_many(frames, rotations)
    for atoms, x, y in zip(frames, a, b):
        scale = max(1.0, abs(cpu.predict(atoms).energy))
        assert np.abs(x.energies - y.energies).max() <= 1e-10 * scale
        assert np.abs(x.forces - y.forces).max() <= 1e-10 * scale
        if x.stress is not None:
            assert np.abs(x.stress - y.stress).max() <= 1e-10 * scale


def test_batched_md_on_cuda_follows_the_cpu_trajectory():
    from symprobe.md import BatchedDynamics, Replica
    from symprobe.md.run import thermalized

    module = random_pet(False, seed=4)
    positions = {}
    for device in ("cpu", "cuda"):
        model = TorchModel(module, species=(1, 8), device=device)
        replicas = [Replica(thermalized(water_monomer(), 300.0, k), GridAverage(model, so3.group("T")),
                            ensemble={"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 50}, seed=k) for k in range(3)]
        dyn = BatchedDynamics(replicas, 0.5)
        for _ in range(20):
            dyn.step()
        positions[device] = dyn.positions.cpu().numpy()
    np.testing.assert_allclose(positions["cuda"], positions["cpu"], rtol=0, atol=1e-8)


def test_device_resolves_to_the_gpu():
    assert resolve_device("cuda").type == "cuda" and resolve_device("cuda:0").index == 0
