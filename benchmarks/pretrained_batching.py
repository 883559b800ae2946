"""Pretrained models: rotated copies batched in one pass (symprobe's :class:`~symprobe.models.pretrained.PretrainedModel`)
against their ASE calculator called once per copy, in the same run, on a molecule, a small crystal and a water cell.

Each arm evaluates the same ``--copies`` rotated copies; its wall time (s) is the mean of ``--repeats`` calls after a
warm-up call. The ratio
is calculator time over batched time (above 1: batching is faster).

    python benchmarks/pretrained_batching.py --out results/pretrained_batching.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from symprobe.bench import builtin_set
from symprobe.files import write_json
from symprobe.models.base import CalculatorModel
from symprobe.models.external import load_model
from symprobe.study.plan import timed
from symprobe.testing import random_rotations

STRUCTURES = ("H2O", "Si-diamond", "water-liquid")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="sevenn:7net-0,chgnet:0.3.0")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    rotations = random_rotations(args.copies, seed=1)
    structures = builtin_set(STRUCTURES)
    rows = {}
    for spec in args.models.split(","):
        model = load_model(spec)
        one_at_a_time = CalculatorModel(model.calculator)
        boxed = getattr(model, "_boxed", lambda atoms: atoms)
        for name, atoms in structures.items():
            batched = timed(lambda: model.predict_rotated(atoms, rotations), args.repeats)
            single = timed(lambda: one_at_a_time.predict_rotated(boxed(atoms), rotations), args.repeats)
            rows[f"{spec} / {name}"] = {"atoms": len(atoms), "batched_s": batched, "calculator_s": single, "speedup": single / batched}
            print(spec, name, rows[f"{spec} / {name}"], flush=True)
    write_json(args.out, {"script": "benchmarks/pretrained_batching.py", "arguments": sys.argv[1:] if argv is None else argv,
                          "copies": args.copies, "load_average": list(os.getloadavg()), "units": "seconds", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
