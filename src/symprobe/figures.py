"""Figures of an audit, drawn from the audit.json dict (so they can be redrawn from the file alone).

* ``convergence.png``: rotational error of the averaged prediction vs number of evaluations (energy and
  forces), the paper's grids beside symprobe's, with the model's own error for scale (not written when no
  grid besides the reference is compared);
* ``spectrum.png``: RMS amplitude √P_λ (meV) of the energy's λ components on SO(3)/O(3);
* ``distribution.png``: per-structure rotational energy deviation and per-atom force deviation.

Exact zeros cannot be drawn on a log axis: values below ``FLOOR`` are drawn at ``FLOOR`` and said so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from symprobe.files import save_figure
from symprobe.pages import pyplot as _pyplot

FLOOR = 1e-12  # smallest value drawn on log axes (meV or meV/Å)
AUDIT_FIGURES = ("convergence.png", "spectrum.png", "distribution.png")  # every figure an audit may write
FAMILIES = {True: "paper grids (Legendre–Euler)", False: "symprobe smallest rules"}  # convergence curves by ``paper_grid``


def _floor(values) -> np.ndarray:
    return np.maximum(np.abs(np.asarray(values, dtype=float)), FLOOR)


def convergence_series(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The convergence curves to draw: rows of ``report['convergence']`` by family (paper grids, symprobe's
    rules), sorted by evaluations, without the reference grid (zero against itself by construction) and
    without empty families."""
    rows = [r for r in report["convergence"] if r["grid"] != report["grid"]["name"]]
    series = {label: sorted((r for r in rows if r["paper_grid"] == paper), key=lambda r: r["evaluations"])
              for paper, label in FAMILIES.items()}
    return {label: family for label, family in series.items() if family}


def own_error_lines(own: dict[str, Any] | None) -> dict[str, tuple[float, str] | None]:
    """The model's own energy (meV per structure) and force (meV/Å) MAE as (value, label) for a reference line,
    labelled as the audit's summary text words them (offset removed where that is defined), or None."""
    lines: dict[str, tuple[float, str] | None] = {"energy": None, "forces": None}
    if own is None:
        return lines
    if own.get("energy_mae_offset_removed_meV") is not None:
        value = own["energy_mae_offset_removed_meV"]
        lines["energy"] = (value, f"model's own energy MAE after removing a mean offset ({value:.4g} meV)")
    elif own.get("energy_mae_meV") is not None:
        lines["energy"] = (own["energy_mae_meV"], f"model's own energy MAE ({own['energy_mae_meV']:.4g} meV)")
    if own.get("force_mae_meV_per_A") is not None:
        lines["forces"] = (own["force_mae_meV_per_A"], f"model's own force MAE ({own['force_mae_meV_per_A']:.4g} meV/Å)")
    return lines


def convergence_figure(report: dict[str, Any], path: Path) -> Path:
    """Rotational error of the averaged prediction against the reference grid vs evaluations (log–log)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = convergence_series(report)
    own = own_error_lines(report["summary"]["model_error"])
    for ax, key, unit, line in (
        (axes[0], "energy_mae_meV", "meV per structure", own["energy"]),
        (axes[1], "force_mae_meV_per_A", "meV/Å", own["forces"]),
    ):
        for label, rows in series.items():
            x = [r["evaluations"] for r in rows]
            y = _floor([r[key] for r in rows])
            ax.plot(x, y, "o-" if label == FAMILIES[True] else "s--", label=label)
            for r, xi, yi in zip(rows, x, y):
                ax.annotate(r["grid"], (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        if line is not None:
            ax.axhline(line[0], color="k", ls=":", label=line[1])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("evaluations per structure")
        ax.set_ylabel(f"|averaged − reference| ({unit})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("energy")
    axes[1].set_title("forces")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"{report['model']['name']} ({report['model']['dtype']}): reference {report['grid']['name']} "
        f"({report['grid']['evaluations']} evaluations); values < {FLOOR:g} drawn at {FLOOR:g}",
        fontsize=9,
    )
    return save_figure(fig, path)


def spectrum_figure(report: dict[str, Any], path: Path) -> Path:
    """√P_λ in meV per structure (thin) and √(mean P_λ) (thick), parity sectors when present."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lam = np.arange(report["lmax"] + 1)
    summary = report["summary"]
    sectors = (
        [("power_even_eV2", "spectrum_mean_power_even_eV2", "even", "C0"), ("power_odd_eV2", "spectrum_mean_power_odd_eV2", "odd", "C3")]
        if summary["spectrum_mean_power_odd_eV2"] is not None
        else [("power_eV2", "spectrum_mean_power_eV2", "SO(3)", "C0")]
    )
    for key, mean_key, label, color in sectors:
        first = 1 if label != "odd" else 0  # λ = 0 even is the invariant mean, not breaking
        for s in report["structures"]:
            ax.plot(lam[first:], _floor(np.sqrt(s["spectrum"][key][first:]) * 1e3), color=color, alpha=0.15, lw=0.7)
        ax.plot(lam[first:], _floor(np.sqrt(summary[mean_key][first:]) * 1e3), "o-", color=color, lw=2, label=f"{label} (rms over structures)")
    ax.set_yscale("log")
    ax.set_xticks(lam)
    ax.set_xlabel("λ")
    ax.set_ylabel("√P_λ (meV)")
    ax.set_title(f"angular spectrum of E(Rx), rule {report['spectrum_grid']['name']}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def _sparse_log_ticks(ax: Any) -> None:
    """Labels that cannot collide on a log x axis: short (``1e-12``), at most six decades, or 1-2-5 within less
    than two decades; none on minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = np.log10(ax.get_xlim())
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if high - low < 2 else (1.0,), numticks=6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def distribution_plot(report: dict[str, Any]) -> Any:
    """The figure of :func:`distribution_figure`, not yet saved."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    structures = report["structures"]
    energy = _floor([s["energy_deviation_meV"] for s in structures])
    forces = _floor(np.concatenate([s["force_deviation_per_atom_meV_per_A"] for s in structures]))
    own = own_error_lines(report["summary"]["model_error"])
    for ax, values, title, unit, line in (
        (axes[0], energy, "energy, per structure", "meV", own["energy"]),
        (axes[1], forces, "forces, per atom", "meV/Å", own["forces"]),
    ):
        low, high = np.log10(values.min()), np.log10(values.max())
        bins = np.logspace(low - 0.1, high + 0.1, 30) if high > low else 10 ** np.array([low - 0.5, low + 0.5])
        ax.hist(values, bins=bins, color="C0", alpha=0.8)
        if line is not None:
            ax.axvline(line[0], color="k", ls=":", label=line[1])
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        _sparse_log_ticks(ax)
        ax.set_xlabel(f"|raw − averaged on {report['grid']['name']}| ({unit})")
        ax.set_ylabel("count")
        ax.set_title(title)
    fig.suptitle(f"{report['model']['name']}: rotational error distribution (values < {FLOOR:g} drawn at {FLOOR:g})", fontsize=9)
    return fig


def distribution_figure(report: dict[str, Any], path: Path) -> Path:
    """Histograms of |E(x) − Ē| per structure and |F_i(x) − F̄_i| per atom, with the model's own error."""
    return save_figure(distribution_plot(report), path)


def audit_figures(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the audit figures (:data:`AUDIT_FIGURES`) into ``out_dir``; convergence.png only when there is a
    convergence grid besides the reference. Returns their paths."""
    out = Path(out_dir)
    written = [convergence_figure(report, out / "convergence.png")] if convergence_series(report) else []
    return written + [spectrum_figure(report, out / "spectrum.png"), distribution_figure(report, out / "distribution.png")]
