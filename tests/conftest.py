"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One torch thread for training-heavy tests: on 2 cores, more threads only oversubscribe."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_pretrain_set(tmp_path_factory):
    """A toy q-TIP4P/F pre-training set from ``symprobe pretrain-data`` (24 cells of 8 molecules, with stress)."""
    import yaml

    from symprobe.training.pretrain_data import generate, load_pretrain_data_config

    root = tmp_path_factory.mktemp("pretrain_set")
    spec = {"name": "toy", "output_dir": str(root / "set"), "molecules_per_side": 2, "temperatures_K": [250, 400],
            "densities_g_cm3": [0.95, 1.05], "equilibration_steps": 10, "frame_stride_steps": 2, "frames_per_chunk": 2, "chunks": 2}
    (root / "toy.yaml").write_text(yaml.safe_dump(spec))
    generate(load_pretrain_data_config(root / "toy.yaml"), progress=False)
    return root / "set" / "pretrain.extxyz"
