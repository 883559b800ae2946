"""The pre-training set (``symprobe pretrain-data``): bit-identical from its seed, the same when made chunk by
chunk as in one go, labels that are q-TIP4P/F's, deformed frames that move molecules rigidly, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.geometry import find_mic
from ase.io import read

from symprobe.checks import ConfigError
from symprobe.cli import main
from symprobe.models.qtip4pf import qtip4pf
from symprobe.training.pretrain_data import (
    generate,
    load_pretrain_data_config,
    rigid_molecule_deformation,
)

TOY = {"molecules_per_side": 2, "temperatures_K": [250, 400], "densities_g_cm3": [0.9, 1.1], "equilibration_steps": 10,
       "frame_stride_steps": 2, "frames_per_chunk": 2, "chunks": 2, "strained_fraction": 0.25, "compressed_fraction": 0.25}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path: Path, name: str, **changes):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "output_dir": str(tmp_path / name), **TOY, **changes}))
    return load_pretrain_data_config(path)


def test_the_set_is_bit_identical_from_its_seed_and_when_made_chunk_by_chunk(tmp_path):
    straight = generate(_config(tmp_path, "a"), progress=False)
    again = generate(_config(tmp_path, "b"), progress=False)
    generate(_config(tmp_path, "c", chunks=1), progress=False)
    resumed = generate(_config(tmp_path, "c"), progress=False)  # chunk 0 kept, chunk 1 continues its MD
    data = (tmp_path / "a" / "pretrain.extxyz").read_bytes()
    assert data == (tmp_path / "b" / "pretrain.extxyz").read_bytes() == (tmp_path / "c" / "pretrain.extxyz").read_bytes()
    assert straight["sha256"] == again["sha256"] == resumed["sha256"] and resumed["chunks_made_this_call"] == 1
    other = generate(_config(tmp_path, "d", seed=1), progress=False)
    assert other["sha256"] != straight["sha256"]  # the check can fail
    # 4 boxes × 2 frames × 2 chunks, a quarter of them again strained and again compressed
    assert straight["cells"] == 24 and straight["by_kind"] == {"md": 16, "strained": 4, "compressed": 4}
    assert generate(_config(tmp_path, "a"), progress=False)["chunks_made_this_call"] == 0  # finished: nothing rerun


def test_labels_are_qtip4pf_energies_forces_and_stress(tmp_path):
    generate(_config(tmp_path, "a", chunks=1), progress=False)
    cells = read(tmp_path / "a" / "pretrain.extxyz", index=":")
    model = qtip4pf()
    for atoms in cells[:: len(cells) // 4]:
        prediction = model.predict(atoms)  # the written positions (8 decimals) give the written labels
        assert prediction.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
        assert np.allclose(prediction.forces, atoms.get_forces(), atol=1e-4)
        assert np.allclose(prediction.stress, atoms.get_stress(voigt=False), atol=1e-6)
    md = [a for a in cells if a.info["kind"] == "md"]
    assert sorted({(a.info["temperature_K"], round(a.info["density_g_cm3"], 3)) for a in md}) == [
        (250.0, 0.9), (250.0, 1.1), (400.0, 0.9), (400.0, 1.1)]
    compressed = [a for a in cells if a.info["kind"] == "compressed"]
    assert all(a.info["density_g_cm3"] > 0.9 / 0.99**3 * 0.999 for a in compressed)


def test_deformations_move_molecules_rigidly(tmp_path):
    generate(_config(tmp_path, "a", chunks=1), progress=False)
    atoms = read(tmp_path / "a" / "pretrain.extxyz", index="0")
    deformation = np.array([[1.03, 0.01, 0.0], [0.01, 0.98, -0.02], [0.0, -0.02, 1.0]])
    deformed = rigid_molecule_deformation(atoms, deformation)

    def bonds(a):
        p = a.get_positions().reshape(-1, 3, 3)
        return find_mic((p[:, 1:] - p[:, :1]).reshape(-1, 3), a.cell, pbc=True)[0]

    assert np.allclose(bonds(deformed), bonds(atoms), atol=1e-12)
    assert np.allclose(deformed.get_positions()[0::3], atoms.get_positions()[0::3] @ deformation.T)
    assert np.allclose(deformed.cell.array, atoms.cell.array @ deformation.T)


def test_bad_input_is_one_line_with_exit_code_2(tmp_path, capsys):
    generate(_config(tmp_path, "a", chunks=1), progress=False)
    with pytest.raises(ConfigError, match="holds a set made with other settings \\(seed differ\\)"):
        generate(_config(tmp_path, "a", chunks=1, seed=3), progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TOY, "compression": [0.99, 0.9]}))
    assert main(["pretrain-data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"symprobe pretrain-data: error: {bad}: compression must be [low, high] with 0 < low ≤ high ≤ 1, got [0.99, 0.9]"
    bad.write_text(yaml.safe_dump({**TOY, "temperature_K": 300}))
    assert main(["pretrain-data", str(bad)]) == 2
    assert "unknown key(s) temperature_K" in capsys.readouterr().err
