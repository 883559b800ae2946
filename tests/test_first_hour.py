"""The first hour of a new user (issue 31), at small size: a home-made ASE calculator in the working directory
(EMT plus the lab-frame term 0.01·(x₀ − x₁) eV on a Cu13 cluster, and EMT alone), audited from the terminal; export,
bench, MD and study as a new user meets them; each point of the issue with the behaviour that misled before."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.io import read, write

from symprobe import so3
from symprobe.audit import audit, model_error_summary, summary_text
from symprobe.bench import BUILDERS, builtin_set
from symprobe.bench.metrics import bench_model
from symprobe.bench.report import breaking_amplitude
from symprobe.cli import EXIT_GATE, main
from symprobe.figures import distribution_plot, own_error_lines
from symprobe.md import load_config
from symprobe.models.export import exported_name
from symprobe.models.external import load_model
from symprobe.progress import LOG_PERCENT_STEP, progress_bar
from symprobe.structures import shared_data_dir
from symprobe.study.suitability import check_water_model

ROOT = Path(__file__).resolve().parents[1]
TILT = 0.01  # eV/Å: the added term 0.01·(x₀ − x₁) eV
MYCALC = '''"""EMT, EMT plus the lab-frame term 0.01·(x0 - x1) eV, and EMT said to know Cu only."""
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from symprobe.models.base import CalculatorModel


class Tilted(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self):
        super().__init__()
        self.emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.emt.calculate(atoms, properties, system_changes)
        forces = self.emt.results["forces"].copy()
        forces[0, 0] -= 0.01
        forces[1, 0] += 0.01
        x = atoms.positions
        self.results = {"energy": self.emt.results["energy"] + 0.01 * (x[0, 0] - x[1, 0]), "forces": forces}


def make_calc():
    return Tilted()


def make_invariant():
    return EMT()


def make_copper_only():
    return CalculatorModel(EMT(), name="emt-copper", species=[29])


def make_pseudoscalar():
    from symprobe.testing import KnownAnswerCalculator

    return KnownAnswerCalculator(pseudoscalar=0.01)
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A new user's directory: mycalc.py and a rattled Cu13 cluster (cu13.xyz); the current directory."""
    (tmp_path / "mycalc.py").write_text(MYCALC)
    cluster = Icosahedron("Cu", 2)
    cluster.rattle(0.05, seed=1)
    cluster.center(vacuum=5.0)
    write(tmp_path / "cu13.xyz", cluster)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def terminal(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``symprobe ARGV`` as the installed command runs it: the current directory is not on the import path
    (``python -P``), and PYTHONPATH names only symprobe's sources."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("SYMPROBE_DEBUG", None)
    return subprocess.run([sys.executable, "-P", "-m", "symprobe.cli", *argv], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=120)


# --- 3: your own module loads from where you stand; 5: small grids are cheap; 8: progress in logs -------------------
def test_home_made_calculator_audited_from_the_terminal(workdir):
    tilted = terminal("audit", "mycalc:make_calc", "cu13.xyz", "--grid", "O+i", "--convergence", "none", "--out", "tilted",
                      cwd=workdir)
    assert tilted.returncode == 0, tilted.stderr
    assert "48 distinct evaluations per structure" in tilted.stdout  # the spectrum follows the grid: λ ≤ 1 on O+i itself
    assert "λ spectrum to λ = 1 on the reference, no extra evaluations" in tilted.stdout
    assert "\r" not in tilted.stderr and len(tilted.stderr.splitlines()) <= 100 // LOG_PERCENT_STEP + 2  # a log, not a bar
    data = json.loads((workdir / "tilted" / "audit.json").read_text())
    assert data["summary"]["rotational_force_max_meV_per_A"] == pytest.approx(1000 * TILT, abs=1e-6)  # the added term, exactly
    positions = read(workdir / "cu13.xyz").positions
    d = positions[0] - positions[1]
    odd, even = data["summary"]["spectrum_mean_power_odd_eV2"], data["summary"]["spectrum_mean_power_even_eV2"]
    assert odd[1] == pytest.approx(TILT**2 * d @ d / 3, rel=1e-8)  # a·(R d)_x: parity-odd λ = 1, power a²|d|²/3
    assert even[1] < 1e-20 and odd[0] < 1e-20  # EMT is invariant
    assert "Verdict: the model breaks rotational symmetry beyond its numerical floor (proper rotations)." in tilted.stdout
    assert "at λ = 1 (odd parity, 100 % of the breaking power)" in tilted.stdout and "Next: averaging over D2" in tilted.stdout

    exact = terminal("audit", "./mycalc.py:make_invariant", "cu13.xyz", "--grid", "T", "--convergence", "none", "--out",
                     "exact", cwd=workdir)
    assert exact.returncode == 0, exact.stderr
    assert "12 distinct evaluations per structure" in exact.stdout
    assert json.loads((workdir / "exact" / "audit.json").read_text())["summary"]["rotational_force_max_meV_per_A"] < 1e-6
    assert "Proper rotations: within the numerical floor on all 1 structures" in exact.stdout
    assert "Inversion: not measured, the grid T has no improper rotations" in exact.stdout

    mirror = terminal("audit", "mycalc:make_pseudoscalar", "cu13.xyz", "--grid", "O+i", "--convergence", "none", "--out",
                      "mirror", cwd=workdir)  # the rattled cluster is chiral
    assert mirror.returncode == 0, mirror.stderr
    assert ("Verdict: the model is exact under proper rotations (within its numerical floor) but not under inversion"
            in mirror.stdout)
    assert "Inversion: broken on 1 of 1 chiral structures" in mirror.stdout and "grid 'i', 2 evaluations" in mirror.stdout


def test_a_module_that_is_nowhere_says_how_to_fix_it(workdir):
    with pytest.raises(ValueError, match="run from the directory that holds it, give its file \\(./nowhere.py:make\\)"):
        load_model("nowhere:make")
    with pytest.raises(ValueError, match="no such Python file"):
        load_model("./nowhere.py:make")
    assert load_model("./mycalc.py:make_calc").name == "./mycalc.py:make_calc"


def test_explicit_lmax_adds_the_smallest_rule_of_its_degree(workdir, capsys):
    assert main(["audit", "./mycalc.py:make_invariant", "cu13.xyz", "--grid", "O+i", "--lmax", "2", "--convergence", "none",
                 "--out", "lmax2"]) == 0
    out = capsys.readouterr().out
    assert "λ spectrum to λ = 2 on I+i (exact to degree 5), +96 evaluations" in out and "144 distinct evaluations" in out
    assert json.loads(Path("lmax2/audit.json").read_text())["spectrum_grid"]["name"] == "I+i"


def test_progress_in_a_log_is_one_line_per_step_of_percent():
    log = io.StringIO()
    for _ in progress_bar(range(1000), desc="work", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 100 // LOG_PERCENT_STEP + 1
    assert [int(re.search(r"(\d+)%", line).group(1)) for line in lines] == list(range(0, 101, LOG_PERCENT_STEP))


# --- 4: energy errors that cannot mislead -----------------------------------------------------------------------------
def labelled(atoms, energy_error: float):
    """``atoms`` labelled with EMT's forces and EMT's energy plus ``energy_error`` (eV)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = atoms.copy()
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=energy + energy_error, forces=forces)
    return atoms


def test_energy_errors_are_worded_so_that_they_cannot_mislead(workdir):
    from ase.build import bulk

    cluster = Icosahedron("Cu", 2)
    cluster.rattle(0.05, seed=1)
    box = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    box.rattle(0.05, seed=2)
    emt = load_model("ase.calculators.emt:EMT")
    one = audit(emt, [labelled(cluster, 0.5)], grid="T", convergence_grids=[]).to_dict()
    text = summary_text(one)
    assert "energy MAE 500 meV (one labelled energy: removing a mean offset is undefined" in text and "0 meV after" not in text
    pair = audit(emt, [labelled(cluster, 0.1), labelled(box, 0.0)], grid="T", convergence_grids=[]).to_dict()
    own = pair["summary"]["model_error"]
    assert own["energy_mae_offset_removed_meV"] > own["energy_mae_meV"] == pytest.approx(50.0)
    assert "larger than the raw MAE" in summary_text(pair)
    figure = distribution_plot(pair)  # the figure's line carries the value and the words of the text
    label = own_error_lines(own)["energy"][1]
    assert label == f"model's own energy MAE after removing a mean offset ({own['energy_mae_offset_removed_meV']:.4g} meV)"
    assert label in [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert f"{own['energy_mae_offset_removed_meV']:.4g} meV after removing a mean offset" in summary_text(pair)
    assert model_error_summary([]) is None


# --- 2: the bench table says what it measures --------------------------------------------------------------------------
def test_bench_names_the_floor_term_and_the_breaking_amplitude(workdir):
    water = builtin_set(["H2O"])
    tilted = bench_model(load_model("./mycalc.py:make_calc"), water)["structures"]["H2O"]
    d = water["H2O"].positions[0] - water["H2O"].positions[1]
    assert breaking_amplitude(tilted["audit"]) == pytest.approx(1000 * TILT * np.linalg.norm(d) / np.sqrt(3) / 3, rel=1e-6)
    assert tilted["floor"]["set_by"] == "translation/permutation"  # the added term is not permutation invariant either
    exact = bench_model(load_model("builtin:qtip4pf"), water)["structures"]["H2O"]
    assert exact["floor"]["set_by"] == "round-off" and exact["floor"]["dF_meV_per_A"] == exact["floor"]["roundoff_dF_meV_per_A"]
    assert breaking_amplitude(exact["audit"]) < 1e-6


def test_bench_resumes_and_explains_its_summary(workdir, capsys):
    assert all(" " not in name for name in BUILDERS) and list(builtin_set(["water liquid"])) == ["water-liquid"]
    assert main(["bench", "builtin:qtip4pf", "--structures", "H2O", "--out", "b"]) == 0
    out = capsys.readouterr().out
    assert "ml-peg mean ΔF: the force MAE between successive orientations of ml-peg's walk of 114 orientations" in out
    page = Path("b/bench.html").read_text()
    assert "floor set by" in page and "breaking amplitude (meV/atom)" in page and "breaking share" not in page
    assert main(["bench", "builtin:qtip4pf", "./mycalc.py:make_calc", "--structures", "H2O", "--out", "b"]) == 2
    assert "continue it with --resume" in capsys.readouterr().err
    assert main(["bench", "builtin:qtip4pf", "./mycalc.py:make_calc", "--structures", "H2O", "--out", "b", "--resume"]) == 0
    assert "builtin:qtip4pf (1/2): kept from the bench already in the output directory" in capsys.readouterr().out
    result = json.loads(Path("b/bench.json").read_text())
    assert list(result["models"]) == ["builtin:qtip4pf", "./mycalc.py:make_calc"] and not Path("b/bench.partial.json").exists()
    assert main(["bench", "builtin:qtip4pf", "--structures", "CH4", "--out", "b", "--resume"]) == 2
    assert "ran grid 2i on H2O" in capsys.readouterr().err


# --- 6: bad input, named ------------------------------------------------------------------------------------------------
def test_an_index_past_the_end_names_the_files_length(workdir, capsys):
    write("three.xyz", [Icosahedron("Cu", 2)] * 3)
    assert main(["audit", "./mycalc.py:make_invariant", "three.xyz", "--index", "5", "--out", "x"]) == 2
    assert "three.xyz: index 5 is out of range: the file holds 3 structures" in capsys.readouterr().err


def test_study_refuses_a_model_without_water_and_warns_about_one_far_off(workdir, capsys):
    assert main(["study", "--plan", "--model", "./mycalc.py:make_copper_only", "--out", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "covers the elements Cu, but the study simulates water: it needs H and O" in err
    warnings = check_water_model(load_model("ase.calculators.emt:EMT"))  # EMT has (unphysical) H and O parameters
    assert len(warnings) == 1 and ("revPBE0-D3 reference" if shared_data_dir() else "experimental geometry") in warnings[0]
    assert check_water_model(load_model("builtin:qtip4pf")) == []


def test_export_says_what_it_takes_and_keeps_an_existing_file(workdir, capsys):
    Path("taken.pt").write_bytes(b"mine")
    assert main(["export", "builtin:water-pet", "taken.pt"]) == 2
    assert "taken.pt exists; replace it with --overwrite" in capsys.readouterr().err and Path("taken.pt").read_bytes() == b"mine"
    assert main(["export", "./mycalc.py:make_calc", "calc.pt"]) == 2
    assert "cannot be exported: export takes symprobe PET-style models: builtin:water-pet" in capsys.readouterr().err
    model = load_model("builtin:qtip4pf")
    assert exported_name(model, "O+i") == f"{model.name}@O+i" and exported_name(model, so3.get("2i")) == f"{model.name}@paper-2i"
    assert exported_name(model) == model.name


# --- 7 and 8: consistency, MD from a config, discoverable from the terminal ---------------------------------------------
def test_md_reads_its_structure_beside_the_config_and_ends_with_a_summary(workdir, capsys):
    Path("configs").mkdir()
    Path("cu13.xyz").rename("configs/cu13.xyz")
    Path("configs/md.yaml").write_text("structure: cu13.xyz\nmodel: ase.calculators.emt:EMT\ntimestep_fs: 2.0\nsteps: 100\n"
                                       "initial_temperature_K: 300\noutput: {directory: md-cu, trajectory_stride: 50}\n")
    assert main(["md", "configs/md.yaml"]) == 0
    captured = capsys.readouterr()
    assert "100 steps, 0.2 ps simulated, 13 atoms; conserved quantity drift" in captured.out
    assert "mean temperature" in captured.out and "files: md-cu/" in captured.out
    assert "\r" not in captured.err and len(captured.err.splitlines()) == 100 // LOG_PERCENT_STEP + 1
    assert main(["md", "configs/md.yaml", "--resume"]) == 0
    assert "already finished (100 of 100 steps); nothing to do" in capsys.readouterr().out
    absolute = Path("configs/abs.yaml")
    absolute.write_text(Path("configs/md.yaml").read_text().replace("cu13.xyz", str(workdir / "configs" / "cu13.xyz")))
    assert load_config(absolute).structure == str(workdir / "configs" / "cu13.xyz")
    for example in sorted((ROOT / "configs").glob("md_*.yaml")):  # the examples still validate
        load_config(example)


def test_version_and_help_describe_the_tool_and_its_choices(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"symprobe \d+\.\d+\.\d+", capsys.readouterr().out.strip())
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "symmetry" in top and "thin argument parsing" not in top and "Exit codes" in top
    helps = {}
    for command in ("audit", "bench", "md", "study", "export", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    for command in ("audit", "bench", "md", "study", "export"):
        assert "builtin:water-pet, builtin:water-pet-twin" in helps[command] and "FILE.py:attribute" in helps[command]
    assert all(name in helps["bench"] for name in BUILDERS) and "water-liquid" in helps["bench"]
    assert "builtin:water-monomer, builtin:water-box" in helps["md"]
    for command, folder in (("audit", "./audit"), ("bench", "./symprobe-bench"), ("md", "./md"), ("study", "./study"),
                            ("demo", "./symprobe-demo")):
        assert f"default: {folder}" in helps[command] or f"(default {folder})" in helps[command]
    assert "328 evaluations per structure" in helps["audit"] and "O+i 48" in helps["audit"]


def test_documents_say_the_gate_status_and_the_study_plans_source():
    schema = (ROOT / "docs" / "audit-schema.md").read_text()
    assert f"exits with status {EXIT_GATE}" in schema and "exits with status 1" not in schema
    plan = json.loads((ROOT / "results" / "study_plan.json").read_text())
    notes = (ROOT / "docs" / "results.md").read_text()  # the measurements' notes, moved from the README
    assert f"{plan['cpu']['total_h']:.0f} h on 2 CPU cores" in notes
    assert "load averages " + " / ".join(f"{value:.1f}" for value in plan["load"]) in notes
