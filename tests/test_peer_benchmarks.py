"""The peer-model step of the side-by-side table (benchmarks/metatrain_pet.py ``evaluate``, which
benchmarks/train_water.py runs): a metatomic model's test errors and throughput, checked against symprobe's own
evaluation of the same model on the same split."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("metatomic.torch")

from symprobe.models.export import export_metatomic  # noqa: E402
from symprobe.models.torch_model import TorchModel  # noqa: E402
from symprobe.structures import reference_labels, shared_data_dir  # noqa: E402
from symprobe.testing import random_pet  # noqa: E402
from symprobe.training import water_test_structures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIQUID = "liquid/cheng2019_revPBE0-D3_liquid_test190.extxyz"
HAVE_DATA = shared_data_dir() is not None and (shared_data_dir() / LIQUID).exists()


def _script():
    spec = importlib.util.spec_from_file_location("metatrain_pet", ROOT / "benchmarks" / "metatrain_pet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not HAVE_DATA, reason=f"needs the shared revPBE0-D3 data ({LIQUID}; set SYMPROBE_DATA)")
@pytest.mark.usefixtures("one_torch_thread")
def test_metatomic_peer_errors_equal_symprobe_evaluation_on_the_test_split(tmp_path):
    module = random_pet(seed=3)
    exported = export_metatomic(TorchModel(module, name="random-pet", species=[1, 8], dtype=torch.float64),
                                tmp_path / "model.pt")
    (tmp_path / "training.json").write_text(json.dumps({"wall_time_s": 12.0}))
    script = _script()
    row = script.evaluate(exported, tmp_path / "row.json", "cpu", timing_seconds=0.05)

    assert json.loads((tmp_path / "row.json").read_text()) == row
    assert row["training"] == {"wall_time_s": 12.0}
    assert row["n_test"] == 20 and all(row["throughput_atom_steps_per_s"][n] > 0 for n in ("192", "1536"))
    own = TorchModel(module, name="random-pet", species=[1, 8], dtype=torch.float64)
    energy, force = [], []
    for atoms in water_test_structures(shared_data_dir() / LIQUID):
        reference_energy, reference_forces = reference_labels(atoms)
        prediction = own.predict(atoms)
        energy.append(abs(prediction.energy - reference_energy) / len(atoms))
        force.append(np.abs(prediction.forces - reference_forces).ravel())
    assert row["test"]["energy_mae"] == pytest.approx(1e3 * np.mean(energy), rel=1e-9)
    assert row["test"]["force_mae"] == pytest.approx(1e3 * np.mean(np.concatenate(force)), rel=1e-9)
