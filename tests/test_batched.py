"""The batched MD engine: ASE's integrators reproduced on one replica, N replicas equal to N single runs,
variants stepped together, neighbour lists kept within a skin, bit-exact restarts, a blown-up replica named."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

from symprobe import so3
from symprobe.md import ConfigError, Group, Replica, ReplicaBlowUp, Strides, read_log, run_batched, run_md
from symprobe.md.batched import BatchedDynamics
from symprobe.md.run import thermalized
from symprobe.models.base import BatchPrediction, Model
from symprobe.models.qtip4pf import qtip4pf
from symprobe.structures import water_box, water_monomer
from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation
from symprobe.testing import anisotropic_qtip4pf

BUSSI = {"kind": "nvt-bussi", "temperature_K": 300, "tau_fs": 10}
LANGEVIN = {"kind": "nvt-langevin", "temperature_K": 300, "tau_fs": 20}
OUTPUT = {"progress": False, "log_stride": 4, "trajectory_stride": 8, "checkpoint_stride": 20}


def model() -> Model:
    return anisotropic_qtip4pf({2: 0.05, 3: 0.02}, seed=1)


def run(tmp_path, name: str, **config):
    """Run a monomer config; the log of a single replica, the directory of several."""
    base = {"structure": "builtin:water-monomer", "model": config.pop("model", None) or model(), "timestep_fs": 0.25,
            "steps": 40, "initial_temperature_K": 300, "seed": 5, "output": {"directory": tmp_path / name, **OUTPUT}}
    out = run_md({**base, **config})
    return out if config.get("replicas", 1) > 1 else read_log(out)


@pytest.mark.parametrize("ensemble, symmetrizer", [
    ({"kind": "nve"}, {"kind": "none"}),
    ({"kind": "nve"}, {"kind": "mts", "grid": "T", "n_inner": 4}),
    (BUSSI, {"kind": "random", "inversion": True}),
    (BUSSI, {"kind": "mts", "grid": "paper-2", "n_inner": 4}),
    (LANGEVIN, {"kind": "grid", "grid": "T"}),
    (LANGEVIN, {"kind": "random"}),
], ids=["nve", "nve-mts", "bussi-random", "bussi-mts", "langevin-grid", "langevin-random"])
def test_one_replica_reproduces_ase(tmp_path, ensemble, symmetrizer):
    ase = run(tmp_path, "ase", ensemble=ensemble, symmetrizer=symmetrizer)
    batched = run(tmp_path, "batched", ensemble=ensemble, symmetrizer=symmetrizer, engine="batched")
    assert list(ase) == list(batched) and len(ase["step"]) == 11
    for column in ase:
        np.testing.assert_allclose(batched[column], ase[column], rtol=1e-9, atol=1e-9, err_msg=column)


def test_replicas_equal_single_runs_with_their_seeds(tmp_path):
    extra = dict(ensemble=LANGEVIN, symmetrizer={"kind": "random", "inversion": True}, engine="batched")
    run(tmp_path, "three", replicas=3, **extra)
    for k in range(3):
        single = run(tmp_path, f"single-{k}", **{**extra, "seed": 5 + k})
        batched = read_log(tmp_path / "three" / f"replica-{k}")
        for column in single:
            np.testing.assert_allclose(batched[column], single[column], rtol=1e-10, atol=1e-10, err_msg=column)


def replicas_of_every_variant(model_: Model, box: bool = False) -> list[Replica]:
    start = water_box(2) if box else water_monomer()
    potentials = [(model_, None), (GridAverage(model_, so3.group("T")), None), (RandomRotation(model_, 3, True), None),
                  (model_, AveragingCorrection(model_, so3.group("T")))]
    return [Replica(thermalized(start, 300.0, 11), p, slow, 4, BUSSI, seed=11, name=f"variant {k}")
            for k, (p, slow) in enumerate(potentials)]


def test_variants_stepped_together_equal_each_alone(tmp_path):
    m = model()
    together = replicas_of_every_variant(m)
    run_batched(together, [Group([k], tmp_path / f"together-{k}") for k in range(4)], 0.25, 40, tmp_path / "t.npz",
                strides=Strides(4, 8, 20), progress=False)
    for k, replica in enumerate(replicas_of_every_variant(m)):
        run_batched([replica], [Group([0], tmp_path / f"alone-{k}")], 0.25, 40, tmp_path / f"a{k}.npz",
                    strides=Strides(4, 8, 20), progress=False)
        a, b = read_log(tmp_path / f"together-{k}"), read_log(tmp_path / f"alone-{k}")
        for column in a:
            np.testing.assert_allclose(a[column], b[column], rtol=1e-10, atol=1e-10, err_msg=f"variant {k} {column}")


def test_neighbour_lists_are_kept_within_the_skin(tmp_path):
    box = thermalized(water_box(2), 300.0, 2)
    energies = {}
    for skin in (0.0, 1.0):
        dyn = BatchedDynamics([Replica(box, qtip4pf(cutoff=4.0), ensemble={"kind": "nve"})], 0.5, skin=skin)
        for _ in range(30):
            dyn.step()
        energies[skin] = dyn.potential_energies().cpu().numpy()
        rebuilds = dyn.force_call.rebuilds
        assert rebuilds == 31 if skin == 0.0 else rebuilds <= 3, (skin, rebuilds)
    np.testing.assert_allclose(energies[1.0], energies[0.0], rtol=0, atol=1e-10)


def test_mts_with_langevin_conserves_energy_plus_heat_to_second_order(tmp_path):
    """E_pot + E_kin − heat is conserved up to the integration error, which falls as dt² (OBABO outer level)."""
    m = anisotropic_qtip4pf({2: 0.05}, seed=1)
    spread = []
    for dt in (0.25, 0.125):
        steps = int(100 / dt)
        replica = Replica(thermalized(water_monomer(), 300.0, 1), m, AveragingCorrection(m, so3.group("T")), 4, LANGEVIN, seed=1)
        run_batched([replica], [Group([0], tmp_path / str(dt))], dt, steps, tmp_path / "c.npz", strides=Strides(4, steps, steps),
                    progress=False)
        log = read_log(tmp_path / str(dt))
        assert np.ptp(log["thermostat_energy_eV"]) > 0.1  # the thermostat does work
        spread.append(np.ptp(log["conserved_eV"]))
    assert spread[0] < 3e-3 and spread[0] / spread[1] > 3.0, spread


@pytest.mark.parametrize("ensemble, symmetrizer", [
    (LANGEVIN, {"kind": "random", "inversion": True}),
    (LANGEVIN, {"kind": "mts", "grid": "paper-2", "n_inner": 4}),
    (BUSSI, {"kind": "grid", "grid": "T"}),
], ids=["langevin-random", "langevin-mts", "bussi-grid"])
def test_batched_restart_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, ensemble, symmetrizer):
    extra = dict(ensemble=ensemble, symmetrizer=symmetrizer, engine="batched", replicas=2, steps=64)
    run(tmp_path, "whole", **extra)
    run(tmp_path, "parts", **{**extra, "steps": 40})
    for k in range(2):
        with open(tmp_path / "parts" / f"replica-{k}" / "log.csv", "a") as log:  # written after it, before a "crash"
            log.write("44,11.0,0,0,0,0,0,0,0,0\n")
    resumed = {"structure": "builtin:water-monomer", "model": model(), "timestep_fs": 0.25, "steps": 64,
               "initial_temperature_K": 300, "seed": 5, "output": {"directory": tmp_path / "parts", **OUTPUT}, **extra}
    run_md(resumed, resume=True)
    for k in range(2):
        for name in ("log.csv", "trajectory.extxyz"):
            assert filecmp.cmp(tmp_path / "whole" / f"replica-{k}" / name, tmp_path / "parts" / f"replica-{k}" / name,
                               shallow=False), (k, name)
    with np.load(tmp_path / "whole" / "checkpoint.npz") as a, np.load(tmp_path / "parts" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


class BlowsUp(Model):
    """q-TIP4P/F that returns NaN forces for the structure at ``index`` of its calls from call ``after`` on."""

    species = frozenset({1, 8})

    def __init__(self, index: int, after: int):
        self.inner, self.index, self.after, self.calls = qtip4pf(cutoff=4.0), index, after, 0

    def _predict_many(self, structures, rotations) -> list[BatchPrediction]:
        self.calls += 1
        batches = self.inner.predict_many(structures, rotations)
        if self.calls > self.after:
            batches[self.index].forces[:] = np.nan
        return batches


def test_a_replica_that_blows_up_is_named_and_the_checkpoint_is_kept(tmp_path):
    starts = [thermalized(water_monomer(), 300.0, k) for k in range(3)]
    model_ = BlowsUp(index=1, after=25)
    replicas = [Replica(a, model_, name=f"molecule {k}") for k, a in enumerate(starts)]
    checkpoint = tmp_path / "c.npz"
    with pytest.raises(ReplicaBlowUp, match=r"replica 1 \(molecule 1\) blew up at step 2[45]") as error:
        run_batched(replicas, [Group([k], tmp_path / f"r{k}") for k in range(3)], 0.5, 100, checkpoint,
                    strides=Strides(1, 10, 10), progress=False)
    assert error.value.replica == 1
    with np.load(checkpoint) as data:
        assert np.isfinite(data["positions"]).all() and np.isfinite(data["forces"]).all()
    assert read_log(tmp_path / "r0")["step"][-1] >= 20  # the good replicas' logs are kept too


def test_strides_must_fit_the_mts_blocks(tmp_path):
    replicas = replicas_of_every_variant(model())
    with pytest.raises(ConfigError, match="multiples of n_inner=4"):
        run_batched(replicas, [Group([0, 1, 2, 3], tmp_path)], 0.25, 40, tmp_path / "c.npz", strides=Strides(2, 8, 20))




def test_a_replica_keeps_its_own_list_when_another_rebuilds():
    """Two water molecules of replica 0, 0.05 Å beyond the list radius (cutoff + skin) apart when its list is built,
    close in by 1.8 Å per move (0.9 Å each, under the skin/2 of 1 Å) while replica 1 rebuilds at the first move: after
    the second move replica 0 has moved 1.8 Å since its list was built, which must be rebuilt, and the energies equal
    those of fresh lists. (The reference of every replica used to move with any replica's rebuild, which missed the
    pairs that had come inside the cutoff.)"""
    import torch

    from symprobe.md.batched import TorchForceCall

    potential, skin = qtip4pf(cutoff=4.0), 2.0
    dimer = water_box(1) + water_box(1)
    dimer.set_cell([40.0, 40.0, 40.0])
    cross = dimer.positions[3:, None, 0] - dimer.positions[None, :3, 0]
    dimer.positions[3:, 0] += potential.cutoff + skin + 0.05 - cross.min()  # every cross pair beyond the list radius
    templates = [dimer, dimer.copy()]
    terms = [(r, np.eye(3)[None], np.ones(1)) for r in range(2)]
    call = TorchForceCall(potential, templates, torch.device("cpu"), skin=skin)
    x = torch.as_tensor(np.concatenate([t.positions for t in templates]))
    call(x, terms)
    for move_other in (True, False):
        x = x.clone()
        x[0:3, 0] += 0.9
        x[3:6, 0] -= 0.9
        if move_other:
            x[6:9, 1] += 1.1  # replica 1 moves past skin/2 and rebuilds
        energies, forces = call(x, terms)
    fresh = TorchForceCall(potential, templates, torch.device("cpu"), skin=skin)
    expected_energies, expected_forces = fresh(x, terms)
    assert abs(float(expected_energies[0] - expected_energies[1])) > 1e-3  # the pairs that came inside count
    np.testing.assert_allclose(energies.numpy(), expected_energies.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(forces.numpy(), expected_forces.numpy(), rtol=0, atol=1e-12)
