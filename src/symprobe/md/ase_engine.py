"""MD on ASE's integrators, one structure: velocity Verlet (NVE), Bussi stochastic velocity rescaling,
BAOAB Langevin, and symprobe's r-RESPA multiple time stepping (:class:`MultipleTimeStep`).

Every dynamics here speaks the small interface :func:`symprobe.md.run.run_md` uses for all engines:
``step()``, ``nsteps``, ``dt``, ``potential_energy()`` (eV), ``transferred_energy`` (eV put in by the
thermostat), ``checkpoint() -> (arrays, state)``, ``restore(arrays, state)`` and ``close()``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from ase import Atoms, units
from ase.md.bussi import Bussi
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.md import MolecularDynamics
from ase.md.verlet import VelocityVerlet

from symprobe.md.config import MDConfig
from symprobe.models.base import Model


class Checkpointable:
    """The engine interface on top of an ASE :class:`MolecularDynamics` (mixed in first)."""

    atoms: Atoms
    nsteps: int
    transferred_energy: float = 0.0
    rng: np.random.Generator | None = None

    def potential_energy(self) -> float:
        """The full potential energy (eV) of the current state."""
        return float(self.atoms.get_potential_energy())

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-serialisable state) beyond positions and momenta that restore this run exactly."""
        results = self.atoms.calc.results
        arrays = {"energy": np.array(results["energy"]), "forces": np.asarray(results["forces"])}
        if "stress" in results:
            arrays["stress"] = np.asarray(results["stress"])
        state = {"engine": "ase", "nsteps": self.nsteps,
                 "thermostat_rng": None if self.rng is None else self.rng.bit_generator.state,
                 "transferred_energy": float(self.transferred_energy)}
        return arrays, state

    def restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        """Put back a :meth:`checkpoint` (positions, momenta and :func:`cache_results` are already on the atoms)."""
        self.nsteps = int(state["nsteps"])
        if self.rng is not None:
            self.rng.bit_generator.state = state["thermostat_rng"]
        self.transferred_energy = float(state["transferred_energy"])

    def close(self) -> None:
        """Nothing to release."""


class NVE(Checkpointable, VelocityVerlet):
    """ASE's velocity Verlet."""


class BussiNVT(Checkpointable, Bussi):
    """ASE's Bussi stochastic velocity rescaling (it counts ``transferred_energy`` itself)."""


class LangevinNVT(Checkpointable, LangevinBAOAB):
    """ASE's BAOAB Langevin dynamics that also counts the energy the thermostat put in (``transferred_energy``,
    eV), so that E_kin + E_pot − transferred_energy is conserved up to integration error."""

    def _BAOAB_OU(self, drag_gamma_mod=0.0):
        before = self.atoms.get_kinetic_energy()
        super()._BAOAB_OU(drag_gamma_mod)
        self.transferred_energy += self.atoms.get_kinetic_energy() - before


class MultipleTimeStep(Checkpointable, MolecularDynamics):
    """r-RESPA: one step of ``timestep`` (ASE units) is a half kick with the slow forces, ``n_inner`` ASE
    velocity-Verlet steps of ``timestep / n_inner`` with the atoms' calculator (the fast, raw model), and
    another slow half kick. An optional :class:`~ase.md.bussi.Bussi` rescales the velocities once per step.

    ``slow`` is a model (here the grid average minus the raw model); its last energy (eV) and forces are
    kept in ``slow_energy`` / ``slow_forces``. ``potential_energy()`` is the full potential fast + slow.
    """

    def __init__(self, atoms: Atoms, timestep: float, slow: Model, n_inner: int, thermostat: Bussi | None = None):
        super().__init__(atoms, timestep)
        self.slow, self.n_inner, self.thermostat = slow, int(n_inner), thermostat
        self.rng = None if thermostat is None else thermostat.rng
        self.inner = VelocityVerlet(atoms, timestep / n_inner)
        self.slow_energy, self.slow_forces = self._slow()

    def _slow(self) -> tuple[float, np.ndarray]:
        prediction = self.slow.predict(self.atoms)
        return prediction.energy, prediction.forces

    @property
    def transferred_energy(self) -> float:
        """Energy the thermostat has put into the system so far (eV); 0 without one."""
        return 0.0 if self.thermostat is None else self.thermostat.transferred_energy

    @transferred_energy.setter
    def transferred_energy(self, value: float) -> None:
        if self.thermostat is not None:
            self.thermostat.transferred_energy = value

    def potential_energy(self) -> float:
        return float(self.atoms.get_potential_energy()) + self.slow_energy

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, state = super().checkpoint()
        arrays["slow_energy"], arrays["slow_forces"] = np.array(self.slow_energy), self.slow_forces
        return arrays, state

    def restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        super().restore(arrays, state)
        self.slow_energy, self.slow_forces = float(arrays["slow_energy"]), np.array(arrays["slow_forces"])

    def step(self, forces=None):
        """One outer step of r-RESPA: the thermostat (if any), half a slow kick, ``n_inner`` inner steps of the fast
        model, then half a slow kick with the new slow forces."""
        if self.thermostat is not None:
            self.thermostat.scale_velocities()
        self.atoms.set_momenta(self.atoms.get_momenta() + 0.5 * self.dt * self.slow_forces, apply_constraint=False)
        for _ in range(self.n_inner):
            self.inner.step()
        self.slow_energy, self.slow_forces = self._slow()
        self.atoms.set_momenta(self.atoms.get_momenta() + 0.5 * self.dt * self.slow_forces, apply_constraint=False)


def cache_results(atoms: Atoms, arrays: Mapping[str, np.ndarray]) -> None:
    """Put a checkpoint's energy, forces (and stress) in the calculator of ``atoms`` as its last results, so
    that building the dynamics does not call the model again (a random rotation would draw once more)."""
    results = {"energy": float(arrays["energy"]), "free_energy": float(arrays["energy"]),
               "forces": np.array(arrays["forces"])}
    if "stress" in arrays:
        results["stress"] = np.array(arrays["stress"])
    atoms.calc.atoms = atoms.copy()
    atoms.calc.results = results


def ase_dynamics(atoms: Atoms, config: MDConfig, potential: Model, slow: Model | None) -> Checkpointable:
    """The ASE dynamics of the config's ensemble (thermostat generator seeded by [seed, 2]); ``atoms`` carry
    ``potential`` as calculator, ``slow`` is the MTS correction or None."""
    dt = config.timestep_fs * config.n_inner * units.fs
    ensemble = config.ensemble
    rng = np.random.default_rng([config.seed, 2])
    if ensemble.kind == "nvt-langevin":  # with MTS refused by validate_config
        return LangevinNVT(atoms, dt, temperature_K=ensemble.temperature_K, T_tau=ensemble.tau_fs * units.fs, rng=rng)
    bussi = None
    if ensemble.kind == "nvt-bussi":
        bussi = BussiNVT(atoms, dt, temperature_K=ensemble.temperature_K, taut=ensemble.tau_fs * units.fs, rng=rng)
    if slow is not None:
        return MultipleTimeStep(atoms, dt, slow, config.n_inner, thermostat=bussi)
    return bussi if bussi is not None else NVE(atoms, dt)
