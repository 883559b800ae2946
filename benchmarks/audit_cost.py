"""Cost of an N-rotation audit: one batched ``predict_rotated`` call vs N separate ``predict`` calls.

    .venv/bin/python benchmarks/audit_cost.py                        # 3, 192, 1536 atoms, 36 rotations
    .venv/bin/python benchmarks/audit_cost.py --sizes 3 192 --rotations 8 --out /tmp/cost

Structures: the water monomer (3 atoms) and periodic water boxes of 64 and 512 H2O (192, 1536 atoms).
Models: q-TIP4P/F (exactly invariant, float64) and the PET-style model ``water-pet`` in its deployed
precision (float32); while its weights are not bundled, the same architecture with random weights is
timed instead (said so in the JSON; the cost does not depend on the weights). The rotations are N Haar-random ones (seed 0); the
batched and separate results are checked to agree. Writes ``audit_cost.json`` and ``audit_cost.png``
into ``--out`` (default ``results/``). ``--device`` (cpu, cuda or cuda:N; default cpu) is where the models
run. Wall times depend on the machine and its load: the JSON records the device, torch's thread count and
the host's CPU count next to them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = {3: ("water monomer", lambda: _monomer()), 192: ("64 H2O box", lambda: _box(4)), 1536: ("512 H2O box", lambda: _box(8))}


def _monomer():
    from symprobe.structures import water_monomer

    return water_monomer()


def _box(n: int):
    from symprobe.structures import water_box

    return water_box(n, seed=0)


def load_models(names: list[str], device: torch.device) -> tuple[dict, dict[str, str]]:
    """The requested models by name, on ``device``; those that cannot be loaded are returned as name → reason."""
    models, skipped = {}, {}
    for name in names:
        try:
            if name == "qtip4pf":
                from symprobe.models.qtip4pf import qtip4pf

                models[name] = qtip4pf(device=device)
            elif name == "water-pet":
                from symprobe.models.pet import pet_model

                try:
                    models[name] = pet_model("water-pet", device=device)
                except FileNotFoundError as error:  # weights not bundled yet: time the same architecture untrained
                    skipped[name] = f"{error}; timed the untrained architecture instead (cost does not depend on the weights)"
                    print(f"model {name!r}: {skipped[name]}", file=sys.stderr)
                    models["pet-untrained"] = untrained_pet(device)
            else:
                from symprobe.models.external import load_model

                models[name] = load_model(name, device=device)
        except (ImportError, FileNotFoundError, ValueError, RuntimeError) as error:
            skipped[name] = f"{type(error).__name__}: {error}"
            print(f"skipping model {name!r}: {skipped[name]}", file=sys.stderr)
    return models, skipped


def untrained_pet(device: torch.device):
    """The PET-style architecture with its default hyper-parameters and random weights (seed 0), float32, on ``device``.

    The heads start at zero (an untrained model predicts its baseline); they are drawn at random here so
    energies and forces vary and the batched/separate agreement check means something.
    """
    from symprobe.models.pet import PETModule
    from symprobe.models.torch_model import TorchModel

    torch.manual_seed(0)
    module = PETModule()
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    return TorchModel(module, name="PET-style (untrained)", species=module.species, dtype=torch.float32, device=device)


def time_audit(model, atoms, rotations: np.ndarray, repeats: int) -> dict:
    """Best-of-``repeats`` wall time of the batched call and of the loop of separate calls."""
    from symprobe.structures import rotate

    model.predict_rotated(atoms, rotations[:2])  # warm-up (imports, allocator, neighbour list code)
    batched_s, separate_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        batch = model.predict_rotated(atoms, rotations)
        batched_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        separate = [model.predict(rotate(atoms, R)) for R in rotations]
        separate_s.append(time.perf_counter() - start)
    energies = np.array([p.energy for p in separate])
    forces = np.einsum("kji,kaj->kai", rotations, np.stack([p.forces for p in separate]))  # rotate back
    return {
        "batched_s": min(batched_s),
        "separate_s": min(separate_s),
        "speedup": min(separate_s) / min(batched_s),
        "batched_ms_per_evaluation": 1e3 * min(batched_s) / len(rotations),
        "separate_ms_per_evaluation": 1e3 * min(separate_s) / len(rotations),
        "max_energy_difference_eV": float(np.max(np.abs(batch.energies - energies))),
        "max_force_difference_eV_per_A": float(np.max(np.abs(batch.forces - forces))),
    }


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, model in enumerate(sorted({r["model"] for r in rows})):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["n_atoms"])
        x = [r["n_atoms"] for r in mine]
        ax.plot(x, [r["batched_s"] for r in mine], "o-", color=f"C{k}", label=f"{model}: batched")
        ax.plot(x, [r["separate_s"] for r in mine], "s--", color=f"C{k}", label=f"{model}: separate calls")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel(f"wall time of {rows[0]['n_rotations']} rotated evaluations (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    from symprobe.files import save_figure

    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=list(SIZES), help="atoms per structure")
    parser.add_argument("--rotations", type=int, default=36, help="rotations per audit (default 36, the paper's 2i)")
    parser.add_argument("--models", nargs="+", default=["qtip4pf", "water-pet"],
                        help="qtip4pf, water-pet, or any model spec (symprobe audit MODEL)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings (the machine may be shared)")
    parser.add_argument("--out", default=str(REPO / "results"), help="output directory")
    parser.add_argument("--device", default="cpu", help="where models run: cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.rotations < 2:
        parser.error("--rotations must be at least 2")

    from symprobe.models.device import DeviceError, device_name, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    from symprobe.files import write_json
    from symprobe.so3 import haar

    rotations = haar(args.rotations, seed=0).rotations
    models, skipped = load_models(args.models, device)
    rows = []
    for name, model in models.items():
        for n in args.sizes:
            label, build = SIZES[n]
            atoms = build()
            result = time_audit(model, atoms, rotations, args.repeats)
            row = {"model": name, "dtype": str(getattr(model, "dtype", "unknown")).replace("torch.", ""),
                   "structure": label, "n_atoms": len(atoms), "n_rotations": len(rotations), **result}
            rows.append(row)
            print(f"{name:10s} {n:5d} atoms: batched {result['batched_s']:.3f} s, separate {result['separate_s']:.3f} s "
                  f"(×{result['speedup']:.2f}); max |ΔE| {result['max_energy_difference_eV']:.1e} eV")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": "audit_cost",
        "description": "wall time of an N-rotation audit: one batched predict_rotated call vs N predict calls",
        "host": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                 "torch": torch.__version__, "device": device_name(device)},
        "rotations": {"n": len(rotations), "kind": "Haar-random, seed 0"},
        "skipped_models": skipped,
        "results": rows,
    }
    write_json(out / "audit_cost.json", data)
    if rows:
        figure(rows, out / "audit_cost.png")
    print(f"wrote {out / 'audit_cost.json'}" + (f" and {out / 'audit_cost.png'}" if rows else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
