"""Cost and accuracy of the symmetrizers; writes ``symmetrize_cost.json`` and ``symmetrize_cost.png``.

(a) grid averaging: wall time of one batched ``predict_rotated`` of N copies against a loop of N single
    calls, for 3, 192 and 1536 atoms (q-TIP4P/F always; the PET-style model when it is bundled);
(b) rotational error of the average vs number of evaluations for every quadrature family, against a dense
    reference (PET-style model if bundled, else q-TIP4P/F + i-PI's all-ℓ noo3 term scaled to 5 meV), on the liquid test
    structures and the isolated molecule, and for each of the paper's grids (18/36/75/150 evaluations) the
    cheapest rule with no larger energy and force errors (goal: at most half the evaluations);
(c) MTS: wall time per simulated fs relative to raw MD, for each ``--mts GRID/N_INNER`` variant, in the NVE
    runs of (d) and in NVT liquid runs (64 H2O, Bussi 300 K) whose observables (g(r), dipole correlations,
    diffusion, c_uu, orientation bias) are compared within error bars with the paper's MTS (2i/10, the
    averaged model as the paper simulated it): part ``c``;
(d) conserved-quantity drift of raw, averaged, MTS and random-rotation NVE dynamics of the molecule and of a
    64-molecule liquid box equilibrated at 300 K with the model itself (short by default, ``--long`` for 10 ps runs; ``--systems``, ``--strategies``, ``--steps`` select; costs relative to raw
    need raw in ``--strategies``). The JSON is rewritten after every run, so a long job keeps what it has.

    .venv/bin/python benchmarks/symmetrize_cost.py --out results [--quick] [--long] [--parts abcd] [--tag NAME]

``--device`` (cpu, cuda or cuda:N; default cpu) is where the models run (the q-TIP4P/F pre-equilibration of
the liquid starting lattice in parts c and d runs on the CPU, inside ``symprobe.study.liquid``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from symprobe import so3
from symprobe.files import atomic_write, save_figure
from symprobe.md import read_log, run_md
from symprobe.models.base import Model
from symprobe.models.device import DeviceError, device_name, resolve_device
from symprobe.structures import read_structures, rotate, shared_data_dir, water_box, water_monomer
from symprobe.symmetrize import grid_errors
from symprobe.models.qtip4pf import qtip4pf
from symprobe.testing import noo3_qtip4pf


NOO3_AMPLITUDE = 5e-3  # eV per molecule: symmetry breaking of a few meV, as the paper's PET (i-PI's is 0.54 eV)


def pet_or_none(dtype=None, device="cpu") -> Model | None:
    """The bundled PET-style model on ``device``, or None when it is not available in this installation."""
    try:
        import torch

        from symprobe.models.pet import pet_model

        return pet_model("water-pet", dtype=dtype or torch.float32, device=device)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"PET-style model unavailable ({error}); using q-TIP4P/F-based models only")
        return None


def best_time(function, repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (s), after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


MAX_COPIED_ATOMS = 1536 * 36  # (a) measures N rotated copies of an n-atom structure only while N·n stays below this


def cost_vs_rotations(models: dict[str, Model], sizes: list[int], counts: list[int], repeats: int) -> list[dict]:
    """(a) batched vs loop of single calls, for every N in ``counts`` with N·n ≤ ``MAX_COPIED_ATOMS``."""
    structures = {3: water_monomer(), 192: water_box(4, seed=0), 1536: water_box(8, seed=0)}
    rows = []
    for model_name, model in models.items():
        for n_atoms in sizes:
            atoms = structures[n_atoms]
            single = best_time(lambda: model.predict(atoms), repeats)
            for n in (n for n in counts if n * n_atoms <= MAX_COPIED_ATOMS):
                rotations = so3.haar(n, seed=1).rotations
                batched = best_time(lambda: model.predict_rotated(atoms, rotations), repeats)
                loop = best_time(lambda: [model.predict(rotate(atoms, R)) for R in rotations], max(1, repeats // 2))
                rows.append({"model": model_name, "atoms": n_atoms, "rotations": n, "single_s": single,
                             "batched_s": batched, "loop_s": loop, "batched_over_single": batched / single,
                             "batched_over_N_single": batched / (n * single)})
                print(f"(a) {model_name:10s} {n_atoms:5d} atoms N={n:4d}: batched {batched * 1e3:8.1f} ms = "
                      f"{batched / single:6.1f} single calls (loop {loop / single:6.1f})")
    return rows


def quadrature_families(max_evaluations: int) -> list[so3.Quadrature]:
    rules = [so3.identity(), so3.group("D2"), so3.group("T"), so3.group("O"), so3.group("I")]
    rules += [so3.paper_grid(label) for label in ("i", "2", "2i", "3", "3i")]
    rules += [so3.legendre(L) for L in (2, 3, 4)]
    rules += [so3.smallest(L) for L in range(1, 9)]
    rules += [so3.lebedev(p) for p in (3, 5, 7)]
    rules += [so3.haar(n, seed=2) for n in (4, 16, 64, 256)]
    rules += [so3.with_inversion(q) for q in rules
              if not q.improper and not q.name.startswith("paper") and len(q) <= max_evaluations // 2]
    unique = {q.name: q for q in rules if len(q) <= max_evaluations}
    return sorted(unique.values(), key=len)


def family(name: str) -> str:
    base = name.removesuffix("+i")
    for prefix in ("paper", "legendre", "lebedev", "haar"):
        if base.startswith(prefix):
            return prefix + ("+i" if name.endswith("+i") else "")
    return ("group" if base in ("identity", "D2", "T", "O", "I") else base) + ("+i" if name.endswith("+i") else "")


def error_vs_evaluations(model: Model, structures: dict[str, list], reference: so3.Quadrature,
                         max_evaluations: int) -> list[dict]:
    """(b) rotational error of each rule's average against a denser O(3) ``reference`` average."""
    rules = [q for q in quadrature_families(max_evaluations) if q.degree < reference.degree]
    rows = []
    for label, frames in structures.items():
        for q, error in zip(rules, grid_errors(model, frames, rules, reference)):
            rows.append({"structures": label, "grid": q.name, "family": family(q.name), "evaluations": len(q),
                         "degree": q.degree, "energy_meV": 1e3 * error.energy, "force_meV_per_A": 1e3 * error.forces})
        paper = {r["grid"]: r for r in rows if r["structures"] == label and r["grid"].startswith("paper")}
        print(f"(b) {label}: " + ", ".join(f"{g} {r['energy_meV']:.3g} meV" for g, r in paper.items()))
    return rows


PAPER_GRIDS = ("paper-2", "paper-2i", "paper-3", "paper-3i")  # the paper's Legendre grids: 18, 36, 75, 150 evaluations


def fewest_evaluations(degree: int, improper: bool) -> int:
    """A lower bound on the size of any weighted rotation rule exact to ``degree`` L (on SO(3), or on both
    parity sectors of O(3)): the dimension Σ_{ℓ ≤ ⌊L/2⌋} (2ℓ+1)² of the Wigner functions of degree ≤ ⌊L/2⌋
    (doubled for O(3)), since the rule must integrate their squares exactly (a Fisher-type bound)."""
    dimension = sum((2 * l + 1) ** 2 for l in range(degree // 2 + 1))
    return dimension * (2 if improper else 1)


def cheapest_matches(rows: list[dict]) -> list[dict]:
    """(b)'s goal: for each of the paper's grids and structure set, the cheapest other rule whose energy and
    force errors are both at most the paper grid's, and its share of the paper grid's evaluations (goal ≤ ½);
    beside it the fewest evaluations any rule exact to the paper grid's degree can have."""
    out = []
    for label, group in _group(rows, ("structures",)).items():
        for paper in (r for r in group if r["grid"] in PAPER_GRIDS):
            good = [r for r in group if not r["family"].startswith(("paper", "legendre"))  # paper-L is legendre-L
                    and r["energy_meV"] <= paper["energy_meV"] and r["force_meV_per_A"] <= paper["force_meV_per_A"]]
            best = min(good, key=lambda r: (r["evaluations"], r["energy_meV"]), default=None)
            out.append({"structures": label, "paper_grid": paper["grid"], "paper_evaluations": paper["evaluations"],
                        "cheapest": None if best is None else best["grid"],
                        "evaluations": None if best is None else best["evaluations"],
                        "ratio": None if best is None else best["evaluations"] / paper["evaluations"],
                        "fewest_evaluations_same_degree": fewest_evaluations(paper["degree"], paper["grid"].endswith("i"))})
            r = out[-1]
            print(f"(b) {label}: {paper['grid']} ({paper['evaluations']}) matched by {r['cheapest']} "
                  f"({r['evaluations']}, ratio {r['ratio'] if r['ratio'] is None else round(r['ratio'], 2)})")
    return out


def md_config(structure, model: Model, symmetrizer: dict, steps: int, directory: Path, timestep: float) -> dict:
    n_inner = symmetrizer.get("n_inner", 1)
    steps = n_inner * -(-steps // n_inner)  # MTS runs whole outer steps
    checkpoint = n_inner * -(-min(steps, 1000) // n_inner)
    return {"structure": structure, "model": model, "symmetrizer": symmetrizer, "timestep_fs": timestep,
            "steps": steps, "initial_temperature_K": 300, "seed": 0,
            "output": {"directory": directory, "progress": False, "log_stride": n_inner * -(-10 // n_inner),
                       "trajectory_stride": steps, "checkpoint_stride": checkpoint}}


def dynamics(model: Model, systems: dict, steps: int, timestep: float, strategies: dict[str, dict],
             workdir: Path, rows: list[dict], on_row, partial: bool = False, walls: dict | None = None) -> list[dict]:
    """(c) and (d): NVE runs with each strategy, appended to ``rows`` (``on_row()`` after each, so a long run
    keeps what it has): wall time per simulated fs, its ratio to raw (when raw ran), conserved-quantity drift
    and the conserved energy per molecule against time (≤ 200 points, for the figure).
    A run with a checkpoint in ``workdir`` resumes (bit for bit); its wall time is then unknown (None).
    ``partial`` runs nothing: it reports the runs in ``workdir`` as far as their logs go (``steps_done``),
    with the wall times per fs in ``walls`` ((system, strategy) → s/fs, from an earlier report of the runs)."""
    for system, (structure, n_molecules) in systems.items():
        for name, symmetrizer in strategies.items():
            directory = workdir / f"{system}-{name.replace('/', '_').replace(' ', '_')}"
            config = md_config(structure, model, symmetrizer, steps, directory, timestep)
            resumed = (directory / "checkpoint.npz").exists()
            if partial and not (directory / "log.csv").exists():
                continue
            start = time.perf_counter()
            out = directory if partial else run_md(config, resume=resumed)
            wall = None if resumed or partial else time.perf_counter() - start
            log = read_log(out)
            time_ps, conserved = log["time_fs"] / 1000.0, log["conserved_eV"]
            slope = np.polyfit(time_ps, conserved, 1)[0]  # eV/ps
            every = max(1, len(time_ps) // 200)
            if partial:
                per_fs = (walls or {}).get((system, name))
            else:
                per_fs = None if wall is None else wall / (config["steps"] * timestep)
            rows.append({"system": system, "strategy": name, "symmetrizer": symmetrizer, "steps": config["steps"],
                         "steps_done": int(round(log["time_fs"][-1] / timestep)), "timestep_fs": timestep, "resumed": resumed,
                         "wall_s_per_fs": per_fs,
                         "drift_meV_per_molecule_per_ps": 1e3 * slope / n_molecules,
                         "conserved_range_meV_per_molecule": 1e3 * np.ptp(conserved) / n_molecules,
                         "trace": {"time_ps": time_ps[::every].tolist(),
                                   "conserved_meV_per_molecule": (1e3 * (conserved[::every] - conserved[0]) / n_molecules).tolist()}})
            r = rows[-1]
            raw = [q["wall_s_per_fs"] for q in rows if q["system"] == system and q["strategy"] == "raw"]
            known = raw and raw[0] is not None and r["wall_s_per_fs"] is not None
            r["cost_relative_to_raw"] = r["wall_s_per_fs"] / raw[0] if known else None
            on_row()
            print(f"(c,d) {system:8s} {r['strategy']:14s} cost {r['cost_relative_to_raw'] or float('nan'):6.2f}x raw, drift "
                  f"{r['drift_meV_per_molecule_per_ps']:+.3g} meV/H2O/ps, range "
                  f"{r['conserved_range_meV_per_molecule']:.3g} meV/H2O", flush=True)
    return rows


def equilibrated_box(model: Model, workdir: Path, steps: int = 2000) -> tuple:
    """(64-molecule box, description): the q-TIP4P/F-equilibrated lattice of part c, then ``steps`` raw NVT steps
    of ``model`` (Bussi 300 K, τ = 10 fs, 0.5 fs), so that NVE runs start from the model's own 300 K liquid.
    Cached in ``workdir``: every strategy, and a resumed run, starts from the same structure."""
    from symprobe.study import liquid, read_trajectory, run_variant_md

    start, description = liquid.starting_box(workdir / "box64-start", 4, False, 400, 0, progress=False)
    run = run_variant_md(model, start, "raw", workdir / "box64-equilibration", grid="0", n_inner=1, ensemble=liquid.ENSEMBLE,
                         steps=steps, timestep_fs=0.5, seed=0, trajectory_stride=steps, initial_temperature_K=300.0,
                         progress=False)
    atoms = read_trajectory(run)[-1]
    atoms.calc = None
    atoms.set_momenta(None)  # NVE runs draw 300 K velocities from their seed
    atoms.info = {"name": "water box 64 H2O"}
    return atoms, f"{description}, then {steps} steps ({steps * 0.5 / 1000:g} ps) of {model.name} NVT at 300 K"


def liquid_mts(model: Model, settings: list[str], steps: int, workdir: Path) -> dict:
    """(c) NVT liquid runs (64 H2O from a q-TIP4P/F-equilibrated lattice, Bussi 300 K, τ = 10 fs, 0.5 fs) of
    raw MD and of MTS with each GRID/N_INNER setting; cost per simulated fs relative to raw and the study's
    verdicts on every observable against the first setting, the reference (95 % confidence, 8 blocks)."""
    from math import lcm

    from symprobe.study import liquid
    from symprobe.study import parse_mts

    reference = settings[0]
    parsed = {s: parse_mts(s) for s in settings}
    unit = lcm(10, *(n for _, n in parsed.values()))  # common frame times for every run
    if unit > 140:
        raise SystemExit(f"part c: the inner-step counts of {settings} have a least common multiple of {unit} steps; "
                         "frames that far apart are too few for the observables (use counts such as 10 and 14)")
    steps = unit * max(1, round(steps / unit))
    start, description = liquid.starting_box(workdir / "start", 4, False, 400, 0, progress=False)
    common = dict(steps=steps, equilibration_steps=steps // 10, grid="2i", seed=0, trajectory_stride=unit,
                  n_blocks=8, progress=False)
    raw = liquid.liquid_runs(model, {"raw": start}, workdir / "raw", n_inner=1, **common)
    variants, wall_s = {"raw": raw["variants"]["raw"]}, {"raw": raw["wall_s"]}
    for setting, (grid, n) in parsed.items():
        run = liquid.liquid_runs(model, {"mts": start}, workdir / setting.replace("/", "_"), n_inner=n, mts_grid=grid, **common)
        variants[f"mts {setting}"], wall_s[f"mts {setting}"] = run["variants"]["mts"], run["wall_s"]
        print(f"(c) liquid NVT mts {setting}: {wall_s[f'mts {setting}'] / wall_s['raw']:.2f}x raw", flush=True)
    verdicts = liquid.compare_variants({"variants": variants}, reference=f"mts {reference}")["verdicts"]
    summary = {}
    for name, data in variants.items():
        rows = verdicts.get(name, {})
        summary[name] = {"cost_relative_to_raw": wall_s[name] / wall_s["raw"],
                         "wall_s_per_fs": wall_s[name] / (steps * 0.5),
                         "significant_differences": sorted(k for k, v in rows.items() if v["significant"]),
                         "comparisons": len(rows), "diffusion": data["diffusion"], "temperature": data["temperature"]}
    return {"start": description, "steps": steps, "timestep_fs": 0.5, "thermostat": liquid.ENSEMBLE,
            "reference": f"mts {reference}", "runs": summary, "verdicts": verdicts}


def strategies(names: str, grid: str, mts: str) -> dict[str, dict]:
    """Symmetrizer sections by strategy name; ``mts`` lists GRID/N_INNER settings, one MTS strategy each."""
    from symprobe.study import parse_mts

    table = {"raw": {"kind": "none"}, "averaged": {"kind": "grid", "grid": grid}, "random": {"kind": "random"}}
    for setting in mts.split(","):
        q, n = parse_mts(setting)
        table[f"mts {setting}"] = {"kind": "mts", "grid": q, "n_inner": n}
    chosen = {}
    for name in names.split(","):
        matches = {k: v for k, v in table.items() if k == name or (name == "mts" and k.startswith("mts "))}
        if not matches:
            raise SystemExit(f"unknown strategy {name!r} (raw, averaged, random, mts)")
        chosen.update(matches)
    return dict(sorted(chosen.items(), key=lambda item: item[0] != "raw"))  # raw first: costs are relative to it


def plot(results: dict, path: Path) -> None:
    """One panel per part present in ``results`` (a: cost, b: energy and force errors, c: liquid MTS, d: drift)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (["a"] if results.get("cost") else []) + (["b_energy", "b_force"] if results.get("errors") else [])
    panels += (["c"] if results.get("liquid_mts") else []) + (["d"] if results.get("dynamics") else [])
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    if "a" in axes:
        ax = axes["a"]
        for (model, atoms), rows in _group(results["cost"], ("model", "atoms")).items():
            n = [r["rotations"] for r in rows]
            ax.loglog(n, [r["batched_over_single"] for r in rows], "o-", label=f"{model}, {atoms} atoms, batched")
            ax.loglog(n, [r["loop_s"] / r["single_s"] for r in rows], "x:", color=ax.lines[-1].get_color())
        ax.loglog([1, 1000], [1, 1000], "k--", lw=0.8, label="N single calls")
        ax.set(xlabel="rotations N", ylabel="cost / single call", title="(a) grid average cost (x: loop)")
        ax.legend(fontsize=6)
    for key, unit in (("energy", "meV/structure"), ("force", "meV/Å")):
        if f"b_{key}" not in axes:
            continue
        ax = axes[f"b_{key}"]
        column = "energy_meV" if key == "energy" else "force_meV_per_A"
        families = sorted({r["family"] for r in results["errors"]})
        colours = dict(zip(families, plt.get_cmap("tab20").colors))  # one colour per family, a line style per set
        for (label, fam), rows in _group(results["errors"], ("structures", "family")).items():
            ax.loglog([r["evaluations"] for r in rows], [max(r[column], 1e-12) for r in rows], "o--" if label == "molecule" else "s-",
                      ms=3, color=colours[fam], label=f"{label}: {fam}")
        ax.set(xlabel="evaluations", ylabel=f"error vs reference ({unit})", title=f"(b) {key} error")
        if key == "energy":
            ax.legend(fontsize=5, ncol=2)
    if "c" in axes:
        ax, runs = axes["c"], results["liquid_mts"]["runs"]
        bars = ax.bar(list(runs), [r["cost_relative_to_raw"] for r in runs.values()], color="tab:blue")
        for bar, r in zip(bars, runs.values()):
            if r["comparisons"]:
                ax.annotate(f"{len(r['significant_differences'])}/{r['comparisons']} differ", (bar.get_x(), bar.get_height()),
                            fontsize=7, va="bottom")
        ax.axhline(2.0, color="k", ls="--", lw=0.8, label="goal: 2x raw")
        ax.set(ylabel="wall time per fs / raw", title=f"(c) liquid NVT; differences vs {results['liquid_mts']['reference']}")
        ax.legend(fontsize=7)
    if "d" in axes:
        ax = axes["d"]
        largest = 0.0
        for r in results["dynamics"]:
            if "trace" not in r:  # reports written before traces were kept
                continue
            ax.plot(r["trace"]["time_ps"], r["trace"]["conserved_meV_per_molecule"], lw=1,
                    label=f"{r['system']} {r['strategy']}: {r['drift_meV_per_molecule_per_ps']:+.2g} meV/ps")
            largest = max(largest, float(np.max(np.abs(r["trace"]["conserved_meV_per_molecule"]))))
        if largest > 10.0:  # small drifts stay visible beside large ones
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set(xlabel="time (ps)", ylabel="conserved energy − start (meV/H2O)", title="(d) NVE conserved quantity")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _group(rows: list[dict], keys: tuple[str, ...]) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[keys[0]] if len(keys) == 1 else tuple(r[k] for k in keys), []).append(r)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results", help="output directory")
    parser.add_argument("--quick", action="store_true", help="small sizes only (3 and 192 atoms, few rotations)")
    parser.add_argument("--long", action="store_true", help="10 ps drift runs (default: short runs)")
    parser.add_argument("--parts", default="abcd", help="which parts to run: a (cost), b (errors), c (MTS on the liquid), "
                        "d (NVE cost and drift)")
    parser.add_argument("--tag", default="", help="suffix of the output files (symmetrize_cost_TAG.json/.png)")
    parser.add_argument("--systems", default="molecule,box64", help="systems of part d: molecule, box64 (comma-separated)")
    parser.add_argument("--strategies", default="raw,averaged,mts,random", help="strategies of part d")
    parser.add_argument("--mts", default="2i/10,T/14", help="MTS settings of parts c and d as GRID/N_INNER[,...]; "
                        "the first is the reference of part c")
    parser.add_argument("--liquid-steps", type=int, default=4200, help="NVT steps per run of part c (0.5 fs)")
    parser.add_argument("--grid", default="2i", help="grid of the averaged strategy of part d")
    parser.add_argument("--workdir", default=None, help="keep part d's MD runs here; an interrupted run resumes "
                        "from its checkpoint (every 1000 steps) when the command is repeated")
    parser.add_argument("--steps", type=int, default=None, help="steps of part d (default 200 quick, 2000, 20000 --long)")
    parser.add_argument("--partial", action="store_true", help="part d: run nothing, report the runs in --workdir as "
                        "far as they have got (steps_done), e.g. while a long run is still going; wall times are "
                        "kept from the JSON of the same --tag")
    parser.add_argument("--liquid-structures", type=int, default=10, help="liquid test structures in part b")
    parser.add_argument("--device", default="cpu", help="where models run: cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.manual_seed(0)
    pet = pet_or_none(device=device)
    models = {"q-TIP4P/F": qtip4pf(device=device)} | ({"PET-style": pet} if pet is not None else {})
    sizes = [3, 192] if args.quick else [3, 192, 1536]
    counts = [1, 12, 36, 150] if args.quick else [1, 12, 36, 150, 600]
    import hashlib

    from symprobe.models.pet import WEIGHTS_DIR

    weights = WEIGHTS_DIR / "water-pet.pt"
    results: dict = {"device": device_name(device), "torch_threads": torch.get_num_threads(),
                     "pet_weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None,
                     "arguments": vars(args)}
    name = "symmetrize_cost" + (f"_{args.tag}" if args.tag else "")

    def save() -> None:  # json.dumps, not write_json: a diverged run's NaN drift is kept, not refused
        atomic_write(out / f"{name}.json", json.dumps(results, indent=1))
    if "a" in args.parts:
        results["cost"] = cost_vs_rotations(models, sizes, counts, repeats=2 if args.quick else 3)

    if "b" in args.parts:
        error_model = pet_or_none(torch.float64, device) or noo3_qtip4pf(amplitude=NOO3_AMPLITUDE).converted(device=device)
        data = shared_data_dir()
        liquid = []
        if data is not None:
            liquid = read_structures(data / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz")
            liquid = liquid[: 1 if args.quick else args.liquid_structures]
        structures = {"molecule": [water_monomer()]} | ({"liquid": liquid} if liquid else {})
        results["error_model"] = error_model.name
        reference = so3.smallest(7 if args.quick else 10, improper=True)
        results["error_reference"] = reference.name
        results["errors"] = error_vs_evaluations(error_model, structures, reference, 200 if args.quick else 1200)
        results["paper_grid_matches"] = cheapest_matches(results["errors"])

    if "c" in args.parts:
        dyn_model = pet if pet is not None else noo3_qtip4pf(amplitude=NOO3_AMPLITUDE).converted(device=device)
        with tempfile.TemporaryDirectory() as work:
            results["liquid_mts_model"] = dyn_model.name
            results["liquid_mts"] = liquid_mts(dyn_model, args.mts.split(","), args.liquid_steps, Path(work))
        save()

    if "d" in args.parts:
        steps = args.steps or (20000 if args.long else (200 if args.quick else 2000))
        dyn_model = pet if pet is not None else noo3_qtip4pf(amplitude=NOO3_AMPLITUDE).converted(device=device)
        wanted = set(args.systems.split(","))
        systems = {"molecule": (water_monomer(), 1)} if "molecule" in wanted else {}
        with tempfile.TemporaryDirectory() as work:
            workdir = Path(args.workdir or work)
            if "box64" in wanted and (not args.quick or args.long):
                box, results["box64_start"] = equilibrated_box(dyn_model, workdir)
                systems["box64"] = (box, 64)
            results["dynamics_model"] = dyn_model.name
            results["dynamics"] = []
            earlier = out / f"{name}.json"
            walls = {(r["system"], r["strategy"]): r["wall_s_per_fs"] for r in
                     (json.loads(earlier.read_text()).get("dynamics", []) if args.partial and earlier.exists() else [])}
            dynamics(dyn_model, systems, steps, 0.5, strategies(args.strategies, args.grid, args.mts), workdir,
                     results["dynamics"], save, partial=args.partial, walls=walls)

    save()
    plot(results, out / f"{name}.png")
    print(f"wrote {out / (name + '.json')} and {out / (name + '.png')}")


if __name__ == "__main__":
    main()
