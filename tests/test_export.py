"""Export to metatomic: the exported file, run by metatomic's own ASE calculator, reproduces the model."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("metatomic.torch")
pytest.importorskip("metatomic_ase")

from metatomic_ase import MetatomicCalculator  # noqa: E402

from symprobe import so3  # noqa: E402
from symprobe.cli import main  # noqa: E402
from symprobe.models.base import voigt_to_matrix  # noqa: E402
from symprobe.models.export import export_metatomic  # noqa: E402
from symprobe.models.external import MetatomicModel, load_model  # noqa: E402
from symprobe.models.torch_model import TorchModel  # noqa: E402
from symprobe.structures import water_box, water_monomer  # noqa: E402
from symprobe.symmetrize import GridAverage  # noqa: E402
from symprobe.testing import random_rotations  # noqa: E402


class AnisotropicPairCore(torch.nn.Module):
    """Species-dependent pair repulsion plus 0.02 x² of r_ij (angular content ℓ = 0, 2) and, for O-centred
    pairs, ``cubic`` · xyz (ℓ = 3, odd under inversion, invariant under the group T): not rotation-invariant."""

    def __init__(self, cutoff: float = 3.5, cubic: float = 0.0):
        super().__init__()
        self.cutoff = cutoff
        self.cubic = cubic
        self.strength = torch.nn.Parameter(torch.tensor([[0.3, 0.5], [0.5, 1.1]], dtype=torch.float64))
        index = torch.full((119,), -1, dtype=torch.long)
        index[1], index[8] = 0, 1
        self.register_buffer("species_index", index)

    def forward(self, vectors, edge_i, edge_j, numbers, structure, n_structures: int):
        r = torch.linalg.norm(vectors, dim=-1)
        fc = 0.5 * (1.0 + torch.cos(torch.pi * r / self.cutoff))
        s = self.species_index[numbers]
        cubic = self.cubic * (s[edge_i] == 1).to(vectors.dtype) * vectors.prod(dim=1)
        pair = (self.strength[s[edge_i], s[edge_j]] * torch.exp(-r) + 0.02 * vectors[:, 0] ** 2 + cubic) * fc
        atoms = torch.zeros(numbers.shape[0], dtype=vectors.dtype).index_add(0, edge_i, pair)
        return torch.zeros(n_structures, dtype=vectors.dtype).index_add(0, structure, atoms)


class PairModule(torch.nn.Module):
    """The graph-level module symprobe evaluates; ``core`` is what gets exported."""

    def __init__(self, cubic: float = 0.0):
        super().__init__()
        self.core = AnisotropicPairCore(cubic=cubic)
        self.cutoff = self.core.cutoff

    def forward(self, graph):
        return self.core(graph.edge_vectors(), graph.edge_i, graph.edge_j, graph.numbers, graph.structure, graph.n_structures)


def periodic_monomer():
    """One water molecule in a 4 Å periodic cube: it sees its images within the 3.5 Å cutoff."""
    atoms = water_monomer()
    atoms.set_cell(np.eye(3) * 4.0)
    atoms.set_pbc(True)
    atoms.center()
    return atoms


STRUCTURES = {"periodic box": lambda: water_box(2), "monomer": water_monomer}
GRID = "O+i"  # 48 rotations, degree 3, with inversion


@pytest.fixture(scope="module")
def pair_model() -> TorchModel:
    return TorchModel(PairModule(), name="anisotropic-pair", species=[1, 8])


@pytest.fixture(scope="module")
def exported(pair_model, tmp_path_factory):
    return export_metatomic(pair_model, tmp_path_factory.mktemp("export") / "pair.pt")


@pytest.fixture(scope="module")
def averaged(pair_model, tmp_path_factory):
    """The model averaged over GRID, exported."""
    return export_metatomic(pair_model, tmp_path_factory.mktemp("export") / "pair-averaged.pt", grid=GRID)


@pytest.mark.parametrize("which", list(STRUCTURES))
def test_round_trip_through_metatomic_ase(pair_model, exported, which):
    atoms = STRUCTURES[which]()
    expected = pair_model.predict(atoms)
    atoms.calc = MetatomicCalculator(str(exported))
    assert abs(atoms.get_potential_energy() - expected.energy) < 1e-10 * max(1.0, abs(expected.energy))
    np.testing.assert_allclose(atoms.get_forces(), expected.forces, atol=1e-10)
    assert np.abs(expected.forces).max() > 1e-3  # a non-trivial comparison
    if atoms.pbc.all():
        np.testing.assert_allclose(voigt_to_matrix(atoms.get_stress()), expected.stress, atol=1e-10)


def test_batched_rotations_match_and_differ(pair_model, exported):
    atoms = water_box(2)
    rotations = random_rotations(4, seed=1)
    reference = pair_model.predict_rotated(atoms, rotations)
    loaded = load_model(f"metatomic:{exported}")
    assert isinstance(loaded, MetatomicModel) and loaded.species == frozenset({1, 8})
    batch = loaded.predict_rotated(atoms, rotations)
    np.testing.assert_allclose(batch.energies, reference.energies, rtol=1e-12)
    np.testing.assert_allclose(batch.forces, reference.forces, atol=1e-10)
    np.testing.assert_allclose(batch.stress, reference.stress, atol=1e-10)
    assert np.ptp(batch.energies) > 1e-4  # the model is anisotropic, so rotations change the energy


@pytest.mark.parametrize("grid", [None, GRID])
def test_per_atom_and_selected_atoms(pair_model, exported, averaged, grid):
    from metatensor.torch import Labels
    from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model, systems_to_torch
    from vesin.metatomic import neighbor_lists_for_model

    atoms = water_box(2)
    path = exported if grid is None else averaged
    expected = pair_model if grid is None else GridAverage(pair_model, so3.get(grid))
    calc = MetatomicCalculator(str(path))
    per_atom = calc.compute_energy(atoms, per_atom=True)
    assert per_atom["energies"].sum() == pytest.approx(expected.predict(atoms).energy, rel=1e-12)

    model = load_atomistic_model(str(path))
    system = systems_to_torch(atoms, dtype=torch.float64)
    for calculator in neighbor_lists_for_model("angstrom", model):
        calculator.add_neighbor_list([system])
    chosen = [0, 4, 7, 20]
    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={"energy": ModelOutput(unit="eV", sample_kind="system")},
        selected_atoms=Labels(["system", "atom"], torch.tensor([[0, a] for a in chosen])),
    )
    energy = model([system], options, check_consistency=True)["energy"].block().values.item()
    assert energy == pytest.approx(per_atom["energies"][chosen].sum(), rel=1e-12)


@pytest.mark.parametrize("which", list(STRUCTURES) + ["periodic monomer"])
def test_grid_export_equals_grid_average(pair_model, averaged, which):
    """The exported average, run by metatomic's ASE calculator, is symprobe's GridAverage (energy, forces by
    autograd through the engine's positions, stress through its cell)."""
    atoms = periodic_monomer() if which == "periodic monomer" else STRUCTURES[which]()
    expected = GridAverage(pair_model, so3.get(GRID)).predict(atoms)
    assert abs(expected.energy - pair_model.predict(atoms).energy) > 1e-3  # the average is not the raw model
    atoms.calc = MetatomicCalculator(str(averaged))
    assert atoms.get_potential_energy() == pytest.approx(expected.energy, rel=1e-10, abs=1e-10)  # measured 2e-15 eV
    np.testing.assert_allclose(atoms.get_forces(), expected.forces, atol=1e-10)  # measured 3e-16 eV/Å
    if atoms.pbc.all():
        np.testing.assert_allclose(voigt_to_matrix(atoms.get_stress()), expected.stress, atol=1e-10)


@pytest.mark.parametrize("grid, invariant", [("D2", False), ("T", False), ("O", True), ("T+i", True)])
def test_grid_export_is_invariant_where_the_grid_covers_the_model(tmp_path, grid, invariant):
    """Known answer: the model's orientation content is x² (ℓ = 0, 2) and xyz (ℓ = 3, odd). D2 (degree 1)
    keeps x², T (degree 2) keeps xyz (a T invariant), O (degree 3) removes both, and T+i removes xyz by
    inversion: the exported averages are rotation-invariant to round-off exactly for O and T+i."""
    model = TorchModel(PairModule(cubic=0.05), name="anisotropic-pair+xyz", species=[1, 8])
    path = export_metatomic(model, tmp_path / "averaged.pt", grid=grid)
    atoms = water_monomer()
    raw = model.predict_rotated(atoms, random_rotations(6, seed=2)).energies
    energies = load_model(f"metatomic:{path}").predict_rotated(atoms, random_rotations(6, seed=2)).energies
    assert np.ptp(raw) > 1e-2
    if invariant:
        assert np.ptp(energies) < 1e-12  # eV
    else:
        assert np.ptp(energies) > 1e-3


def test_grid_export_matches_metatomic_symmetrized_model(pair_model, exported, tmp_path):
    """metatomic's SymmetrizedModel with max_angular_momentum_grid=3 averages over Lebedev order 3 × 4 in-plane
    angles with inversion, our lebedev-3x4+i (same rotations and weights): same averages, same derivatives."""
    from metatomic.torch import load_atomistic_model
    from metatomic.torch.o3 import SymmetrizedModel

    theirs = SymmetrizedModel.wrap(load_atomistic_model(str(exported)), max_angular_momentum_grid=3, batch_size=24)
    theirs.save(str(tmp_path / "symmetrized.pt"))
    ours = export_metatomic(pair_model, tmp_path / "ours.pt", grid="lebedev-3x4+i")
    atoms = periodic_monomer()
    results = []
    for path in (ours, tmp_path / "symmetrized.pt"):
        atoms.calc = MetatomicCalculator(str(path))
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    (e, f, s), (e_ref, f_ref, s_ref) = results
    assert e == pytest.approx(e_ref, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(f, f_ref, atol=1e-10)
    np.testing.assert_allclose(s, s_ref, atol=1e-10)
    assert abs(e - pair_model.predict(atoms).energy) > 1e-3


@pytest.mark.skipif(importlib.util.find_spec("ipi") is None, reason="i-PI (the 'ipi' extra) is missing")
@pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning")  # i-PI's softexit
def test_ipi_runs_the_grid_averaged_export(pair_model, averaged, tmp_path, monkeypatch):
    """i-PI's own metatomic driver (<ffdirect><pes>metatomic</pes>) runs NVE on the exported average: after
    8 steps its energy and forces are GridAverage's at i-PI's positions, and it conserves energy. Compared in
    the driver's units (i-PI's 8-digit angstrom and electronvolt, which differ from ASE's by ~1e-8)."""
    from ase.io import write
    from ipi.scripting import InteractiveSimulation, forcefield_xml, simulation_xml
    from ipi.utils.depend import dstrip
    from ipi.utils.softexit import softexit
    from ipi.utils.units import unit_to_user

    monkeypatch.chdir(tmp_path)  # i-PI writes its RESTART file here
    atoms = periodic_monomer()
    write(tmp_path / "template.xyz", atoms)
    forcefield = forcefield_xml("averaged", pes="metatomic",
                                parameters={"template": str(tmp_path / "template.xyz"), "model": str(averaged)})
    nve = ('<motion mode="dynamics"><fixcom>false</fixcom><dynamics mode="nve">'
           '<timestep units="femtosecond">0.25</timestep></dynamics></motion>')
    try:
        simulation = InteractiveSimulation(simulation_xml(atoms, forcefield, nve, output="<output prefix=''></output>"))
    finally:
        softexit.reset()  # give back SIGINT/SIGTERM, as symprobe.md.ipi does
    simulation.thermalize_momenta(300)
    conserved = []
    for _ in range(8):
        simulation.run(1)
        conserved.append(simulation.properties("conserved"))  # eV
    system = simulation.syslist[0]
    moved = atoms.copy()
    moved.positions = dstrip(system.beads.q)[0].reshape(-1, 3) * unit_to_user("length", "angstrom", 1.0)
    moved.cell = dstrip(system.cell.h).T * unit_to_user("length", "angstrom", 1.0)
    energy = float(dstrip(system.forces.pots)[0]) * unit_to_user("energy", "electronvolt", 1.0)
    forces = dstrip(system.forces.f)[0].reshape(-1, 3) * unit_to_user("force", "ev/ang", 1.0)
    simulation.stop()
    expected = GridAverage(pair_model, so3.get(GRID)).predict(moved)
    assert np.abs(moved.positions - atoms.positions).max() > 1e-3  # Å
    assert energy == pytest.approx(expected.energy, abs=1e-10)  # eV
    np.testing.assert_allclose(forces, expected.forces, atol=1e-10)  # eV/Å
    assert np.ptp(conserved) < 1e-4  # eV


def test_exported_file_loads_without_symprobe(pair_model, exported):
    code = (
        "import sys; sys.modules['symprobe'] = None\n"
        "from metatomic_ase import MetatomicCalculator\n"
        "from ase.build import molecule\n"
        "atoms = molecule('H2O'); atoms.calc = MetatomicCalculator(sys.argv[1])\n"
        "print(float(atoms.get_potential_energy()).hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True, text=True, check=True)
    from ase.build import molecule

    assert float.fromhex(out.stdout.strip().splitlines()[-1]) == pytest.approx(pair_model.predict(molecule("H2O")).energy, rel=1e-12)


def test_pet_style_model_exports_through_the_cli(tmp_path):
    from symprobe.models.pet import PETModule, save_model

    torch.manual_seed(0)
    module = PETModule()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(std=0.1)  # untrained heads start at zero; make the energy non-trivial
    save_model(module, tmp_path / "pet.pt")
    assert main(["export", str(tmp_path / "pet.pt"), str(tmp_path / "pet-mta.pt"), "--dtype", "float64"]) == 0
    symprobe_model = load_model(str(tmp_path / "pet.pt"), dtype=torch.float64)
    exported_model = load_model(str(tmp_path / "pet-mta.pt"))
    assert isinstance(exported_model, MetatomicModel) and exported_model.dtype == torch.float64
    for atoms in (water_box(2), water_monomer()):
        expected, got = symprobe_model.predict(atoms), exported_model.predict(atoms)
        assert got.energy == pytest.approx(expected.energy, rel=1e-10)
        np.testing.assert_allclose(got.forces, expected.forces, atol=1e-9)

    # the PET core averaged over a grid: all 12 copies of T in one core call, as symprobe's GridAverage
    assert main(["export", str(tmp_path / "pet.pt"), str(tmp_path / "pet-T.pt"), "--dtype", "float64", "--grid", "T"]) == 0
    expected = GridAverage(symprobe_model, so3.get("T")).predict(water_monomer())
    got = load_model(str(tmp_path / "pet-T.pt")).predict(water_monomer())
    assert got.energy == pytest.approx(expected.energy, rel=1e-10)
    np.testing.assert_allclose(got.forces, expected.forces, atol=1e-9)


def test_float32_export_evaluated_in_float64(pair_model, tmp_path):
    path = export_metatomic(pair_model, tmp_path / "pair32.pt", dtype=torch.float32)
    atoms = water_box(2)
    single = load_model(path)
    double = load_model(str(path), dtype=torch.float64)
    assert single.dtype == torch.float32 and double.dtype == torch.float64
    expected = pair_model.predict(atoms).energy
    assert double.predict(atoms).energy == pytest.approx(expected, rel=1e-7)  # weights rounded to float32 only
    assert single.predict(atoms).energy == pytest.approx(expected, rel=1e-5)


def test_unexportable_models_give_clear_errors(tmp_path):
    class GraphOnly(torch.nn.Module):
        cutoff = 3.0

        def forward(self, graph):
            return graph.edge_vectors().sum()

    with pytest.raises(ValueError, match="TorchScript-compatible `core`"):
        export_metatomic(GraphOnly(), tmp_path / "x.pt", species=[1, 8])
    with pytest.raises(ValueError, match="end in .pt"):
        export_metatomic(TorchModel(PairModule(), species=[1, 8]), tmp_path / "x.model")
    assert main(["export", "ase.calculators.lj:LennardJones", str(tmp_path / "lj.pt")]) == 2


def test_unknown_grid_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", "builtin:water-pet", str(tmp_path / "x.pt"), "--grid", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symprobe export: error: unknown quadrature 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "x.pt").exists()
