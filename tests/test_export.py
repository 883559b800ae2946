"""Export to metatomic: the exported file, run by metatomic's own ASE calculator, reproduces the model."""

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("metatomic.torch")
pytest.importorskip("metatomic_ase")

from metatomic_ase import MetatomicCalculator  # noqa: E402

from symprobe.cli import main  # noqa: E402
from symprobe.models.base import voigt_to_matrix  # noqa: E402
from symprobe.models.export import export_metatomic  # noqa: E402
from symprobe.models.external import MetatomicModel, load_model  # noqa: E402
from symprobe.models.torch_model import TorchModel  # noqa: E402
from symprobe.structures import water_box, water_monomer  # noqa: E402
from symprobe.testing import random_rotations  # noqa: E402


class AnisotropicPairCore(torch.nn.Module):
    """Species-dependent pair repulsion plus a term in the x² component of r_ij (not rotation-invariant)."""

    def __init__(self, cutoff: float = 3.5):
        super().__init__()
        self.cutoff = cutoff
        self.strength = torch.nn.Parameter(torch.tensor([[0.3, 0.5], [0.5, 1.1]], dtype=torch.float64))
        index = torch.full((119,), -1, dtype=torch.long)
        index[1], index[8] = 0, 1
        self.register_buffer("species_index", index)

    def forward(self, vectors, edge_i, edge_j, numbers, structure, n_structures: int):
        r = torch.linalg.norm(vectors, dim=-1)
        fc = 0.5 * (1.0 + torch.cos(torch.pi * r / self.cutoff))
        s = self.species_index[numbers]
        pair = (self.strength[s[edge_i], s[edge_j]] * torch.exp(-r) + 0.02 * vectors[:, 0] ** 2) * fc
        atoms = torch.zeros(numbers.shape[0], dtype=vectors.dtype).index_add(0, edge_i, pair)
        return torch.zeros(n_structures, dtype=vectors.dtype).index_add(0, structure, atoms)


class PairModule(torch.nn.Module):
    """The graph-level module symprobe evaluates; ``core`` is what gets exported."""

    def __init__(self):
        super().__init__()
        self.core = AnisotropicPairCore()
        self.cutoff = self.core.cutoff

    def forward(self, graph):
        return self.core(graph.edge_vectors(), graph.edge_i, graph.edge_j, graph.numbers, graph.structure, graph.n_structures)


STRUCTURES = {"periodic box": lambda: water_box(2), "monomer": water_monomer}


@pytest.fixture(scope="module")
def pair_model() -> TorchModel:
    return TorchModel(PairModule(), name="anisotropic-pair", species=[1, 8])


@pytest.fixture(scope="module")
def exported(pair_model, tmp_path_factory):
    return export_metatomic(pair_model, tmp_path_factory.mktemp("export") / "pair.pt")


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


def test_per_atom_and_selected_atoms(pair_model, exported):
    from metatensor.torch import Labels
    from metatomic.torch import ModelEvaluationOptions, ModelOutput, load_atomistic_model, systems_to_torch
    from vesin.metatomic import neighbor_lists_for_model

    atoms = water_box(2)
    calc = MetatomicCalculator(str(exported))
    per_atom = calc.compute_energy(atoms, per_atom=True)
    assert per_atom["energies"].sum() == pytest.approx(pair_model.predict(atoms).energy, rel=1e-12)

    model = load_atomistic_model(str(exported))
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
