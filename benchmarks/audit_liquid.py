"""The audit on the 190 revPBE0-D3 liquid-water test structures (Cheng et al. 2019; the test split of
Langer, Pozdnyakov & Ceriotti 2024), with any model spec, and a readable report.

    .venv/bin/python benchmarks/audit_liquid.py                                  # q-TIP4P/F, all 190
    .venv/bin/python benchmarks/audit_liquid.py --model builtin:water-pet --limit 20 --out /tmp/liquid
    .venv/bin/python benchmarks/audit_liquid.py --model mypackage.calculators:make_calculator

MODEL is any spec ``symprobe audit`` takes (builtin:NAME, metatomic:FILE.pt, a file, module:attribute
for an ASE calculator or factory). Needs the shared data (``structures.shared_data_dir()``: ``$SYMPROBE_DATA``
or ``../shared/data``); without it the script says so and exits 0. Writes ``audit.json``
(docs/audit-schema.md), the audit figures and ``report.md`` into ``--out`` (default
``results/audit_liquid``). ``--device`` (cpu, cuda or cuda:N; default cpu) is where the model runs
(``module:attribute`` calculators run as they are). Structures the model refuses (q-TIP4P/F needs intact O, H, H molecules; 74 of
the 190 frames hold dissociated configurations) are left out and listed in the report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIQUID = Path("liquid/cheng2019_revPBE0-D3_liquid_test190.extxyz")

# Langer, Pozdnyakov & Ceriotti, Mach. Learn.: Sci. Technol. 5, 04LT01 (2024), arXiv 2406.17747: PET on the
# same 190 test cells, float32, reference grid 3i (from /work/shared/reference/study-protocol.md).
PAPER_PET = {
    "energy_by_grid_meV": {"paper-0": 5.09, "paper-i": 2.57, "paper-2": 0.56, "paper-2i": 0.28, "paper-3": 0.157},
    "force_raw_meV_per_A": 2.04,
    "own_energy_mae_meV": 74.0,
    "own_force_mae_meV_per_A": 16.6,
}


def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def markdown_report(data: dict, spec: str, n_read: int, seconds: float) -> str:
    """A short human-readable summary of the audit of the liquid set."""
    s, own = data["summary"], data["summary"]["model_error"]
    model = data["model"]
    invariant = spec in ("builtin:qtip4pf", "symprobe.testing:qtip4pf")
    lines = [
        "# Symmetry audit on the revPBE0-D3 liquid-water test set",
        "",
        f"Model `{spec}` ({model['name']}, evaluated in {model['dtype']}); {s['n_structures']} of {n_read} structures "
        f"audited (192 atoms each); reference grid `{data['grid']['name']}` ({data['grid']['evaluations']} evaluations, "
        f"exact to degree {data['grid']['degree']}); λ spectrum up to {data['lmax']} on `{data['spectrum_grid']['name']}`. "
        f"Wall time {seconds:.0f} s. Data: Cheng et al., PNAS 116, 1110 (2019), test split of Langer, Pozdnyakov & "
        "Ceriotti (2024).",
        "",
        "## Rotational error beside the model's own error",
        "",
        "| quantity | rotational (raw − averaged) | model vs DFT |",
        "|---|---|---|",
        f"| energy MAE (meV/cell) | {fmt(s['rotational_energy_mae_meV'])} | "
        f"{fmt(own and own['energy_mae_meV'])} raw, {fmt(own and own['energy_mae_offset_removed_meV'])} after removing the mean offset |",
        f"| force MAE (meV/Å) | {fmt(s['rotational_force_mae_meV_per_A'])} | {fmt(own and own['force_mae_meV_per_A'])} |",
        f"| force RMSE (meV/Å) | {fmt(s['rotational_force_rmse_meV_per_A'])} | {fmt(own and own['force_rmse_meV_per_A'])} |",
        f"| stress RMS (meV/Å³) | {fmt(s['rotational_stress_rms_meV_per_A3'])} | (no reference stress) |",
        "",
        f"Rotational / own force error: **{fmt(s['force_error_ratio'])}** (the `--fail-above` quantity). "
        f"Spread over the grid: energy std {fmt(s['energy_std_mean_meV'])} meV, force std {fmt(s['force_std_rms_meV_per_A'])} meV/Å. "
        f"Mean symmetry-breaking power of the energy on SO(3): {fmt(s['spectrum_mean_breaking_power_eV2'])} eV².",
        "",
        "Energies: the model's absolute energies need not be on the DFT scale (CP2K/GTH totals are ≈ −469 eV per "
        f"H2O), so the energy error is also given after removing the mean offset per atom "
        f"({fmt(own and own['energy_offset_meV_per_atom'])} meV/atom); only that figure measures the model.",
        "",
        "## Convergence of the averaged prediction with grid size (against the reference grid)",
        "",
        "| grid | evaluations | degree | energy (meV/cell) | forces (meV/Å) | paper's PET, energy (meV/cell) |",
        "|---|---|---|---|---|---|",
    ]
    for row in data["convergence"]:
        paper = PAPER_PET["energy_by_grid_meV"].get(row["grid"])
        lines.append(f"| `{row['grid']}` | {row['evaluations']} | {row['degree']} | {fmt(row['energy_mae_meV'])} | "
                     f"{fmt(row['force_mae_meV_per_A'])} | {fmt(paper)} |")
    lines += [
        "",
        f"For scale, the paper's float32 PET on these cells: rotational error {PAPER_PET['energy_by_grid_meV']['paper-0']} "
        f"meV/cell and {PAPER_PET['force_raw_meV_per_A']} meV/Å against a model error of {PAPER_PET['own_energy_mae_meV']:g} "
        f"meV/cell and {PAPER_PET['own_force_mae_meV_per_A']} meV/Å (Langer, Pozdnyakov & Ceriotti, arXiv 2406.17747).",
        "",
    ]
    if invariant:
        lines += [
            "## Reading this run",
            "",
            "q-TIP4P/F is exactly invariant under rotations and inversion, so every rotational number above is "
            "floating-point round-off (float64: ≲1e-9 meV), a check of the audit itself. Its own error against "
            "revPBE0-D3 is large, and that is expected: it is an empirical potential fitted to experiment, not to "
            "this functional, and its quartic O–H stretch and fixed molecular topology (atoms taken as O, H, H "
            "triples) do not describe the dissociated and reactive frames of this set.",
            "",
        ]
    if data["skipped"]:
        lines += [f"## Left out: {len(data['skipped'])} of {n_read} structures", ""]
        lines += [f"- {item['reason']}" for item in data["skipped"][:10]]  # each reason names its structure
        if len(data["skipped"]) > 10:
            lines.append(f"- … and {len(data['skipped']) - 10} more (all listed in audit.json under `skipped`)")
        lines.append("")
    lines += ["Figures: `convergence.png`, `spectrum.png`, `distribution.png`; all numbers: `audit.json` "
              "(keys in docs/audit-schema.md)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:qtip4pf", help="model spec (default: q-TIP4P/F)")
    parser.add_argument("--limit", type=int, default=None, help="audit only the first N structures")
    parser.add_argument("--grid", default="3i", help="reference grid (default: the paper's 3i)")
    parser.add_argument("--lmax", type=int, default=2, help="largest λ of the spectrum (default 2)")
    parser.add_argument("--convergence", default="default",
                        help="comma-separated convergence grids, 'default' or 'none' (as symprobe audit)")
    parser.add_argument("--dtype", choices=("float64", "model"), default="float64", help="evaluation precision")
    parser.add_argument("--out", default=str(REPO / "results" / "audit_liquid"), help="output directory")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda or cuda:N")
    args = parser.parse_args(argv)

    from symprobe.models.device import DeviceError, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")

    import torch

    from symprobe.audit import audit, in_float64, summary_text, write_results
    from symprobe.files import atomic_write
    from symprobe.models.external import load_model
    from symprobe.structures import read_structures, shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / LIQUID).exists():
        print(f"skipped: the shared data ({LIQUID}) is not present; set $SYMPROBE_DATA or place it in ../shared/data")
        return 0
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be positive")
    frames = read_structures(root / LIQUID, index=":" if args.limit is None else f":{args.limit}")
    model = load_model(args.model, dtype=torch.float64 if args.dtype == "float64" else None, device=device)
    if args.dtype == "float64":
        model = in_float64(model)
    convergence = {"default": None, "none": []}.get(args.convergence)
    if convergence is None and args.convergence != "default":
        convergence = [name.strip() for name in args.convergence.split(",") if name.strip()]
    start = time.perf_counter()
    report = audit(model, frames, grid=args.grid, lmax=args.lmax, convergence_grids=convergence, progress=True,
                   model_spec=args.model, skip_failures=True)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    data = report.to_dict()
    write_results(data, out)
    atomic_write(out / "report.md", markdown_report(data, args.model, len(frames), seconds))
    print(summary_text(data))
    print(f"wrote {out}/audit.json, report.md and figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
