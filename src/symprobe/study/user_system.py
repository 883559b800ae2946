"""The study for the user's own systems (``symprobe study --molecule FILE [--bulk FILE] [--crystal FILE]``).

:func:`run_user_study` runs each requested kind's experiments (:data:`KINDS`: ``run_<kind>`` and ``<kind>_section``
of ``symprobe.study.<kind>``), each in ``out/<kind>`` with its share of the budget, then puts the null comparisons of
all kinds (raw against a second raw set) through one calibration gate (Holm over all of them,
:func:`~symprobe.analysis.statistics.calibration_gate`): the findings of a kind whose null comparison fails are
withheld. It writes ``results.json`` and ``report.html`` into ``out`` (atomically).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.data import chemical_symbols

from symprobe.analysis import statistics
from symprobe.files import atomic_write, write_json
from symprobe.models.base import Model
from symprobe.pages import CSS, table
from symprobe.study.bulk import bulk_section, run_bulk
from symprobe.study.crystal import crystal_section, run_crystal
from symprobe.study.molecule import molecule_section, run_molecule

SCHEMA = "symprobe-user-study/1"
KindRunner = Callable[..., dict[str, Any]]
KINDS: dict[str, tuple[KindRunner, Callable[[dict[str, Any]], str]]] = {"molecule": (run_molecule, molecule_section),
                                                                        "bulk": (run_bulk, bulk_section),
                                                                        "crystal": (run_crystal, crystal_section)}
PERIODIC_KINDS = ("bulk", "crystal")  # kinds whose structure must be periodic in three directions
DETERMINISTIC_KINDS = {"crystal"}  # kinds whose findings come from relaxations, not sampling: no null comparison


def unknown_elements(model: Model, systems: Mapping[str, Atoms]) -> str | None:
    """A one-line description of the elements of ``systems`` that ``model`` does not cover (None when it covers them
    all, or does not say which it covers)."""
    if model.species is None:
        return None
    missing = {kind: sorted({int(z) for z in atoms.numbers} - set(model.species)) for kind, atoms in systems.items()}
    missing = {kind: numbers for kind, numbers in missing.items() if numbers}
    if not missing:
        return None
    known = ", ".join(chemical_symbols[z] for z in sorted(model.species))
    where = "; ".join(f"{', '.join(chemical_symbols[z] for z in numbers)} in the {kind} {atoms_formula(systems[kind])}"
                      for kind, numbers in missing.items())
    return f"model {model.name!r} does not know the elements {where} (it covers {known})"


def atoms_formula(atoms: Atoms) -> str:
    """The chemical formula of ``atoms`` (Hill order)."""
    return atoms.get_chemical_formula(mode="hill")


def check_kinds(kinds: Iterable[str]) -> None:
    """Raise ``ValueError`` (one line) for an empty request or a kind of system this version cannot study."""
    kinds = list(kinds)
    if not kinds:
        raise ValueError("no system to study: give --molecule, --bulk or --crystal")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"--{kind}: not available in this version (available: {', '.join(f'--{k}' for k in KINDS)})")


def check_systems(model: Model, systems: Mapping[str, Atoms]) -> None:
    """Raise ``ValueError`` (one line) for an unknown kind, an empty request, a bulk or crystal without a cell, or elements
    the model does not know (a model that does not list its elements must evaluate each system once)."""
    check_kinds(systems)
    for kind, atoms in systems.items():
        if kind in PERIODIC_KINDS and (not atoms.pbc.all() or atoms.cell.rank != 3):
            raise ValueError(f"--{kind}: {atoms_formula(atoms)} is not periodic in three directions (a {kind} needs a cell)")
    problem = unknown_elements(model, systems)
    if problem:
        raise ValueError(problem)
    if model.species is None:  # a model that does not say which elements it covers: one evaluation of each system
        for kind, atoms in systems.items():
            try:
                model.predict(atoms)
            except Exception as error:  # a model's own code raises whatever it raises on elements it does not know
                raise ValueError(f"model {model.name!r} cannot evaluate the {kind} {atoms_formula(atoms)} "
                                 f"({type(error).__name__}: {error})") from error


def withheld(result: dict[str, Any], gate: dict[str, Any] | None, kind: str) -> list[dict[str, Any]]:
    """The findings of ``kind``, each tagged with it; withheld (``holds`` None) when the gate fails this kind."""
    failed = gate is not None and not gate["stage_passed"].get(kind, True)
    out = []
    for finding in result["findings"]:
        finding = {**finding, "kind": kind}
        if failed and finding["holds"] is not None:
            finding["holds"] = None
            finding["evidence"] += ("; withheld: the null comparison of this system failed the calibration gate "
                                    f"({', '.join(name for name in gate['significant'] if name.startswith(kind + ':'))})")
        out.append(finding)
    return out


def run_user_study(model: Model, systems: Mapping[str, Atoms], out: str | Path, quick: bool = True, budget_s: float = 330.0,
                   progress: bool = True, seed: int = 0, spec: str | None = None) -> dict[str, Any]:
    """Run the study of each system of ``systems`` (kind → structure) with ``model`` into ``out`` (module docstring),
    each kind with an equal share of ``budget_s`` seconds in quick mode; return the results document (also
    ``out/results.json``). ``spec`` names the model in the report."""
    check_systems(model, systems)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {kind: KINDS[kind][0](model, atoms, out / kind, quick=quick, budget_s=budget_s / len(systems), seed=seed,
                                    progress=progress)
               for kind, atoms in systems.items()}
    tests = {kind: result["null_tests"] for kind, result in results.items() if result["null_tests"]}
    gate = statistics.calibration_gate(tests) if tests else None
    document = {
        "schema": SCHEMA,
        "mode": "quick" if quick else "full",
        "model": {"spec": spec or model.name, "name": model.name},
        "systems": {kind: result["system"] for kind, result in results.items()},
        "confidence": statistics.DEFAULT_CONFIDENCE,
        "kinds": results,
        "calibration_gate": gate,
        "findings": [finding for kind, result in results.items() for finding in withheld(result, gate, kind)],
        "timings_s": {"total_this_run": time.perf_counter() - started},
    }
    write_json(out / "results.json", document)
    atomic_write(out / "report.html", render_user_report(document))
    return document


def render_user_report(document: dict[str, Any]) -> str:
    """The report of :func:`run_user_study` as a self-contained HTML string."""
    model = html.escape(document["model"]["name"])
    systems = ", ".join(f"{kind} {html.escape(formula)}" for kind, formula in document["systems"].items())
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>symprobe study: {model}</title><style>{CSS}</style>"
            f"</head><body><h1>symprobe study of {model} on {systems}</h1>")
    parts = [head, (f"<p>Model spec <code>{html.escape(document['model']['spec'])}</code>; {document['mode']} mode; verdicts at "
                    f"{100 * document['confidence']:g} % confidence.</p>")]
    state = {None: "no verdict", True: "holds", False: "does not hold"}
    parts.append(table("findings", "Findings", ["system", "claim", "result", "evidence"],
                       [[f"{f['kind']} {html.escape(document['systems'][f['kind']])}", html.escape(f["claim"]), state[f["holds"]],
                         html.escape(f["evidence"])] for f in document["findings"]]))
    gate = document["calibration_gate"]
    if gate is None and set(document["systems"]) <= DETERMINISTIC_KINDS:
        parts.append("<p>No null comparison is needed: the crystal study is deterministic (relaxations, no sampling).</p>")
    elif gate is None:
        parts.append("<p>No null comparison ran: the statistical verdicts are not calibrated.</p>")
    else:
        rows = [[kind, html.escape(name), p, p < 1.0 - gate["confidence"]] for kind, tests in gate["adjusted_p"].items()
                for name, p in tests.items()]
        parts.append(f"<p>Calibration gate: {'passed' if gate['passed'] else 'failed'} ({html.escape(gate['correction'])}).</p>"
                     + table("calibration", "Null comparisons (raw against a second raw set)",
                             ["system", "test", "Holm-adjusted p", "significant"], rows))
    parts.extend(KINDS[kind][1](result) for kind, result in document["kinds"].items())
    parts.append("</body></html>")
    return "\n".join(parts)
