"""The bad-input table of docs/bad-input.md: each case is run through the CLI here, so the table stays true.

Every case writes its input files into the current directory, runs ``symprobe ARGV`` in-process and records
the exit code and the one line on stderr. tests/test_faults.py runs the same cases and checks that the
document equals what this script writes.

    python benchmarks/bad_input_table.py            # rewrites docs/bad-input.md (runs in a temporary directory)
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from symprobe.cli import main
from symprobe.files import atomic_write

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
MD = "structure: builtin:water-monomer\nmodel: builtin:qtip4pf\ntimestep_fs: 0.5\nsteps: 10\n"
TRAIN = "data: {path: data.extxyz, train: 1, val: 1, test: 0}\n"
COPPER = ("from ase.calculators.emt import EMT\nfrom symprobe.models.base import CalculatorModel\n\n\n"
          "def make():\n    return CalculatorModel(EMT(), name='emt-copper', species=[29])\n")  # a model said to know Cu only
SMALL_BOX = ('3\nLattice="6 0 0 0 6 0 0 0 6" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
             "O 3.0 3.0 3.0\nH 3.757 3.0 3.586\nH 2.243 3.0 3.586\n")  # a water molecule in a 6 Å periodic cell
LABELLED_MONOMER = ('3\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc="F F F"\n'
                    "O 0.0 0.0 0.0 0 0 0\nH 0.757 0.0 0.586 0 0 0\nH -0.757 0.0 0.586 0 0 0\n")  # planar, labelled


@dataclass
class Case:
    """One bad input: ``files`` written first (name → text), then ``symprobe ARGV``; ``expect`` is part of the message."""

    name: str
    input: str
    argv: list[str]
    code: int
    expect: str
    files: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("md-missing-config", "no config file", ["md", "missing.yaml"], 2, "no such config file"),
    Case("md-malformed-yaml", "malformed YAML", ["md", "md.yaml"], 2, "not valid YAML at line",
         {"md.yaml": MD + "output: {directory: run\n"}),
    Case("md-negative-steps", "`steps: -3`", ["md", "md.yaml"], 2, "steps must be positive", {"md.yaml": MD.replace("10", "-3")}),
    Case("md-timestep-text", "`timestep_fs: fast`", ["md", "md.yaml"], 2, "timestep_fs must be a positive number",
         {"md.yaml": MD.replace("0.5", "fast")}),
    Case("md-unknown-key", "`thermostat: bussi` (unknown key)", ["md", "md.yaml"], 2, "unknown key(s) thermostat",
         {"md.yaml": MD + "thermostat: bussi\n"}),
    Case("md-unknown-model", "`model: builtin:nonexistent`", ["md", "md.yaml"], 2, "unknown built-in model",
         {"md.yaml": MD.replace("qtip4pf", "nonexistent")}),
    Case("md-missing-structure", "`structure: missing.xyz`", ["md", "md.yaml"], 2, "missing.xyz",
         {"md.yaml": MD.replace("builtin:water-monomer", "missing.xyz")}),
    Case("md-resume-nothing", "`--resume` without a checkpoint", ["md", "md.yaml", "--resume"], 2, "no checkpoint",
         {"md.yaml": MD}),
    Case("md-output-is-a-file", "`output.directory` is a file", ["md", "md.yaml"], 2, "cannot write to taken",
         {"md.yaml": MD + "output: {directory: taken}\n", "taken": ""}),
    Case("md-bad-device", "`--device gpu`", ["md", "md.yaml", "--device", "gpu"], 2, "'gpu'", {"md.yaml": MD}),
    Case("md-clients-on-ase", "`clients: 2` on engine ase", ["md", "md.yaml"], 2, "clients: 2 i-PI socket clients need engine ipi",
         {"md.yaml": MD + "clients: 2\n"}),
    Case("md-cluster-on-ase", "`cluster: local:2` on engine ase", ["md", "md.yaml"], 2,
         "it needs engine batched and replicas ≥ 2", {"md.yaml": MD + "cluster: local:2\n"}),
    Case("serve-no-port", "`--address` without `--port`", ["serve", "builtin:qtip4pf", "--structure", "builtin:water-monomer",
         "--address", "127.0.0.1"], 2, "--address needs --port"),
    Case("train-batch-size-0", "`batch_size: 0`", ["train", "train.yaml"], 2, "training.batch_size must be ≥ 1",
         {"train.yaml": TRAIN + "training: {batch_size: 0}\n", "data.extxyz": ""}),
    Case("train-negative-lr", "`lr: -0.01`", ["train", "train.yaml"], 2, "training.lr must be positive",
         {"train.yaml": TRAIN + "training: {lr: -0.01}\n", "data.extxyz": ""}),
    Case("train-negative-epochs", "`epochs: -3`", ["train", "train.yaml"], 2, "training.epochs must be ≥ 1",
         {"train.yaml": TRAIN + "training: {epochs: -3}\n", "data.extxyz": ""}),
    Case("train-negative-width", "`width: -8`", ["train", "train.yaml"], 2, "model.width must be ≥ 1",
         {"train.yaml": TRAIN + "model: {width: -8}\n", "data.extxyz": ""}),
    Case("train-malformed-yaml", "malformed YAML", ["train", "train.yaml"], 2, "not valid YAML at line",
         {"train.yaml": TRAIN + "training: [lr: 0.1\n"}),
    Case("train-missing-data", "data file missing", ["train", "train.yaml"], 2, "data file data.extxyz does not exist",
         {"train.yaml": TRAIN}),
    Case("audit-unknown-model", "model spec `nonsense`", ["audit", "nonsense"], 2, "no such model file"),
    Case("audit-missing-structures", "structure file missing", ["audit", "builtin:qtip4pf", "missing.xyz"], 2, "missing.xyz"),
    Case("audit-unknown-grid", "`--grid nonsense`", ["audit", "builtin:qtip4pf", "--grid", "nonsense", "--out", "a"], 2,
         "unknown quadrature"),
    Case("audit-negative-gate", "`--fail-above -1`", ["audit", "builtin:qtip4pf", "--fail-above", "-1"], 2,
         "--fail-above must be a positive ratio"),
    Case("audit-gate-without-labels", "`--fail-above` on unlabelled structures", ["audit", "builtin:qtip4pf", "--fail-above",
         "0.1", "--out", "a"], 2, "carries reference forces"),
    Case("audit-inversion-gate-without-inversion", "`--fail-above-inversion` on a grid without inversion",
         ["audit", "builtin:qtip4pf", "--grid", "3", "--fail-above-inversion", "0.1", "--out", "a"], 2,
         "needs a grid with inversion"),
    Case("audit-inversion-gate-achiral", "`--fail-above-inversion` on a planar molecule only",
         ["audit", "builtin:qtip4pf", "water.extxyz", "--fail-above-inversion", "0.1", "--out", "a"], 2,
         "no structure can show inversion breaking", {"water.extxyz": LABELLED_MONOMER}),
    Case("audit-isolated-small-cell", "`--isolated` on a molecule in a 6 Å periodic cell",
         ["audit", "builtin:qtip4pf", "box.extxyz", "--isolated", "--out", "a"], 2, "cannot audit as isolated",
         {"box.extxyz": SMALL_BOX}),
    Case("study-bad-mts", "`--mts T`", ["study", "--mts", "T", "--out", "s"], 2, "expected GRID/N_INNER"),
    Case("study-negative-budget", "`--budget-min -1`", ["study", "--budget-min", "-1", "--out", "s"], 2,
         "--budget-min must be positive"),
    Case("grids-unknown", "`--export nope`", ["grids", "--export", "nope", "q.npz"], 2, "unknown quadrature 'nope'"),
    Case("audit-index-past-the-end", "`--index 5` on a file of 2 structures",
         ["audit", "builtin:qtip4pf", "box.extxyz", "--index", "5", "--out", "a"], 2, "index 5 is out of range",
         {"box.extxyz": SMALL_BOX + SMALL_BOX}),
    Case("study-not-water", "a model of Cu only", ["study", "--plan", "--model", "./copper.py:make", "--out", "s"], 2,
         "it needs H and O", {"copper.py": COPPER}),
    Case("export-not-torch", "an ASE calculator", ["export", "ase.calculators.lj:LennardJones", "lj.pt"], 2,
         "cannot be exported: export takes"),
    Case("export-existing-output", "an output file that exists", ["export", "builtin:water-pet", "taken.pt"], 2,
         "exists; replace it with --overwrite", {"taken.pt": ""}),
    Case("export-unknown-grid", "`--grid nope`", ["export", "builtin:water-pet", "pet.pt", "--grid", "nope"], 2,
         "unknown quadrature 'nope'"),
    Case("bench-unknown-structure", "`--structures quartz`", ["bench", "builtin:qtip4pf", "--structures", "H2O,quartz"], 2,
         "unknown bench structure(s) quartz"),
    Case("bench-unknown-grid", "`--grid nope`", ["bench", "builtin:qtip4pf", "--grid", "nope"], 2, "unknown quadrature 'nope'"),
    Case("bench-resume-nothing", "`--resume` without a bench", ["bench", "builtin:qtip4pf", "--resume", "--out", "b"], 2,
         "no bench in b"),
    Case("cluster-no-workers", "`--cluster local:0`", ["audit", "builtin:qtip4pf", "--cluster", "local:0"], 2,
         "local:N needs a number of workers N ≥ 1"),
    Case("cluster-unknown-kind", "`--cluster pbs:jobs.yaml`", ["bench", "builtin:qtip4pf", "--cluster", "pbs:jobs.yaml"], 2,
         "not a cluster spec"),
    Case("cluster-slurm-bad-yaml", "a SLURM YAML without `jobs`", ["audit", "builtin:qtip4pf", "--cluster",
         "slurm:slurm.yaml"], 2, "missing required key(s) jobs", {"slurm.yaml": "cores: 4\nmemory: 4GB\nwalltime: '01:00:00'\n"}),
    Case("cluster-resume-nothing", "`--cluster local:2 --resume` without tasks", ["audit", "builtin:qtip4pf", "--cluster",
         "local:2", "--resume", "--out", "a"], 2, "no tasks of an interrupted run"),
    Case("threads-without-cluster", "`--threads-per-worker 2` without `--cluster`", ["study", "--threads-per-worker", "2"], 2,
         "--threads-per-worker needs --cluster"),
]


def run_case(case: Case) -> tuple[int, str]:
    """(exit code, stderr stripped) of ``case``, run in the current directory."""
    for name, content in case.files.items():
        Path(name).write_text(content)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(case.argv)
    return code, err.getvalue().strip()


def render(rows: list[tuple[Case, int, str]]) -> str:
    """The Markdown document: one row per case (input, command, exit code, message)."""
    intro = ("Generated by `python benchmarks/bad_input_table.py`, which runs every case through the CLI "
             "(tests/test_faults.py checks that this file is current). Exit codes: 0 done, 1 internal error (a bug, "
             "please report it), 2 bad input or an output that cannot be written, 3 the audit's `--fail-above` gate "
             "failed, 130 interrupted (SIGINT or SIGTERM; a checkpoint is written first).")
    lines = ["# Bad input: what symprobe says", "", intro, "", "| input | command | exit | message |", "|---|---|---|---|"]
    for case, code, message in rows:
        escaped = message.replace("|", "\\|")
        lines.append(f"| {case.input} | `symprobe {' '.join(case.argv)}` | {code} | {escaped} |")
    return "\n".join(lines) + "\n"


def run_isolated(case: Case) -> tuple[int, str]:
    """:func:`run_case` in a fresh temporary directory."""
    start = Path.cwd()
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        try:
            return run_case(case)
        finally:
            os.chdir(start)


def main_table() -> None:
    """Run every case and rewrite docs/bad-input.md."""
    rows = [(case, *run_isolated(case)) for case in CASES]
    atomic_write(DOC, render(rows))
    print(f"wrote {DOC} ({len(rows)} cases)")


if __name__ == "__main__":
    main_table()
