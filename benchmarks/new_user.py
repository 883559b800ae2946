"""The user-system study tried as a new user would: ``results/new_user/``.

For each pretrained model, ``symprobe study --model MODEL --molecule MOLECULE --crystal CRYSTAL --quick`` is run as a
command (a fresh process, 1 torch thread per process on 2 cores); where it refuses (exit 2, e.g. a molecule whose
shortest quick runs would take hours with this model on this machine), its one line is kept and the crystal is
studied alone; with ``--molecule-budget-min M``, the molecule is then studied alone too, with the budget of M minutes
that such a refusal asks for (2.4–2.6 h of one core each for the pretrained models here). Each study's
``results.json`` and ``report.html`` are copied beside ``new_user.json``, which records per model and command the exit
code, the wall time, the load average around it and the last line on stderr, and per finished study its findings and
the seconds its stages took.

    .venv/bin/python benchmarks/new_user.py --molecule ethanol.xyz --crystal quartz.extxyz   # about 15 min here
    .venv/bin/python benchmarks/new_user.py --molecule ethanol.xyz --crystal quartz.extxyz --molecule-budget-min 100

Without ``--molecule`` / ``--crystal``, ethanol (``ase.build.molecule``) and α-quartz (as ``symprobe bench`` builds
it) are written into ``--work`` first. The studies keep their finished stages in ``--work``, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = ("sevenn:7net-0", "chgnet:0.3.0")


def input_files(work: Path, molecule: str | None, crystal: str | None) -> tuple[Path, Path]:
    """The molecule and crystal files: the given ones, or ethanol and α-quartz written into ``work``."""
    from ase.build import molecule as build_molecule
    from ase.io import write

    from symprobe.bench import builtin_set

    work.mkdir(parents=True, exist_ok=True)
    if molecule is None:
        molecule = str(work / "ethanol.xyz")
        write(molecule, build_molecule("CH3CH2OH"))
    if crystal is None:
        crystal = str(work / "quartz.extxyz")
        write(crystal, builtin_set(["alpha-quartz"])["alpha-quartz"])
    return Path(molecule).resolve(), Path(crystal).resolve()


def run_study(model: str, systems: dict[str, Path], out: Path, budget_min: float | None) -> dict[str, Any]:
    """``symprobe study --model MODEL --KIND FILE ... --quick --out OUT`` as a command; what it returned."""
    command = [sys.executable, "-m", "symprobe.cli", "study", "--model", model]
    for kind, path in systems.items():
        command += [f"--{kind}", str(path)]
    command += ["--quick"] + ([] if budget_min is None else ["--budget-min", str(budget_min)]) + ["--out", str(out)]
    load_before, begin = os.getloadavg(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip() and "warn" not in line.lower()]
    shown = " ".join(["symprobe study --model", model, *(f"--{kind} {path.name}" for kind, path in systems.items()), "--quick",
                      *([] if budget_min is None else ["--budget-min", f"{budget_min:g}"])])
    return {"command": shown, "exit_code": done.returncode, "wall_s": time.perf_counter() - begin,
            "load_average_before": load_before, "load_average_after": os.getloadavg(), "last_line": lines[-1] if lines else ""}


def kept(study: dict[str, Any], out: Path, into: Path) -> dict[str, Any]:
    """``study`` with the findings of its results, whose JSON and report are copied into ``into``, and the seconds each
    of its stages took when it was computed (``wall_s`` is this command's, which may have found them all cached)."""
    import json

    into.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "report.html"):
        shutil.copyfile(out / name, into / name)
    findings = json.loads((out / "results.json").read_text())["findings"]
    stages = {path.parent.parent.name + "/" + path.stem: json.loads(path.read_text())["seconds"] for path in sorted(out.glob("*/stages/*.json"))}
    return {**study, "stage_seconds": stages, "findings": [{key: f[key] for key in ("kind", "claim", "holds", "evidence")} for f in findings]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs (default: %(default)s)")
    parser.add_argument("--molecule", default=None, help="molecule file (default: ethanol, written into --work)")
    parser.add_argument("--crystal", default=None, help="crystal file (default: α-quartz, written into --work)")
    parser.add_argument("--work", default=str(REPO / "runs" / "new_user"), help="where the studies run (resumable)")
    parser.add_argument("--out", default=str(REPO / "results" / "new_user"))
    parser.add_argument("--budget-min", type=float, default=None, help="the studies' budget (default: the quick default)")
    parser.add_argument("--molecule-budget-min", type=float, default=None,
                        help="where the molecule is refused at --budget-min, study it alone with this budget (default: do not)")
    args = parser.parse_args(argv)
    from symprobe.files import write_json

    work, out = Path(args.work), Path(args.out)
    molecule, crystal = input_files(work, args.molecule, args.crystal)
    document: dict[str, Any] = {"cpu_count": os.cpu_count(), "threads_per_process": 1, "budget_min": args.budget_min,
                                "molecule_budget_min": args.molecule_budget_min,
                                "inputs": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (molecule, crystal)},
                                "models": {}}
    out.mkdir(parents=True, exist_ok=True)
    for path in (molecule, crystal):
        shutil.copyfile(path, out / path.name)
    for model in args.models.split(","):
        label = Path(model.split(":")[0]).stem
        both = run_study(model, {"molecule": molecule, "crystal": crystal}, work / f"{label}-both", args.budget_min)
        runs = {"molecule_and_crystal": both}
        if both["exit_code"] == 0:
            runs["molecule_and_crystal"] = kept(both, work / f"{label}-both", out / f"{label}-both")
        else:
            alone = {"crystal": (crystal, args.budget_min), "molecule": (molecule, args.molecule_budget_min)}
            for kind, (path, budget) in alone.items():
                if kind == "molecule" and budget is None:
                    continue
                study = run_study(model, {kind: path}, work / f"{label}-{kind}", budget)
                runs[f"{kind}_alone"] = kept(study, work / f"{label}-{kind}", out / f"{label}-{kind}") if study["exit_code"] == 0 else study
        document["models"][model] = runs
        print(f"{model}: " + "; ".join(f"{name} exit {run['exit_code']} in {run['wall_s']:.0f} s" for name, run in runs.items()),
              flush=True)
    write_json(out / "new_user.json", document)
    print(f"wrote {out / 'new_user.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
