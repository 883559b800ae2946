"""
Training the bundled models
===========================

The bundled ``water-pet`` (a PET-style model that learns symmetry from augmentation) and ``water-pet-twin``
(its invariant twin, same width) were trained by ``symprobe train`` on 150 revPBE0-D3 liquid-water cells, in
two stages each, on 2 CPU cores::

    symprobe train configs/train_water_pet.yaml
    symprobe train configs/train_water_pet_finetune.yaml --bundle water-pet

That takes about three hours per model, so this page validates the configs, trains a toy model for two
epochs on known-answer data, and reads the committed results.
"""

# %%
# The config
# ----------
# Every key is checked for type and range before any step (:doc:`/reference/config`):
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import yaml

from symprobe.testing import write_labelled_water
from symprobe.training import make_config, train

ROOT = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir()
)  # the repository
print((ROOT / "configs" / "train_water_pet.yaml").read_text())

# %%
# A toy run
# ---------
# Labelled q-TIP4P/F boxes (a known answer), a small model, two epochs:
workdir = Path(tempfile.mkdtemp())
data = write_labelled_water(workdir / "water.extxyz", n_boxes=8)
config = make_config(
    {
        "name": "toy",
        "output_dir": str(workdir / "toy"),
        "data": {"path": str(data), "train": 5, "val": 2, "test": 1},
        "model": {"width": 16, "heads": 2, "blocks": 1, "cutoff": 3.5},
        "training": {"epochs": 2, "batch_size": 2, "threads": 1},
    }
)
print(yaml.safe_dump(config.as_dict()["training"], sort_keys=False))
result = train(config)
print("summary keys:", ", ".join(sorted(result)))

# %%
# What the real runs reached
# --------------------------
# ``benchmarks/train_water.py`` measured the bundled models beside MACE and metatrain's PET trained on the same
# split (``results/train_water.json``), and ``benchmarks/learning_curve.py`` trained both on 19 to 150 cells:
measured = json.loads((ROOT / "results" / "train_water.json").read_text())["models"]
curve = json.loads((ROOT / "results" / "learning_curve.json").read_text())
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
names = list(measured)
left.bar(range(len(names)), [measured[n]["test"]["force_mae"] for n in names])
left.set_xticks(
    range(len(names)), [n.split(" (")[0] for n in names], rotation=20, fontsize=8
)
left.set(ylabel="test force MAE (meV/Å)", title="held-out accuracy")
for model, runs in curve["models"].items():
    sizes = sorted(runs, key=int)
    mae = [runs[n]["test"]["force_mae"] for n in sizes]
    right.plot([int(n) for n in sizes], mae, "o-", label=model)
right.set(xscale="log", xlabel="training cells", ylabel="test force MAE (meV/Å)")
right.set_title(f"equal budget ({curve['steps']} steps)")
right.legend()
fig.tight_layout()

# %%
# Both models underfit on 2 CPU cores: their error on their own training cells is nearly as large as on the
# test cells, so neither more data nor a new schedule helps here; ``benchmarks/train_gpu.py`` trains the
# paper-size model on one GPU (:doc:`/about`). A saved model fine-tunes with ``training.init_from``, and
# ``training.symmetry_penalty`` adds the spread or Equigrad penalty.
