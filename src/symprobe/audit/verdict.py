"""The audit's verdict in words: whether the model breaks symmetry beyond its numerical floor, in which channel
(proper rotations, inversion) and at which λ, how large that is against the model's own errors (or a stated
scale), and what removes it at what cost. Built from the summary's ``channels`` (:mod:`.channels`)."""

from __future__ import annotations

from typing import Any

from symprobe import so3


def verdict(summary: dict[str, Any], lmax: int) -> list[str]:
    """Sentences of the verdict, headline first; ``lmax`` is the spectrum's largest λ. Empty without channels."""
    channels = summary.get("channels")
    if channels is None:
        return []
    rotation, inversion = channels["rotation"], channels["inversion"]
    n = summary["n_structures"]
    rot_broken, inv_broken = bool(rotation["broken_on"]), bool(inversion["broken_on"])
    return [_headline(rot_broken, inv_broken, inversion), _rotation_sentence(channels, n),
            _inversion_sentence(channels), _next_step(rotation, inversion, lmax)]


def _headline(rot_broken: bool, inv_broken: bool, inversion: dict[str, Any]) -> str:
    if rot_broken and inv_broken:
        return "Verdict: the model breaks symmetry beyond its numerical floor under proper rotations and under inversion."
    if rot_broken:
        return "Verdict: the model breaks rotational symmetry beyond its numerical floor (proper rotations)."
    if inv_broken:
        return ("Verdict: the model is exact under proper rotations (within its numerical floor) but not under inversion: "
                "it tells a structure from its mirror image.")
    if inversion["measured"] and inversion["chiral"]:
        return "Verdict: no symmetry breaking beyond the numerical floor, under proper rotations or inversion."
    return "Verdict: no rotational symmetry breaking beyond the numerical floor; inversion is not tested here (below)."


def _sizes(kind: str, energy: float, force: float, channels: dict[str, Any], ratios: tuple[float | None, float | None]) -> str:
    scale = channels["scale"]
    return (f"{kind} {energy:.3g} meV/atom ({_times(ratios[0])} the {scale['energy_source']}, "
            f"{scale['energy_meV_per_atom']:.3g} meV/atom) and {force:.3g} meV/Å in forces ({_times(ratios[1])} the "
            f"{scale['force_source']}, {scale['force_meV_per_A']:.3g} meV/Å)")


def _times(ratio: float | None) -> str:
    return "n/a ×" if ratio is None else f"{ratio:.3g} ×"


def _rotation_sentence(channels: dict[str, Any], n: int) -> str:
    r = channels["rotation"]
    floor = f"{channels['floor_factor']:g} × the floor of {channels['floor_force_meV_per_A']:.3g} meV/Å"
    if not r["broken_on"]:
        return (f"Proper rotations: within the numerical floor on all {n} structures (F − F̄₊ {r['force_mae_meV_per_A']:.3g} meV/Å, "
                f"E − Ē₊ {r['energy_mae_meV_per_atom']:.3g} meV/atom; breaking counts above {floor}).")
    lambdas = ", ".join(f"λ = {row['lambda']} (" + (f"{row['parity']} parity, " if row["parity"] else "")
                        + f"{100 * row['share']:.0f} % of the breaking power)" for row in r["lambdas"])
    sizes = _sizes("raw against the average over proper rotations", r["energy_mae_meV_per_atom"],
                   r["force_mae_meV_per_A"], channels, (r["energy_ratio"], r["force_ratio"]))
    return f"Proper rotations: broken on {len(r['broken_on'])} of {n} structures, at {lambdas or 'λ above the spectrum'}; {sizes}."


def _inversion_sentence(channels: dict[str, Any]) -> str:
    inv = channels["inversion"]
    unseen = "; ".join(f"{c['name']}: {c['reason']}" for c in inv["cannot_show"])
    if not inv["measured"]:
        return (f"Inversion: not measured, the grid {channels['grid']} has no improper rotations "
                "(use one with inversion, e.g. 3i or NAME+i).")
    if not inv["chiral"]:
        return (f"Inversion: these structures cannot show it ({unseen}); that is no evidence of parity invariance: "
                "audit a chiral structure (e.g. bench's CHFClBr or alpha-quartz).")
    others = f" Not seen on the achiral ones ({unseen})." if unseen else ""
    sizes = _sizes("E(x) − E(−x) averaged over rotations", inv["energy_difference_mae_meV_per_atom"],
                   inv["force_difference_mae_meV_per_A"], channels, (inv["energy_ratio"], inv["force_ratio"]))
    if not inv["broken_on"]:
        return f"Inversion: within the numerical floor on the {len(inv['chiral'])} chiral structures ({sizes}).{others}"
    power = "" if inv["odd_lambda0_power_eV2"] is None else f"; parity-odd λ = 0 power {inv['odd_lambda0_power_eV2']:.3g} eV²"
    return (f"Inversion: broken on {len(inv['broken_on'])} of {len(inv['chiral'])} chiral structures: {sizes}{power}.{others}")


def _next_step(rotation: dict[str, Any], inversion: dict[str, Any], lmax: int) -> str:
    if not rotation["broken_on"] and not inversion["broken_on"]:
        return "Next: nothing to remove; no symmetrizer is needed."
    if not rotation["broken_on"]:
        return ("Next: averaging over the structure and its mirror image (grid 'i', 2 evaluations, twice the cost of one "
                f"prediction) removes it, since the model is exact under rotations: {_how('i')}.")
    top = max((row["lambda"] for row in rotation["lambdas"]), default=lmax)
    rule = so3.smallest(top, improper=bool(inversion["broken_on"]))
    higher = (f" The spectrum stops at λ = {lmax} and λ = {top} carries breaking: rerun with a larger --lmax to see whether "
              "higher λ do too." if top >= lmax else "")
    return (f"Next: averaging over {rule.name} ({len(rule)} evaluations, {len(rule)} × the cost of one prediction, exact to "
            f"λ = {rule.degree}) removes the breaking up to λ = {top}: {_how(rule.name)}; in MD, multiple time stepping "
            f"(--mts) costs less.{higher}")


def _how(grid: str) -> str:
    return (f"GridAverage(model, so3.get('{grid}')) wraps any model (.as_calculator() for ASE), and "
            f"`symprobe export MODEL out.pt --grid {grid}` writes an averaged symprobe torch model")
