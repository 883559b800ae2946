"""Our GridAverage on a peer's own rotations reproduces the peer's averaged energy and forces (float64).

Peers: metatomic-ase's SymmetrizedCalculator, metatomic's SymmetrizedModel and i-PI's ffrotations
(i-PI's grid, metatomic driver and averaging code), on an untrained, non-invariant PET-style model
exported to metatomic in float64.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("metatomic.torch")
pytest.importorskip("metatomic_ase")
pytest.importorskip("ipi")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from symmetrize_peers import (  # noqa: E402
    IPIRotations,
    ase_evaluator,
    ipi_quadrature,
    metatomic_ase_quadrature,
    ours_evaluator,
    symmetrized_model_quadrature,
)

from symprobe.models.export import export_metatomic  # noqa: E402
from symprobe.models.pet import PETModule, default_hypers  # noqa: E402
from symprobe.models.torch_model import TorchModel  # noqa: E402
from symprobe.structures import water_monomer  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(3)
    hypers = {**default_hypers(), "width": 8, "heads": 2, "blocks": 1}
    module = PETModule(hypers, invariant=False).double()
    module.set_baseline(torch.tensor([-13.6, -432.0]), energy_scale=1.0)
    with torch.no_grad():  # untrained: give zero-initialised layers random values too
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    model = TorchModel(module, name="tiny-pet", species=module.species, dtype=torch.float64)
    path = export_metatomic(model, tmp_path_factory.mktemp("peers") / "tiny.pt")
    atoms = water_monomer()
    atoms.positions += np.random.default_rng(1).normal(scale=0.05, size=atoms.positions.shape)
    return model, path, atoms


def _assert_same(ours, theirs, quadrature_name):
    (e1, f1), (e2, f2) = ours, theirs
    assert abs(e1 - e2) <= 1e-8 * abs(e2), f"{quadrature_name}: energy {e1!r} vs peer {e2!r}"
    assert np.allclose(f1, f2, rtol=0, atol=1e-8 * np.abs(f2).max()), f"{quadrature_name}: forces differ"


def test_model_is_not_invariant_so_the_comparison_means_something(tiny):
    model, _, atoms = tiny
    e = model.predict_rotated(atoms, np.array([np.eye(3), -np.eye(3), np.diag([1.0, -1.0, -1.0])])).energies
    assert np.ptp(e) > 1e-6 * abs(e[0])


def test_metatomic_ase_symmetrized_calculator(tiny):
    from metatomic_ase import MetatomicCalculator, SymmetrizedCalculator

    model, path, atoms = tiny
    calc = SymmetrizedCalculator(MetatomicCalculator(str(path), device="cpu"), l_max=3)
    q = metatomic_ase_quadrature(calc)
    assert len(q) == 6 * 7 * 2 and q.degree >= 3
    _assert_same(ours_evaluator(model, q)(atoms), ase_evaluator(calc)(atoms), q.name)


def test_metatomic_symmetrized_model(tiny):
    from metatomic.torch import load_atomistic_model
    from metatomic.torch.o3 import SymmetrizedModel
    from metatomic_ase import MetatomicCalculator

    model, path, atoms = tiny
    wrapped = SymmetrizedModel.wrap(load_atomistic_model(str(path)))
    q = symmetrized_model_quadrature(wrapped)
    assert q.degree >= wrapped.module.max_angular_momentum_grid
    peer = ase_evaluator(MetatomicCalculator(wrapped, device="cpu"))(atoms)
    _assert_same(ours_evaluator(model, q)(atoms), peer, q.name)


def test_ipi_ffrotations(tiny, tmp_path):
    model, path, atoms = tiny
    q = ipi_quadrature("legendre", 2, inversion=True)
    assert len(q) == 36 and q.degree == 2  # the paper's '2i' grid
    _assert_same(ours_evaluator(model, q)(atoms), IPIRotations(path, atoms, q, tmp_path)(atoms), q.name)
