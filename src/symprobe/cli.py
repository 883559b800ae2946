"""symprobe: how far a machine-learning interatomic potential is from rotational and inversion symmetry,
whether that changes the physics, and how to remove it.

The command line: each subcommand is one ``_add_<name>`` (arguments) and one ``_run_<name>`` (what it does) pair. The
subcommands raise; :func:`main` alone turns exceptions into one line on stderr and an exit code:
0 done, 1 internal error (a bug: please report it), 2 bad input or an output that cannot be written,
3 the audit's ``--fail-above`` gate failed, 75 stopped at ``--max-minutes`` with its state saved (run the
same command again to continue), 130 interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_GATE, EXIT_TIME_LIMIT, EXIT_INTERRUPTED = 1, 2, 3, 75, 130


DEVICE_HELP = "where models run: cpu (default), cuda or cuda:N; checked before any work starts"
MODEL_HELP = "model spec (the forms and the built-in models are listed at the end of this help)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog is made only when its help is printed (``epilog_from``): listing the built-in
    models and structures imports them, which the other commands need not wait for."""

    epilog_from: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog = self.epilog_from()
        return super().format_help()


def _models_epilog() -> str:
    from symprobe.models.external import SPEC_FORMS, builtin_names

    return f"Model specs: {SPEC_FORMS}. Built-in models: {', '.join(f'builtin:{name}' for name in builtin_names())}."


def _bench_epilog() -> str:
    from symprobe.bench import BUILDERS

    return f"{_models_epilog()} Built-in structures (--structures): {', '.join(BUILDERS)}."


def _md_epilog() -> str:
    from symprobe.md.run import BUILTIN_STRUCTURES

    return (f"{_models_epilog()} Built-in structures (structure:): {', '.join(BUILTIN_STRUCTURES)}; a file path is read "
            "relative to the config's directory. Output: output.directory (default ./md).")


def _add_device(p: argparse.ArgumentParser, default: str | None = "cpu") -> None:
    p.add_argument("--device", default=default, help=DEVICE_HELP)


def _add_cluster(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument("--cluster", default=None, metavar="SPEC",
                   help=f"run each {unit} as a task on Dask: local:N (N worker processes here), tcp://HOST:PORT (a running "
                   "scheduler) or slurm:FILE.yaml (docs/cluster.md); results per task in OUT/tasks, the task log in "
                   "OUT/tasks/log.jsonl; default: in turn in this process")
    p.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                   help="torch threads of each worker's task (default 1; with slurm: the YAML's threads_per_worker)")


def _cluster(args: argparse.Namespace):
    """The parsed ``--cluster`` (None: in turn here); a bad spec fails before any work."""
    from symprobe.cluster import ClusterError, parse_cluster

    if args.cluster is None:
        if args.threads_per_worker is not None:
            raise ClusterError("--threads-per-worker needs --cluster")
        return None
    return parse_cluster(args.cluster, args.threads_per_worker)


# --- grids -----------------------------------------------------------------------------------------
def _add_grids(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grids", help="list rotation quadratures with their size and proven degree")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--export", nargs=2, metavar=("NAME", "FILE"), help="write rotations and weights to FILE.npz")


def _run_grids(args: argparse.Namespace) -> int:
    import json

    from symprobe import so3

    if args.export:
        name, path = args.export
        q = so3.get(name)
        written = so3.save_npz(q, path)
        print(f"wrote {q.name}: {len(q)} rotations, degree {q.degree}, to {written}")
        return 0
    rules = so3.available()
    if args.json:
        rows = [{"name": q.name, "size": len(q), "degree": q.degree, "improper": q.improper} for q in rules]
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<16} {'size':>6} {'degree':>6}  O(3)")
    for q in rules:
        print(f"{q.name:<16} {len(q):>6} {q.degree:>6}  {'yes' if q.improper else 'no'}")
    print("degree L: averages of all Wigner-D functions with 1 ≤ ℓ ≤ L vanish (proven, see docs/conventions.md);"
          "\nother names: lebedev-PxK, legendre-L, haar-N-seedS, paper-LABEL, NAME+i")
    return 0


# --- audit -----------------------------------------------------------------------------------------
def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="measure a model's rotational symmetry breaking",
        description="Audit MODEL on STRUCTURES: rotational errors against the average on --grid, spread, "
        "torque, λ spectrum, convergence with grid size and, with labelled structures, the model's own "
        "error. Writes OUT/audit.json (docs/audit-schema.md) and figures. Exit status: 0 ok, 1 internal "
        "error, 2 bad input, 3 when --fail-above is exceeded, 130 interrupted.",
    )
    p.epilog_from = _models_epilog
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("structures", nargs="?",
                   help="structure file readable by ASE, optionally FILE@SLICE as in ASE's tools (FILE@0:10, FILE@-1); "
                   "default: built-in water")
    p.add_argument("--index", default=None, help="ASE index of the structures to read (default ':', all; or give FILE@SLICE)")
    p.add_argument("--grid", default="3i", help="reference quadrature: one model evaluation per rotation (default: the "
                   "paper's 3i, 150; O+i 48, T+i 24, T 12; `symprobe grids` lists sizes and degrees)")
    p.add_argument("--lmax", type=int, default=None,
                   help="largest λ of the angular spectrum (default: what the reference grid gives exactly, its degree / 2 "
                   "and at least 1: 2 on 3i, 1 on O+i or T, at no extra cost); a larger λmax adds the smallest rule "
                   "exact to 2·λmax (e.g. λmax 2 beside O+i adds I+i: 96 evaluations beyond O+i's 48)")
    p.add_argument("--convergence", default="default", metavar="NAMES",
                   help="comma-separated grids compared with the reference ('default': the paper's 0,i,2,2i,3 "
                   "and symprobe's smallest rules with inversion, 177 evaluations beyond 3i's; the default audit "
                   "makes 328 evaluations per structure, about a minute per 192-atom water cell with builtin:water-pet "
                   "on 2 idle CPU cores, and prints its own estimate first; 'none': skip, the cheapest audit)")
    p.add_argument("--dtype", choices=("float64", "model"), default="float64",
                   help="evaluate torch models in float64 (default; separates round-off from learned breaking) "
                   "or in the model's own precision")
    p.add_argument("--isolated", action="store_true",
                   help="audit periodic structures as isolated (pbc off; net force and torque then defined): for a molecule "
                   "in a large box; refused unless the cell is wider than the molecule plus the model's cutoff")
    p.add_argument("--skip-failures", action="store_true",
                   help="leave out structures that fail the checks or that the model refuses (listed in audit.json)")
    p.add_argument("--out", default="audit", help="output directory (default: ./audit; each finished structure is "
                   "kept in OUT/audit.partial.json until the audit ends)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted audit in OUT (same model, structures "
                      "and settings; the structures already done are not evaluated again)")
    mode.add_argument("--overwrite", action="store_true", help="replace the audit in OUT")
    p.add_argument("--fail-above", type=float, default=None, metavar="RATIO",
                   help="exit 3 when the force error under proper rotations > RATIO × the model's own force error")
    p.add_argument("--fail-above-inversion", type=float, default=None, metavar="RATIO",
                   help="exit 3 when the rotation-averaged force difference between the chiral structures and their "
                   "mirror images > RATIO × the model's own force error (needs a grid with inversion and a chiral structure)")
    _add_device(p)
    _add_cluster(p, "structure")


def _run_audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from symprobe.audit import RESULT_FILES, AuditError, audit, in_float64, isolated_structures, summary_text, write_results
    from symprobe.interrupt import Interrupted
    from symprobe.files import claim_directory
    from symprobe.models.device import resolve_device, strict_float32
    from symprobe.models.external import load_model
    from symprobe.structures import builtin_structures, read_structures, reference_labels

    _check_gates(args)
    if args.lmax is not None and args.lmax < 0:
        raise AuditError(f"--lmax must be ≥ 0, got {args.lmax}")
    device = resolve_device(args.device)  # before anything is written
    cluster = _cluster(args)
    source, index = _structure_source(args.structures, args.index)
    out, partial = Path(args.out), Path(args.out) / "audit.partial.json"
    identity = _audit_identity(args, source, index)
    claim_directory(out, [partial.name, "tasks"], args.resume, args.overwrite, kept=RESULT_FILES)
    if cluster is not None:
        from symprobe.audit.tasks import structure_farm
        from symprobe.cluster import claim_task_root

        claim_task_root(out / "tasks", identity, args.resume)
        farm, kept = structure_farm(args.model, args.dtype, str(device), out / "tasks", cluster, input_errors=_bad_input()), out / "tasks"
    else:
        farm, kept = None, partial
    done = _resumed_audit(partial, identity) if args.resume and cluster is None else []
    strict_float32()  # TF32 would read as symmetry breaking
    model = load_model(args.model, dtype=torch.float64 if args.dtype == "float64" else None, device=device)
    if args.dtype == "float64":
        model = in_float64(model)  # also torch models given as module:attribute
    structures = read_structures(source, index) if source else builtin_structures()
    gate = "--fail-above" if args.fail_above is not None else "--fail-above-inversion"
    if _gated(args) and not any(reference_labels(a)[1] is not None for a in structures):
        raise AuditError(
            f"{gate} compares with the model's own force error, but no structure in "
            f"{source or 'the built-in set'} carries reference forces"
        )
    if args.fail_above_inversion is not None:
        _check_chiral(structures)
    convergence = {"default": None, "none": []}.get(args.convergence)
    if convergence is None and args.convergence != "default":
        convergence = [name.strip() for name in args.convergence.split(",") if name.strip()]
    _print_audit_plan(args.grid, args.lmax, convergence, len(structures), len(done))
    originals, structures = structures, isolated_structures(model, structures) if args.isolated else structures
    _print_periodicity(originals, args.isolated)  # after a refusal to isolate, not before
    on_estimate, on_structure = _keeping(partial, identity, done, len(structures)) if farm is None else (None, None)
    try:
        report = audit(model, structures, grid=args.grid, lmax=args.lmax, convergence_grids=convergence, progress=True,
                       model_spec=args.model, skip_failures=args.skip_failures, done=[_done(r) for r in done],
                       on_structure=on_structure, on_estimate=on_estimate, farm=farm)
    except KeyboardInterrupt:
        kept_count = len(done) if farm is None else len(list(kept.glob("*/result.json")))
        raise Interrupted(f"stopped; {kept_count} of {len(structures)} structures kept in {kept}; continue with "
                          "--resume") from None
    data = report.to_dict()
    path, *figures = write_results(data, out)
    partial.unlink(missing_ok=True)
    for skipped in data["skipped"]:
        print(f"skipped structure {skipped['index']} ({skipped['name']}): {skipped['reason']}")
    print(summary_text(data))
    print(f"wrote {path} and {', '.join(f.name for f in figures)}")
    return _gate_status(args, data)


def _check_gates(args: argparse.Namespace) -> None:
    from symprobe import so3
    from symprobe.audit import AuditError

    for flag, value in (("--fail-above", args.fail_above), ("--fail-above-inversion", args.fail_above_inversion)):
        if value is not None and not value > 0:
            raise AuditError(f"{flag} must be a positive ratio, got {value}")
    if args.fail_above_inversion is not None and not so3.get(args.grid).improper:
        raise AuditError(f"--fail-above-inversion needs a grid with inversion (e.g. 3i), not {args.grid}")


def _check_chiral(structures: list) -> None:
    """--fail-above-inversion on structures that cannot show inversion breaking is refused before any work."""
    from symprobe.audit import AuditError
    from symprobe.audit.mirror import why_no_inversion_signal
    from symprobe.structures import structure_label

    reasons = [why_no_inversion_signal(atoms) for atoms in structures]
    if all(reason is not None for reason in reasons):
        named = "; ".join(f"{structure_label(a, k)}: {r}" for k, (a, r) in enumerate(zip(structures[:3], reasons)))
        raise AuditError(f"--fail-above-inversion: no structure can show inversion breaking ({named}); add a chiral one")


def _gated(args: argparse.Namespace) -> bool:
    return args.fail_above is not None or args.fail_above_inversion is not None


def _gate_status(args: argparse.Namespace, data: dict) -> int:
    """EXIT_GATE when a requested gate fails (each failure named on stderr), else 0."""
    from symprobe.audit import exceeds
    from symprobe.audit.channels import exceeds_inversion

    summary, failed = data["summary"], False
    own = summary["model_error"]["force_mae_meV_per_A"] if _gated(args) else None
    if args.fail_above is not None and exceeds(data, args.fail_above):
        rot = summary["channels"]["rotation"]["force_mae_meV_per_A"]
        print(f"FAIL: force error under proper rotations {rot:.4g} meV/Å > {args.fail_above:g} × own force error "
              f"{own:.4g} meV/Å", file=sys.stderr)
        failed = True
    if args.fail_above_inversion is not None and exceeds_inversion(summary, args.fail_above_inversion):
        inv = summary["channels"]["inversion"]["force_difference_mae_meV_per_A"]
        print(f"FAIL: force difference under inversion {inv:.4g} meV/Å > {args.fail_above_inversion:g} × own force error "
              f"{own:.4g} meV/Å", file=sys.stderr)
        failed = True
    return EXIT_GATE if failed else 0


def _structure_source(structures: str | None, index: str | None) -> tuple[str | None, str]:
    """(file, ASE index) from ``FILE``, ``FILE@SLICE`` (as ASE's tools read it) and ``--index``."""
    from pathlib import Path

    from ase.io.formats import parse_filename

    if structures is None or Path(structures).exists() or "@" not in structures:
        return structures, index or ":"
    name, parsed = parse_filename(structures)
    if index is not None:
        raise ValueError(f"{structures}: give the slice either after @ or with --index, not both")
    if isinstance(parsed, slice):
        parsed = ":".join("" if v is None else str(v) for v in (parsed.start, parsed.stop, parsed.step)).rstrip(":") or ":"
    return name, ":" if parsed is None else str(parsed)


def _audit_identity(args: argparse.Namespace, source: str | None, index: str) -> dict:
    """What an interrupted audit must share with its resumption (JSON values)."""
    from pathlib import Path

    from symprobe.files import file_sha256

    model_file, structure_file = Path(args.model.removeprefix("metatomic:")), Path(source or "")
    return {"model": args.model, "model_sha256": file_sha256(model_file) if model_file.is_file() else None,
            "structures": source, "structures_sha256": file_sha256(structure_file) if source and structure_file.is_file() else None,
            "index": index, "grid": args.grid, "lmax": args.lmax, "convergence": args.convergence, "dtype": args.dtype,
            "skip_failures": args.skip_failures, "isolated": args.isolated}


def _resumed_audit(partial, identity: dict) -> list[dict]:
    """The finished structures of the interrupted audit at ``partial``; refused if its settings differ."""
    import json

    from symprobe.audit import AuditError
    from symprobe.checks import differences

    if not partial.exists():
        raise AuditError(f"--resume: no interrupted audit in {partial.parent} ({partial.name} is missing)")
    saved = json.loads(partial.read_text())
    changed = differences(saved["run"], identity)
    if changed:
        raise AuditError(f"--resume: the settings differ from the audit in {partial.parent} (saved → now): "
                         f"{'; '.join(changed)}; use --overwrite to start again")
    return saved["structures"]


def _done(result: dict):
    from symprobe.audit import StructureAudit

    return StructureAudit.from_dict(result)


def _print_periodicity(structures: list, isolated: bool) -> None:
    """One line when structures are periodic: whether they are audited in their cell (torque null) or as isolated."""
    periodic = [atoms for atoms in structures if atoms.pbc.any()]
    if not periodic:
        return
    pbc = " ".join("T" if flag else "F" for flag in periodic[0].pbc)
    count = f"{len(periodic)} of {len(structures)} structures periodic (pbc = {pbc}{', …' if len(periodic) > 1 else ''})"
    if isolated:
        print(f"audit: {count}: audited as isolated (--isolated: pbc off, no atom within the cutoff of a periodic image)", flush=True)
    else:
        print(f"audit: {count}: audited as periodic, so net force and torque are not defined (null in audit.json); "
              "--isolated treats a cell wider than the molecule plus the cutoff as isolated", flush=True)


def _keeping(partial, identity: dict, done: list[dict], total: int):
    """(``on_estimate``, ``on_structure``) for :func:`~symprobe.audit.audit`: print the estimated time before the
    first structure; keep every finished structure in ``partial`` (atomic) and, after the first, print the
    estimated time of the rest."""
    import time
    from dataclasses import asdict

    from symprobe.files import write_json

    started, first = time.perf_counter(), len(done)

    def estimate(total_s: float, call_s: float) -> None:
        nonlocal started
        print(f"audit: estimated time about {_duration(total_s)} (one timed model call of {_duration(call_s)} on the "
              "largest structure, scaled to every structure's atoms and evaluations)", flush=True)
        started = time.perf_counter()

    def keep(result) -> None:
        done.append(asdict(result))
        write_json(partial, {"run": identity, "structures": done})
        if len(done) == first + 1 and total > len(done):
            seconds = time.perf_counter() - started
            print(f"audit: first structure took {_duration(seconds)}; about {_duration(seconds * (total - len(done)))} "
                  f"for the remaining {total - len(done)}", flush=True)

    return estimate, keep


def _duration(seconds: float) -> str:
    """``seconds`` in s, min or h, whichever reads best."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _print_audit_plan(grid: str, lmax: int | None, convergence: list[str] | None, n_structures: int, n_done: int) -> None:
    """The grids and where the evaluations per structure go, and the structures left, before any evaluation."""
    from symprobe import so3
    from symprobe.audit import grids as rules

    reference = so3.get(grid)
    lmax = rules.default_lmax(reference) if lmax is None else lmax
    spectrum = rules.spectrum_grid(lmax, reference.improper, reference)
    others = rules.default_convergence_grids() if convergence is None else [so3.get(name) for name in convergence]
    own = rules.evaluations([reference])
    with_spectrum = rules.evaluations([reference, spectrum])
    distinct = rules.evaluations([reference, spectrum, *others])
    where = ("on the reference, no extra evaluations" if spectrum is reference else
             f"on {spectrum.name} (exact to degree {spectrum.degree}), +{with_spectrum - own} evaluations")
    print(f"audit: reference grid {reference.name} ({len(reference)} rotations): {own} evaluations with the unrotated "
          f"structure; λ spectrum to "
          f"λ = {lmax} {where}; convergence grids {', '.join(q.name for q in others) or 'none'}"
          f"{f', +{distinct - with_spectrum} evaluations' if others else ''}; {distinct} distinct evaluations per "
          f"structure, {n_structures - n_done} of {n_structures} structures to go", flush=True)


# --- train -----------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a PET-style model or its invariant twin from a YAML config")
    p.add_argument("config", help="training config (YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output directory")
    p.add_argument("--bundle", metavar="NAME", default=None,
                   help="instead of training: copy the run's best model into the package as built-in NAME with a model card")
    _add_device(p, default=None)


def _run_train(args: argparse.Namespace) -> int:
    import json

    from symprobe.training import bundle, load_config, train_stages

    config = load_config(args.config)
    if args.device is not None:
        config.training["device"] = args.device
    if args.bundle:
        card = bundle(config, args.bundle)
        print(json.dumps(card["test"], indent=2))
        return 0
    summary = train_stages(config, resume=args.resume)
    print(json.dumps({k: v for k, v in summary.items() if k != "split"}, indent=2))
    return 0


# --- pretrain-data ---------------------------------------------------------------------------------
def _add_pretrain_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain-data", help="make a pre-training set of q-TIP4P/F labels (MD of water boxes) from a YAML config",
                       description="q-TIP4P/F NVT of water boxes over the config's temperatures and densities, plus strained and "
                       "compressed frames, labelled with energies (eV), forces (eV/Å) and stress (eV/Å³); resumable by chunks "
                       "(run the same command again). Output: OUTPUT_DIR/pretrain.extxyz and manifest.json.")
    p.add_argument("config", help="pre-training data config (YAML), e.g. configs/pretrain_qtip4pf.yaml")


def _run_pretrain_data(args: argparse.Namespace) -> int:
    import json

    from symprobe.training.pretrain_data import generate, load_pretrain_data_config

    manifest = generate(load_pretrain_data_config(args.config))
    print(json.dumps({k: manifest[k] for k in ("file", "cells", "by_kind", "sha256", "wall_seconds_this_call")}, indent=2))
    return 0


# --- export ----------------------------------------------------------------------------------------
EXPORTABLE = ("symprobe PET-style models: builtin:water-pet, builtin:water-pet-twin or a model file from `symprobe train` (.pt)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model as a metatomic model (.pt) for i-PI, LAMMPS and ASE")
    p.epilog_from = _models_epilog
    p.add_argument("model", help=f"model spec: {EXPORTABLE}")
    p.add_argument("output", help="output file (.pt); an existing file is replaced only with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="precision of the exported model (default: the model's own)")
    p.add_argument("--name", default=None, help="model name stored in the metadata (default: the model's, with @GRID "
                   "when averaged, e.g. water-pet@O+i)")
    p.add_argument("--grid", default=None, metavar="NAME",
                   help="export the model's average over the rotations of quadrature NAME (e.g. O+i, 2i; see "
                   "`symprobe grids`), all rotated copies in one model call; default: the model as it is")
    _add_device(p)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from symprobe import so3
    from symprobe.checks import ConfigError
    from symprobe.files import check_writable
    from symprobe.models.device import resolve_device
    from symprobe.models.export import export_metatomic, exported_name
    from symprobe.models.external import load_model
    from symprobe.models.torch_model import TorchModel

    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    grid = None if args.grid is None else so3.get(args.grid)
    device = resolve_device(args.device)
    check_writable(Path(args.output).parent)
    if Path(args.output).exists() and not args.overwrite:
        raise ConfigError(f"{args.output} exists; replace it with --overwrite, or choose another output file")
    model = load_model(args.model, dtype=dtype, device=device)
    if not isinstance(model, TorchModel):
        raise ValueError(f"{args.model!r} is a {type(model).__name__}, which cannot be exported: export takes {EXPORTABLE}; "
                         "a metatomic model is already exported, and an ASE calculator or module:attribute model is "
                         "audited, averaged (symprobe.symmetrize.GridAverage) and run as it is")
    path = export_metatomic(model, args.output, name=args.name, grid=grid)
    averaged = "" if grid is None else f", averaged over {grid.name} ({len(grid)} rotations)"
    name = args.name or exported_name(model, grid)
    print(f"wrote {path} (metatomic model '{name}', {str(model.dtype).removeprefix('torch.')}, "
          f"cutoff {model.cutoff} Å, species {sorted(model.species or [])}{averaged})")
    return 0


# --- bench -----------------------------------------------------------------------------------------
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="the same symmetry tests for several models on a built-in set of structures")
    p.epilog_from = _bench_epilog
    p.add_argument("models", nargs="+", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--out", default="symprobe-bench", help="output directory (default: ./symprobe-bench; bench.json, "
                   "bench.html; bench.partial.json while it runs)")
    p.add_argument("--grid", default="2i", help="audit grid (default 2i)")
    p.add_argument("--structures", default=None, help="comma-separated names of built-in structures (default: all; "
                   "the names are listed at the end of this help)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="keep the models already benched in --out (same grid and "
                      "structures; an interrupted bench, or a finished one to add models to) and run the others")
    mode.add_argument("--overwrite", action="store_true", help="replace a bench already in --out")
    _add_device(p)
    _add_cluster(p, "model on one structure")


def _run_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from symprobe import so3
    from symprobe.bench import bench, builtin_set, resumable, write_bench
    from symprobe.files import claim_directory, write_json
    from symprobe.interrupt import Interrupted
    from symprobe.models.device import resolve_device, strict_float32
    from symprobe.models.external import load_model

    device = resolve_device(args.device)
    cluster = _cluster(args)
    so3.get(args.grid)  # an unknown grid fails before any work
    structures = builtin_set([n.strip() for n in args.structures.split(",") if n.strip()] if args.structures else None)
    out, partial = Path(args.out), Path(args.out) / "bench.partial.json"
    claim_directory(out, ["bench.json", "bench.html", partial.name, "tasks"], resume=args.resume, overwrite=args.overwrite)
    strict_float32()
    if cluster is not None:
        result = _farmed_bench(args, structures, out, device, cluster)
    else:
        saved = next((path for path in (partial, out / "bench.json") if path.exists()), None) if args.resume else None
        if args.resume and saved is None:
            raise ValueError(f"--resume: no bench in {out} (neither {partial.name} nor bench.json)")
        done = resumable(json.loads(saved.read_text()), args.grid, structures) if saved else None
        models = {spec: None if done and spec in done["models"] else load_model(spec, device=device) for spec in args.models}
        try:
            result = bench(models, structures, args.grid, done=done, on_model=lambda so_far: write_json(partial, so_far))
        except KeyboardInterrupt:
            raise Interrupted(f"stopped; the models finished so far are kept in {partial}; continue with --resume") from None
    write_json(out / "bench.json", result)
    write_bench(result, out / "bench.html")
    partial.unlink(missing_ok=True)
    for spec, data in result["models"].items():
        skipped = ", ".join(s["structure"] for s in data["skipped"]) or "none"
        overall = data["walk_overall"] or {}
        print(f"{spec}: {len(data['structures'])} structures (skipped: {skipped}); ml-peg mean ΔF "
              f"{overall.get('mean_dF_meV_per_A', float('nan')):.3g} meV/Å; above its floor on {', '.join(data['breaks_above_floor']) or 'none'}")
        print("\n".join(f"  {sentence}" for sentence in data["verdict"]))
    print("ml-peg mean ΔF: the force MAE between successive orientations of ml-peg's walk of "
          f"{result['walk_orientations']} orientations, averaged over pairs and structures (0 for an invariant model); "
          "'above its floor': that ΔF exceeds "
          f"{result['floor_factor']:g} × the model's numerical floor on the structure (bench.html explains both)")
    print(f"wrote {out / 'bench.json'} and {out / 'bench.html'}")
    return 0


def _farmed_bench(args: argparse.Namespace, structures: dict, out, device, cluster) -> dict:
    """The bench with each model on each structure a task on ``cluster`` (finished ones in OUT/tasks kept on --resume)."""
    from symprobe.bench import farmed_bench
    from symprobe.cluster import claim_task_root, worker_model
    from symprobe.interrupt import Interrupted

    claim_task_root(out / "tasks", {"models": args.models, "structures": list(structures), "grid": args.grid}, args.resume)
    for spec in args.models:
        worker_model(spec, None, str(device))  # a bad spec fails before any task starts
    try:
        return farmed_bench(args.models, structures, out / "tasks", args.grid, str(device), cluster, input_errors=_bad_input())
    except KeyboardInterrupt:
        raise Interrupted(f"stopped; the finished model-structure pairs are kept in {out / 'tasks'}; continue with --resume") from None


# --- md --------------------------------------------------------------------------------------------
def _add_md(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("md", help="run molecular dynamics from a YAML config")
    p.epilog_from = _md_epilog
    p.add_argument("config", help="MD config (YAML; see configs/md_*.yaml)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue from the checkpoint in the output directory (refused if the config differs from the checkpoint's)")
    mode.add_argument("--overwrite", action="store_true", help="delete the run in the output directory and start again")
    _add_device(p, default=None)
    p.add_argument("--cluster", default=None, metavar="SPEC",
                   help="the config's cluster: (engine batched, replicas ≥ 2): run each replica as a task on Dask: local:N, "
                   "tcp://HOST:PORT or slurm:FILE.yaml (docs/cluster.md)")
    p.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                   help="the config's threads_per_worker: torch threads of each replica's task on the cluster")


def _run_md(args: argparse.Namespace) -> int:
    from symprobe.md import checkpoint_step, load_config, run_md, run_summary
    from symprobe.models.device import resolve_device

    overrides = {key: value for key, value in (("cluster", args.cluster), ("threads_per_worker", args.threads_per_worker))
                 if value is not None}
    config = load_config(args.config, **overrides)
    if args.device is not None:
        config = config.model_copy(update={"device": str(resolve_device(args.device))})
    if args.resume and checkpoint_step(config) == config.steps:
        print(f"md: the run in {config.output.directory} is already finished ({config.steps} of {config.steps} steps); "
              "nothing to do (to go further, raise steps or time_ps in the config and run again with --resume)")
    else:
        run_md(config, resume=args.resume, overwrite=args.overwrite)
    print(run_summary(config))
    return 0


# --- schema ----------------------------------------------------------------------------------------
def _add_schema(sub: argparse._SubParsersAction) -> None:
    from symprobe.schemas import CONFIGS

    p = sub.add_parser("schema", help="print the JSON schema of a config file (for editors)",
                       description="Print the JSON schema of the md, train, pretrain-data or SLURM config, generated from the models that "
                       "validate it. With VS Code's YAML extension, a first line `# yaml-language-server: $schema=md.schema.json` "
                       "in a config checks and completes it as you type.")
    p.add_argument("config", choices=list(CONFIGS), help="which config: " + ", ".join(f"{k} ({v[2]})" for k, v in CONFIGS.items()))


def _run_schema(args: argparse.Namespace) -> int:
    from symprobe.schemas import schema_text

    sys.stdout.write(schema_text(args.config))
    return 0


# --- serve -----------------------------------------------------------------------------------------
def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="an i-PI client: answer i-PI's force requests on a socket with a model",
        description="Serve MODEL to i-PI on a UNIX or inet socket until i-PI sends EXIT: i-PI's Python driver "
        "(i-pi-py_driver) with symprobe's PES. i-PI sends positions and cells only, so --structure gives the atoms "
        "(atomic numbers, pbc). `symprobe md` with engine: ipi and clients: N starts N of these itself.")
    p.add_argument("model", help="model spec: builtin:NAME, metatomic:FILE.pt, a file path, or module:attribute")
    p.add_argument("--structure", required=True,
                   help="the structure i-PI simulates (a file ASE reads, its last frame; or builtin:water-monomer, builtin:water-box)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="NAME", help="i-PI's UNIX socket: its <address> NAME (the file /tmp/ipi_NAME), "
                       "or the path of the socket file")
    where.add_argument("--address", metavar="HOST", help="i-PI's inet socket: host name or IP address (with --port)")
    p.add_argument("--port", type=int, default=None, help="i-PI's inet port (with --address)")
    p.add_argument("--dtype", choices=("model", "float64", "float32"), default="model",
                   help="evaluation precision where the model allows it (default: the model's own, as `symprobe md` loads it)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of this client (default: torch's choice)")
    p.add_argument("--parent", type=int, default=None, metavar="PID",
                   help="end when process PID ends (Linux; how `symprobe md` starts its clients)")
    _add_device(p)


def _run_serve(args: argparse.Namespace) -> int:
    import torch

    from symprobe.md.config import check_ipi_installed
    from symprobe.md.ipi_clients import SocketAddress
    from symprobe.md.ipi_serve import end_with_parent, serve
    from symprobe.md.run import load_structure
    from symprobe.models.device import resolve_device
    from symprobe.models.external import load_model
    from symprobe.structures import check_structure

    if args.parent is not None:
        end_with_parent(args.parent)
    check_ipi_installed()
    if args.unix is not None:
        if args.port is not None:
            raise ValueError("--port goes with --address (an inet socket), not with --unix")
        address = SocketAddress.unix(args.unix)
    else:
        if args.port is None:
            raise ValueError("--address needs --port (the port of i-PI's inet socket)")
        address = SocketAddress.inet(args.address, args.port)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = {"model": None, "float64": torch.float64, "float32": torch.float32}[args.dtype]
    model = load_model(args.model, dtype=dtype, device=device)
    template = load_structure(args.structure)
    check_structure(template, species=model.species)
    print(f"symprobe serve: {model.name} on {device} for {template.get_chemical_formula()}, i-PI at {address}", flush=True)
    serve(model, template, address)
    return 0


# --- study -----------------------------------------------------------------------------------------
def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="the paper's gas, liquid and ice experiments for one model, with a report")
    p.epilog_from = _models_epilog
    p.add_argument("--quick", action="store_true", help="short runs (minutes) instead of the paper's protocols (hours)")
    p.add_argument("--plan", action="store_true", help="measure the model's call costs and print the estimated time of each "
                   "stage of the paper's full protocols, without running them (writes OUT/plan.json)")
    p.add_argument("--budget-min", type=float, default=None,
                   help="quick mode with run lengths planned to fit this many minutes (default 5.5); implies --quick")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes of wall time, keeping finished stages and MD checkpoints, with exit "
                   "code 75; the same command continues (for machines lent in short windows)")
    p.add_argument("--model", default="builtin:water-pet", help="model spec of H and O (default: the bundled PET-style "
                   "model); refused when it cannot take water, named in a warning when its forces are far from the "
                   "study's revPBE0-D3 reference")
    p.add_argument("--out", default="study", help="output directory (default: ./study; stages are cached here and resume)")
    p.add_argument("--long-liquid", type=float, default=None, metavar="PS",
                   help="also run raw, random and MTS liquid water (one 64-molecule box each, MTS as --mts) for PS ps, and "
                   "report D and the c_uu decay time against raw (20 ps: hours on 2 cores; resumes from checkpoints)")
    for kind, what in (("molecule", "one molecule: its orientation bias and angular-momentum drift in the gas phase"),
                       ("bulk", "a periodic liquid or solid, any elements: g(r) per species pair, MSD and D, "
                        "molecular axes, density under NPT"),
                       ("crystal", "a periodic crystal: its space group at 1e-3, 1e-5 and 1e-6 Å, breaking displacement and "
                        "strain, Γ splittings, raw against the 2i and point-group averages")):
        p.add_argument(f"--{kind}", metavar="FILE", default=None,
                       help=f"study your own system instead of water: {what} (any file ASE reads; the last structure)")
    p.add_argument("--mts", default="2i/10", help="MTS variant as GRID/N_INNER: the correction averaged over GRID every "
                   "N_INNER steps of 0.5 fs (default 2i/10, the paper's; T/14 costs about half as much)")
    _add_device(p)
    _add_cluster(p, "liquid replica of each variant")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --plan: also each stage's wall time on N workers (default: N of --cluster local:N or slurm)")


def _run_study(args: argparse.Namespace) -> int:
    from symprobe.files import check_writable
    from symprobe.models.device import resolve_device
    from symprobe.study import parse_mts, run_study
    from symprobe.study.tasks import StudyFarm

    device = resolve_device(args.device)
    cluster = _cluster(args)
    workers = _planned_workers(args.workers, cluster, args.plan)
    for option in ("budget_min", "max_minutes", "long_liquid"):
        if getattr(args, option) is not None and not getattr(args, option) > 0:
            raise ValueError(f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}")
    parse_mts(args.mts)
    check_writable(args.out)
    budget = {} if args.budget_min is None else {"budget_s": 60.0 * args.budget_min}
    systems = {kind: getattr(args, kind) for kind in ("molecule", "bulk", "crystal") if getattr(args, kind) is not None}
    if systems:
        return _run_user_study(args, systems, device, cluster, budget)
    model, control, note = _study_model(args.model)
    if args.plan:
        from symprobe.study import plan_study

        plan = plan_study(args.model, args.out, mts=args.mts, device=str(device), workers=workers)
        on_workers = plan.get("on_workers_s", {})
        print(f"{'stage':<22} {'1 process':>10}" + (f" {f'{workers} workers':>12}" if workers else ""))
        for stage, seconds in plan["estimate_s"].items():
            print(f"{stage:<22} {seconds / 3600:8.2f} h" + (f" {on_workers[stage] / 3600:10.2f} h" if workers else ""))
        print(f"{'total':<22} {plan['total_h']:8.2f} h" + (f" {plan['on_workers_total_h']:10.2f} h" if workers else "")
              + f" on {plan['device']} (model {plan['model']}); wrote {args.out}/plan.json")
        if workers:
            print(f"({plan['on_workers_note']})")
        return 0
    farm = None if cluster is None else StudyFarm(model, str(device), cluster)
    with _keeping_stages(args.out, None if args.max_minutes is None else 60.0 * args.max_minutes):
        results = run_study(model, args.out, quick=args.quick or args.budget_min is not None, control=control, note=note,
                            mts=args.mts, device=device, farm=farm, long_liquid_ps=args.long_liquid, **budget)
    _print_findings(results, args.out)
    return 0


def _run_user_study(args: argparse.Namespace, files: dict[str, str], device, cluster, budget: dict[str, float]) -> int:
    """``symprobe study --molecule/--bulk/--crystal``: each file's study (:mod:`symprobe.study.user_system`)."""
    from symprobe.md.run import load_model, load_structure
    from symprobe.study.user_system import check_kinds, check_systems, run_user_study

    check_kinds(files)
    for option, given in (("--plan", args.plan), ("--cluster", cluster is not None), ("--mts", args.mts != "2i/10"),
                          ("--long-liquid", args.long_liquid is not None)):
        if given:
            raise ValueError(f"{option} goes with the water study, not with --{', --'.join(files)} (not available in this version)")
    model = load_model(args.model, str(device))
    systems = {kind: load_structure(path) for kind, path in files.items()}
    check_systems(model, systems)
    with _keeping_stages(args.out, None if args.max_minutes is None else 60.0 * args.max_minutes, tuple(files)):
        results = run_user_study(model, systems, args.out, quick=args.quick or args.budget_min is not None, spec=args.model,
                                 **budget)
    _print_findings(results, args.out)
    return 0


def _planned_workers(workers: int | None, cluster, plan: bool) -> int | None:
    """The workers a plan is made for: ``--workers``, else those of ``--cluster`` (local:N, or SLURM jobs × workers)."""
    if workers is not None:
        if not plan:
            raise ValueError("--workers goes with --plan (a run's workers are those of --cluster)")
        if workers < 1:
            raise ValueError(f"--workers must be ≥ 1, got {workers}")
        return workers
    if cluster is None or not plan:
        return None
    if cluster.kind == "tcp":
        raise ValueError(f"--plan --cluster {cluster.text}: give the number of workers with --workers")
    return cluster.workers if cluster.kind == "local" else cluster.slurm.jobs * cluster.slurm.processes


@contextmanager
def _keeping_stages(out: str, seconds: float | None = None, kinds: tuple[str, ...] = ()) -> Iterator[None]:
    """Turn an interrupt of a study (SIGINT, SIGTERM, or the end of ``seconds`` of wall time) into one line: the
    finished stages kept in OUT/stages (OUT/KIND/stages for each of ``kinds`` of the user's systems), an MD run in
    progress checkpointed by its engine, and how to go on."""
    from pathlib import Path

    from symprobe.interrupt import Interrupted, TimeLimit, time_limit

    with time_limit(seconds) as deadline:
        try:
            yield
        except KeyboardInterrupt:
            roots = [Path(out) / kind for kind in kinds] or [Path(out)]
            stages = ", ".join(str(root / "stages") for root in roots)
            finished = sorted(path.stem for root in roots for path in (root / "stages").glob("*.json"))
            why = f"time limit of {seconds / 60:g} min reached" if deadline.passed else "stopped"
            raise (TimeLimit if deadline.passed else Interrupted)(
                f"{why}; finished stages kept in {stages} ({', '.join(finished) or 'none yet'}), an MD run in progress "
                f"resumes from its checkpoint in {', '.join(str(root / 'md') for root in roots)}; run the same command again "
                "to continue") from None


def _study_model(spec: str) -> tuple[str, str | None, str | None]:
    """(model spec, invariant control spec or None, note): the bundled model gets its invariant twin. A model that
    cannot take water is refused; one far from the reference is named in a warning on stderr."""
    from symprobe.models.external import load_model
    from symprobe.study.suitability import check_water_model

    for warning in check_water_model(load_model(spec)):  # fails early with the loader's message
        print(f"symprobe study: warning: {warning}", file=sys.stderr, flush=True)
    if spec == "builtin:water-pet":
        try:
            load_model("builtin:water-pet-twin")
            return spec, "builtin:water-pet-twin", None
        except (ValueError, FileNotFoundError):
            return spec, None, "The invariant twin builtin:water-pet-twin is not bundled in this installation: no control run."
    return spec, None, None


def _print_findings(results: dict, out: str) -> None:
    for finding in results["findings"]:
        state = "not tested" if finding["holds"] is None else ("holds" if finding["holds"] else "DOES NOT HOLD")
        print(f"- {finding['claim']}: {state} ({finding['evidence']})")
    print(f"wrote {out}/results.json and {out}/report.html")


# --- demo ------------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the study in quick mode on the bundled water model and its invariant twin (minutes)")
    p.add_argument("--out", default="symprobe-demo", help="output directory (default: ./symprobe-demo)")


def _run_demo(args: argparse.Namespace) -> int:
    from symprobe.files import check_writable
    from symprobe.study import run_study

    check_writable(args.out)
    try:
        model, control, note = _study_model("builtin:water-pet")
    except (ValueError, FileNotFoundError) as error:
        model, control = "symprobe.study:known_answer_model", None
        note = (f"The bundled model builtin:water-pet could not be loaded ({error}); this demo studies the known-answer "
                "model instead: q-TIP4P/F plus an anisotropic term of degrees 1 and 2 (0.02 eV each, "
                "symprobe.testing.anisotropic_qtip4pf), whose symmetry breaking the 2i grid removes exactly.")
        print(f"symprobe demo: {note}")
    with _keeping_stages(args.out):
        results = run_study(model, args.out, quick=True, control=control, note=note)
    _print_findings(results, args.out)
    return 0


COMMANDS = {
    "grids": (_add_grids, _run_grids),
    "audit": (_add_audit, _run_audit),
    "train": (_add_train, _run_train),
    "pretrain-data": (_add_pretrain_data, _run_pretrain_data),
    "export": (_add_export, _run_export),
    "bench": (_add_bench, _run_bench),
    "md": (_add_md, _run_md),
    "serve": (_add_serve, _run_serve),
    "schema": (_add_schema, _run_schema),
    "study": (_add_study, _run_study),
    "demo": (_add_demo, _run_demo),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``symprobe`` argument parser with one subparser per command (the CLI reference is generated from it)."""
    from symprobe import __version__

    parser = _Parser(prog="symprobe", description=" ".join(__doc__.split("\n\n")[0].split()),
                     epilog="Exit codes: 0 done, 1 internal error (a bug), 2 bad input named on one line, 3 the audit's "
                     "--fail-above gate failed, 75 stopped at --max-minutes (run again to continue), 130 interrupted. "
                     "`symprobe COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"symprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _one_line(error: BaseException) -> str:
    """The error's message on one line; an OSError names its file."""
    if isinstance(error, OSError) and error.strerror:
        message = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        message = str(error) or type(error).__name__
    return " ".join(message.split())


def _bad_input() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (exit 2): the modules' own errors (ValueErrors) and missing files."""
    from symprobe.audit import AuditError

    return ValueError, AuditError, ImportError, OSError


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return its exit code (see the module docstring), each error on one line."""
    from symprobe.interrupt import sigterm_as_interrupt

    args = build_parser().parse_args(argv)
    name = f"symprobe {args.command}"
    try:
        with sigterm_as_interrupt():
            return int(COMMANDS[args.command][1](args) or 0)
    except KeyboardInterrupt as error:
        from symprobe.interrupt import TimeLimit

        print(f"{name}: {_one_line(error) if str(error) else 'interrupted'}", file=sys.stderr)
        return EXIT_TIME_LIMIT if isinstance(error, TimeLimit) else EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place where every error becomes a line and a code
        if os.environ.get("SYMPROBE_DEBUG"):
            import traceback

            traceback.print_exc()
        if isinstance(error, _bad_input()):
            print(f"{name}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"{name}: internal error: {type(error).__name__}: {_one_line(error)}; this is a bug in symprobe, please report it "
              "with the command line (SYMPROBE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
