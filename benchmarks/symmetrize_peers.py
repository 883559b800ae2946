"""Issue 4 (c'): our grid average side by side with metatomic's and i-PI's rotational averaging.

One non-invariant PET-style model exported to metatomic (``water-pet``, float32) is averaged by

- ``metatomic_ase.SymmetrizedCalculator`` (Lebedev × 2l+1 in-plane × inversion, default ``l_max=3``);
- ``metatomic.torch.o3.SymmetrizedModel.wrap`` (Lebedev × (L+1) in-plane × inversion, default grid
  degree 1 for energies), run through ``metatomic_ase.MetatomicCalculator`` (forces by autograd);
- i-PI's ``<ffrotations>``: i-PI's own rotation grid (``ipi.utils.mathtools``), i-PI's metatomic driver
  (``ipi.pes.metatomic.MetatomicDriver``) evaluating one rotated copy per request as i-PI dispatches them,
  and i-PI's own averaging code (``FFRotations.gather``); no socket or full i-PI simulation;
- ours: :class:`symprobe.symmetrize.GridAverage` on the same rotations as each peer, and on our cheapest
  rule of the same (measured) degree, with the native torch model (one batched forward pass).

Per method and structure (water monomer, 64-molecule box): wall time per energy+forces evaluation
(median of ``--repeats`` calls), the rotational error (max − min of the averaged energy over
``--rotations`` Haar-random rotations of the input; RMS spread of the back-rotated forces) and the
deviation from a dense reference average (``so3.smallest(10, improper=True)``, ours). Every method runs on
``--device`` (cpu, cuda or cuda:N; default cpu): our model, the metatomic calculators and i-PI's driver.
Writes JSON and a bar chart to ``--out``.

    python benchmarks/symmetrize_peers.py --out results/symmetrize_peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_changes

from symprobe import so3
from symprobe.files import atomic_write, save_figure
from symprobe.models.base import Model
from symprobe.structures import rotate
from symprobe.symmetrize import GridAverage

EnergyForces = Callable[[Atoms], tuple[float, np.ndarray]]


# ---------------------------------------------------------------------------------------------------
# The peers' quadratures, read from the peers' own objects


def metatomic_ase_quadrature(calculator) -> so3.Quadrature:
    """The rotations and weights a ``metatomic_ase.SymmetrizedCalculator`` averages over."""
    rotations = np.asarray(calculator.quadrature_rotations, dtype=np.float64)
    weights = np.asarray(calculator.quadrature_weights, dtype=np.float64)
    q = so3.Quadrature(f"metatomic-ase-lmax{calculator.l_max}", rotations, weights / weights.sum(), 0)
    return _with_measured_degree(q)


def symmetrized_model_quadrature(wrapped) -> so3.Quadrature:
    """The O(3) rule of a ``SymmetrizedModel.wrap`` output: its proper rotations, then their inverses."""
    module = wrapped.module
    proper = np.concatenate([b.matrices.detach().to("cpu").double().numpy() for b in module._batches])
    weights = module._rotation_weights.detach().to("cpu").double().numpy()
    rotations = np.concatenate([proper, -proper])
    weights = np.concatenate([weights, weights]) / (2 * weights.sum())
    q = so3.Quadrature(f"SymmetrizedModel-grid{module.max_angular_momentum_grid}", rotations, weights, 0)
    return _with_measured_degree(q)


def ipi_quadrature(mode: str, order: int, inversion: bool) -> so3.Quadrature:
    """i-PI's ``<ffrotations>`` grid (``grid_mode``, ``grid_order``, ``inversion``) as i-PI builds it:
    each rotation R with its weight, followed by −R with the same weight when ``inversion``."""
    from ipi.utils.mathtools import get_rotation_quadrature_legendre, get_rotation_quadrature_lebedev

    build = {"lebedev": get_rotation_quadrature_lebedev, "legendre": get_rotation_quadrature_legendre}[mode]
    pairs = [(R, w) for R, w, _ in build(order)]
    if inversion:
        pairs = [p for R, w in pairs for p in ((R, w), (-R, w))]
    rotations = np.array([R for R, _ in pairs])
    weights = np.array([w for _, w in pairs], dtype=np.float64)
    name = f"ipi-{mode}-{order}" + ("+i" if inversion else "")
    return _with_measured_degree(so3.Quadrature(name, rotations, weights / weights.sum(), 0))


def _with_measured_degree(q: so3.Quadrature) -> so3.Quadrature:
    import dataclasses

    return dataclasses.replace(q, degree=so3.measured_degree(q))


# ---------------------------------------------------------------------------------------------------
# Evaluators: atoms -> (energy eV, forces eV/Å) of the averaged model


def ase_evaluator(calculator) -> EnergyForces:
    """Energy and forces from an ASE calculator, recomputed at every call (no caching)."""

    def evaluate(atoms: Atoms) -> tuple[float, np.ndarray]:
        calculator.calculate(atoms.copy(), ["energy", "forces"], all_changes)
        return float(calculator.results["energy"]), np.asarray(calculator.results["forces"], dtype=np.float64)

    return evaluate


def ours_evaluator(model: Model, quadrature: so3.Quadrature) -> EnergyForces:
    average = GridAverage(model, quadrature)

    def evaluate(atoms: Atoms) -> tuple[float, np.ndarray]:
        p = average.predict(atoms)
        return float(p.energy), np.asarray(p.forces)

    return evaluate


class IPIRotations:
    """i-PI's ``<ffrotations>`` averaging run in-process: i-PI's metatomic driver evaluates each rotated copy
    (one request per rotation, as ``FFRotations.queue`` dispatches them) and ``FFRotations.gather`` averages.

    ``model_path`` a metatomic ``.pt`` file; ``template`` an ASE-readable file giving the atom types;
    ``device`` where the driver runs the model.
    """

    def __init__(self, model_path: str | Path, template: Atoms, quadrature: so3.Quadrature, workdir: Path,
                 device: str = "cpu"):
        from ipi.pes.metatomic import MetatomicDriver

        template_file = workdir / "ipi-template.xyz"
        template.write(template_file)
        self.driver = MetatomicDriver(str(template_file), str(model_path), device=device)
        self.quadrature = quadrature

    def __call__(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        from ipi.engine.forcefields import FFRotations
        from ipi.utils.units import unit_to_internal, unit_to_user

        q = unit_to_internal("length", "angstrom", atoms.positions)
        h = unit_to_internal("length", "angstrom", atoms.cell.array.T)  # i-PI cell: lattice vectors as columns
        handles, rots = [], []
        for R, w in zip(self.quadrature.rotations, self.quadrature.weights):
            energy, forces, virial, extras = self.driver.compute_structure(R @ h, q @ R.T)
            handles.append({"result": [energy, np.asarray(forces).ravel(), np.asarray(virial), extras]})
            rots.append((R, w))
        request = {"pos": q.ravel(), "ff_handles": handles, "rots": rots}
        gatherer = types.SimpleNamespace(ff=types.SimpleNamespace(release=lambda handle: None))
        FFRotations.gather(gatherer, request)
        energy, forces = request["result"][0], request["result"][1].reshape(-1, 3)
        return float(unit_to_user("energy", "electronvolt", energy)), unit_to_user("force", "ev/ang", forces)


# ---------------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Row:
    method: str
    structure: str
    atoms: int
    evaluations: int
    degree: int
    seconds_per_evaluation: float
    energy_spread_eV: float
    force_spread_eV_per_A: float
    energy_vs_reference_eV: float
    forces_vs_reference_eV_per_A: float


def measure(
    name: str, evaluate: EnergyForces, quadrature: so3.Quadrature, structure: str, atoms: Atoms,
    reference: tuple[float, np.ndarray], rotations: np.ndarray, repeats: int,
) -> Row:
    """Wall time (median of ``repeats``), spread over input rotations, and deviation from ``reference``."""
    evaluate(atoms)  # warm-up (TorchScript profiling, neighbour-list set-up)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        energy, forces = evaluate(atoms)
        times.append(time.perf_counter() - start)
    energies, back = [], []
    for R in rotations:
        e, f = evaluate(rotate(atoms, R))
        energies.append(e)
        back.append(f @ R)  # forces of the rotated copy, rotated back: Rᵀ F per atom
    back = np.array(back)
    return Row(
        name, structure, len(atoms), len(quadrature), quadrature.degree, statistics.median(times),
        float(np.ptp(energies)), float(np.sqrt(np.mean((back - back.mean(axis=0)) ** 2))),
        float(abs(energy - reference[0])), float(np.sqrt(np.mean((forces - reference[1]) ** 2))),
    )


def run(out: Path, n_rotations: int, repeats: int, box_size: int, seed: int, which: set[str] = frozenset({"monomer", "box"}),
        device: str = "cpu") -> dict:
    """Measure every method on ``device`` on the ``which`` structures ("monomer", "box"); rows of the other structure
    are kept from an existing ``out`` file (with the settings they were measured with, under ``earlier``)."""
    import torch
    from metatomic.torch import load_atomistic_model
    from metatomic.torch.o3 import SymmetrizedModel
    from metatomic_ase import MetatomicCalculator, SymmetrizedCalculator

    from symprobe.models.export import export_metatomic
    from symprobe.models.pet import pet_model
    from symprobe.structures import water_box, water_monomer
    from symprobe.testing import random_rotations

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = pet_model("water-pet", device=device)
    rotations = random_rotations(n_rotations, seed=seed)
    reference_rule = so3.smallest(10, improper=True)
    structures = {"water monomer": water_monomer(), f"water box ({box_size ** 3} molecules)": water_box(box_size)}
    structures = {name: atoms for name, atoms in structures.items() if name.split()[1] in which}
    rows: list[Row] = []
    earlier: dict = {}
    if out.exists():
        previous = json.loads(out.read_text())
        kept = [Row(**r) for r in previous["rows"] if r["structure"] not in structures]
        if kept:
            earlier = {"structures": sorted({r.structure for r in kept}), "input_rotations": previous["input_rotations"],
                       "repeats": previous["repeats"]}
            rows.extend(kept)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_metatomic(model.converted(device="cpu"), Path(tmp) / "water-pet.pt")
        ase_calc = SymmetrizedCalculator(MetatomicCalculator(str(path), device=device), l_max=3)
        wrapped = SymmetrizedModel.wrap(load_atomistic_model(str(path)))
        sym_calc = MetatomicCalculator(wrapped, device=device)
        peers = [
            ("metatomic-ase SymmetrizedCalculator (l_max=3)", metatomic_ase_quadrature(ase_calc),
             lambda atoms: ase_evaluator(ase_calc)),
            ("metatomic SymmetrizedModel (default grid)", symmetrized_model_quadrature(wrapped),
             lambda atoms: ase_evaluator(sym_calc)),
        ]
        for mode, order in (("lebedev", 3), ("legendre", 3)):
            q = ipi_quadrature(mode, order, inversion=True)
            peers.append((f"i-PI ffrotations ({mode} {order}, inversion)", q,
                          lambda atoms, q=q: IPIRotations(path, atoms, q, Path(tmp), device)))
        for structure, atoms in structures.items():
            ref = GridAverage(model, reference_rule).predict(atoms)
            reference = (float(ref.energy), np.asarray(ref.forces))
            for name, q, make in peers:
                print(f"[{structure}] {name}: {len(q)} rotations, degree {q.degree}", flush=True)
                rows.append(measure(name, make(atoms), q, structure, atoms, reference, rotations, repeats))
                rows.append(measure(f"ours on the same rotations ({q.name})", ours_evaluator(model, q), q,
                                    structure, atoms, reference, rotations, repeats))
                cheapest = so3.smallest(max(q.degree, 0), improper=q.improper)
                rows.append(measure(f"ours, cheapest degree-{q.degree} rule ({cheapest.name})",
                                    ours_evaluator(model, cheapest), cheapest, structure, atoms, reference,
                                    rotations, repeats))
            raw = so3.identity()
            rows.append(measure("raw model (no averaging)", ours_evaluator(model, raw), raw, structure, atoms,
                                reference, rotations, repeats))
            _write_json(out, _result(rows, reference_rule, n_rotations, repeats, earlier, device))  # partial results so far
    result = _result(rows, reference_rule, n_rotations, repeats, earlier, device)
    _plot(rows, out.with_suffix(".png"))
    return result


def _result(rows: list[Row], reference_rule: so3.Quadrature, n_rotations: int, repeats: int, earlier: dict,
            device: str = "cpu") -> dict:
    import torch

    return {
        "model": "builtin water-pet (float32) exported to metatomic",
        "reference": f"ours on {reference_rule.name} ({len(reference_rule)} rotations)",
        "input_rotations": n_rotations,
        "repeats": repeats,
        "earlier": earlier or None,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "columns": {
            "seconds_per_evaluation": "median wall time of one averaged energy+forces evaluation (s)",
            "energy_spread_eV": "max - min of the averaged energy over random rotations of the input",
            "force_spread_eV_per_A": "RMS deviation of back-rotated averaged forces from their mean",
            "energy_vs_reference_eV": "|E_avg - E_ref| at the input orientation",
            "forces_vs_reference_eV_per_A": "RMS(F_avg - F_ref) at the input orientation",
        },
        "rows": [vars(r) for r in rows],
    }


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2))


def _plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    structures = list(dict.fromkeys(r.structure for r in rows))
    fig, axes = plt.subplots(2, len(structures), figsize=(7 * len(structures), 9), squeeze=False)
    for c, structure in enumerate(structures):
        sub = [r for r in rows if r.structure == structure]
        labels = [f"{r.method} [{r.evaluations}]" for r in sub]
        y = np.arange(len(sub))
        colors = ["tab:blue" if r.method.startswith("ours") else "tab:gray" if r.method.startswith("raw")
                  else "tab:orange" for r in sub]
        axes[0, c].barh(y, [r.seconds_per_evaluation for r in sub], color=colors)
        axes[0, c].set_xscale("log")
        axes[0, c].set_xlabel("wall time per evaluation (s)")
        axes[1, c].barh(y, [max(r.energy_spread_eV, 1e-12) for r in sub], color=colors)
        axes[1, c].set_xscale("log")
        axes[1, c].set_xlabel("averaged-energy spread over input rotations (eV)")
        for ax in axes[:, c]:
            ax.set_yticks(y, labels, fontsize=7)
            ax.invert_yaxis()
        axes[0, c].set_title(structure)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/symmetrize_peers.json"))
    parser.add_argument("--rotations", type=int, default=10, help="random input rotations for the error")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method")
    parser.add_argument("--box", type=int, default=4, help="water box of box³ molecules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--structures", default="monomer,box", help="which structures to measure (monomer, box); "
                        "rows of the other are kept from an existing --out file")
    parser.add_argument("--device", default="cpu", help="where every method runs: cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    from symprobe.models.device import DeviceError, resolve_device

    try:
        device = str(resolve_device(args.device))
    except DeviceError as error:
        parser.error(f"--device: {error}")
    which = set(args.structures.split(","))
    if not which or which - {"monomer", "box"}:
        raise SystemExit(f"--structures: expected monomer and/or box, got {args.structures!r}")
    for name, value in (("--rotations", args.rotations), ("--repeats", args.repeats), ("--box", args.box)):
        if value < 1:
            raise SystemExit(f"{name} must be a positive integer, got {value}")
    run(args.out, args.rotations, args.repeats, args.box, args.seed, which, device)


if __name__ == "__main__":
    main()
