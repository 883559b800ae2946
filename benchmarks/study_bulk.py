"""The bulk study on its two known-answer systems: ``results/study_bulk/`` (JSON, report section, figures).

    .venv/bin/python benchmarks/study_bulk.py            # both systems, about 3 minutes on 2 cores
    .venv/bin/python benchmarks/study_bulk.py --out /tmp/b
    .venv/bin/python benchmarks/study_bulk.py --null-seeds 12   # how often the null comparison passes (null_rate.json)

* ``cu3au_morse``: a rattled 32-atom Cu3Au cell of the Morse pair potential (``symprobe.testing.pair.known_answer_pair_model``),
  exactly invariant: no variant may differ, and the null comparison must pass;
* ``n2_gas_l2``: 8 N2 dimers that do not feel each other (cutoff 2 Å) with a lab-frame ℓ = 2 bond term of 0.5 eV: the
  raw molecular axes are biased, and the averaged (group T, exact to degree 2), random and MTS runs remove it.

``--null-seeds N`` reruns both with seeds 0..N−1 and records, per seed, whether the study's calibration gate (Holm over
its NVT and NPT null tests) passes: a correct comparison fails it at most 5 % of the time. Both use the test suite's
short plans (``tests/test_study_bulk.py``), 5 replicas per set; MD and stages are cached
under ``--runs`` (default ``runs/study_bulk``, not committed) and a rerun loads them.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def systems():
    """(name, model, structure, plan) of the two known-answer systems."""
    from ase import Atoms
    from ase.build import bulk

    from symprobe.study.bulk import BulkPlan
    from symprobe.testing.pair import known_answer_pair_model

    solid = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    solid.symbols[::4] = "Au"
    solid.rattle(0.02, seed=1)
    rng = np.random.default_rng(0)
    centres = (np.indices((2, 2, 2)).reshape(3, -1).T + 0.5) * 6.0
    u = rng.normal(size=(8, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    gas = Atoms("N16", positions=np.concatenate([centres - 0.71 * u, centres + 0.71 * u]), cell=[12, 12, 12], pbc=True)
    return [
        ("cu3au_morse", known_answer_pair_model(), solid,
         BulkPlan(steps=100, equilibration_steps=20, stride=2, npt_steps=50, npt_equilibration_steps=10, grid="i", mts_grid="i",
                  n_inner=4)),
        ("n2_gas_l2", known_answer_pair_model(degree=2, amplitude=0.5, cutoff=2.0, seed=1), gas,
         BulkPlan(seed=1, steps=200, equilibration_steps=40, stride=2, npt_steps=20, npt_equilibration_steps=4, grid="T",
                  mts_grid="T", n_inner=4)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "results" / "study_bulk"))
    parser.add_argument("--runs", default=str(REPO / "runs" / "study_bulk"))
    parser.add_argument("--null-seeds", type=int, default=0, help="measure the null pass rate over this many seeds instead")
    args = parser.parse_args(argv)
    if args.null_seeds:
        return null_rate(args.null_seeds, Path(args.out), Path(args.runs))

    import torch

    from symprobe.files import atomic_write, write_json
    from symprobe.study.bulk import (
        bulk_section,
        density_figure,
        dynamics_figure,
        rdf_figure,
        run_bulk,
    )

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, model, atoms, plan in systems():
        begin = time.perf_counter()
        result = run_bulk(model, atoms, Path(args.runs) / name, plan=plan, progress=True)
        seconds = time.perf_counter() - begin
        write_json(out / f"{name}.json", {"script": "benchmarks/study_bulk.py", "model": model.name, "seconds_this_run": seconds,
                                          "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread",
                                          **result})
        atomic_write(out / f"{name}.html", bulk_section(result))
        bulk = result["experiments"]["bulk"]
        figures = {"rdf": rdf_figure(bulk), "dynamics": dynamics_figure(bulk)}
        if "skipped" not in result["experiments"]["density_npt"]:
            figures["density"] = density_figure(result["experiments"]["density_npt"])
        for figure_name, figure in figures.items():
            figure.savefig(out / f"{name}_{figure_name}.png", dpi=90, bbox_inches="tight")
        print(f"{name}: " + "; ".join(f"{f['key']} {f['holds']}" for f in result["findings"]) + f" ({seconds:.0f} s)")
    return 0


def null_rate(n_seeds: int, out: Path, runs: Path) -> int:
    """Write ``out/null_rate.json``: for each system and seed 0..n_seeds−1, whether the calibration gate passes and its
    smallest Holm-adjusted p-value."""
    import os
    from dataclasses import replace

    import torch

    from symprobe.files import write_json
    from symprobe.study.bulk import run_bulk

    torch.set_num_threads(1)
    document = {"script": "benchmarks/study_bulk.py --null-seeds", "n_seeds": n_seeds, "systems": {}}
    for name, model, atoms, plan in systems():
        rows = []
        for seed in range(n_seeds):
            result = run_bulk(model, atoms, runs / "null" / name / str(seed), plan=replace(plan, seed=seed), progress=False)
            gate = result["calibration_gate"]
            rows.append({"seed": seed, "passed": gate["passed"], "significant": gate["significant"],
                         "min_adjusted_p": min(p for tests in gate["adjusted_p"].values() for p in tests.values())})
            print(name, rows[-1], flush=True)
        document["systems"][name] = {"passed": sum(r["passed"] for r in rows), "of": n_seeds, "n_tests": gate["n_tests"],
                                     "seeds": rows}
    document["load_average_1_5_15_min"] = list(os.getloadavg())
    write_json(out / "null_rate.json", document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
