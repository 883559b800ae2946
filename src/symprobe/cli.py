"""The ``symprobe`` command: thin argument parsing that calls the modules.

Each subcommand is one ``_add_<name>`` (arguments) and one ``_run_<name>`` (what it does) pair.
"""

from __future__ import annotations

import argparse
import sys


# --- grids -----------------------------------------------------------------------------------------
def _add_grids(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grids", help="list rotation quadratures with their size and proven degree")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--export", nargs=2, metavar=("NAME", "FILE"), help="write rotations and weights to FILE.npz")


def _run_grids(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe grids: not available yet")


# --- audit -----------------------------------------------------------------------------------------
def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="measure a model's rotational symmetry breaking")
    p.add_argument("model", help="model spec: builtin:NAME, metatomic:FILE.pt, a file path, or module:attribute")
    p.add_argument("structures", nargs="?", help="structure file readable by ASE (default: built-in water)")
    p.add_argument("--grid", default=None, help="quadrature name (see `symprobe grids`)")
    p.add_argument("--lmax", type=int, default=4, help="largest λ of the angular spectrum")
    p.add_argument("--out", default="audit", help="output directory")
    p.add_argument("--fail-above", type=float, default=None, metavar="RATIO",
                   help="exit 1 when rotational force error > RATIO × the model's own force error")


def _run_audit(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe audit: not available yet")


# --- train -----------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a PET-style model or its invariant twin from a YAML config")
    p.add_argument("config", help="training config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")


def _run_train(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe train: not available yet")


# --- export ----------------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model as a metatomic model (.pt)")
    p.add_argument("model", help="model spec")
    p.add_argument("output", help="output file (.pt)")


def _run_export(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe export: not available yet")


# --- md --------------------------------------------------------------------------------------------
def _add_md(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("md", help="run molecular dynamics from a YAML config")
    p.add_argument("config", help="MD config (YAML)")


def _run_md(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe md: not available yet")


# --- demo ------------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on built-in defaults")
    p.add_argument("--out", default="symprobe-demo", help="output directory")


def _run_demo(args: argparse.Namespace) -> int:
    raise SystemExit("symprobe demo: not available yet")


COMMANDS = {
    "grids": (_add_grids, _run_grids),
    "audit": (_add_audit, _run_audit),
    "train": (_add_train, _run_train),
    "export": (_add_export, _run_export),
    "md": (_add_md, _run_md),
    "demo": (_add_demo, _run_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symprobe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(COMMANDS[args.command][1](args) or 0)


if __name__ == "__main__":
    sys.exit(main())
