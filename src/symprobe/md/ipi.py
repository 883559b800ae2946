"""Molecular dynamics on i-PI, run in-process: NVE, NVT (SVR, Langevin) and multiple time stepping.

:class:`IpiDynamics` builds an :class:`ipi.scripting.InteractiveSimulation` from an XML string and steps
it; it speaks the engine interface of :mod:`symprobe.md.ase_engine` (``step``, ``nsteps``,
``potential_energy``, ``checkpoint``, ``close``), and after every step it copies i-PI's positions, momenta,
potential energy and forces onto the ASE ``Atoms`` that the log and trajectory writers read.

Force fields are ``<ffdirect>`` with the custom PES ``symprobe/ipi_pes.py``: i-PI calls it in-process
with a key (``<parameters>{model: KEY}</parameters>``) that it resolves in this module's registry to a
:class:`RegisteredPotential` (no sockets, no files). Multiple time stepping is i-PI's ``<nmts>[1, n]``:
the raw model with ``mts_weights`` [0, 1] on the inner level (n steps of dt/n) and the
:class:`~symprobe.symmetrize.AveragingCorrection` (grid average − raw) with [1, 0] on the outer level
(half kicks around each block), the same r-RESPA as :class:`symprobe.md.ase_engine.MultipleTimeStep`.

**Units.** i-PI works in atomic units (bohr, hartree, electron masses, ħ/hartree). Every conversion uses
i-PI's ``"ase"`` units (:mod:`ipi.utils.units`, built from ASE's own Bohr, Hartree and time unit), so an
i-PI run is the ASE run written in other units: positions, momenta, masses, the time step, τ and the
temperature go in, energies (eV), forces (eV/Å) and momenta come back, each through one factor.
**Cell.** i-PI's ``h`` holds the lattice vectors as *columns* and must be upper triangular: the ASE cell
is hᵀ, so a periodic cell must have a along x and b in the xy plane (refused otherwise: rotating the
structure would change what a non-invariant model sees). Isolated structures get a 100 Å box that
nothing uses: positions are never wrapped (``pbc="false"``) and the driver keeps the structure's own
cell and ``pbc``. **Virial.** i-PI takes −σV (hartree), σ the ASE stress (zero for isolated structures).

**Thermostats.** ``nvt-bussi`` is i-PI's ``svr`` with the OBABO splitting (a half-step rescaling before
and after each outer step); ``nvt-langevin`` its ``langevin`` and ``nvt-gle`` its canonical ``gle``
(drift matrix ``A_per_fs`` in fs⁻¹, C = kT) with BAOAB (the thermostat in the middle of the outer step,
also with MTS). All draw from i-PI's generator, seeded from ``[seed, 2]``. The heat the thermostat put in
is −(ethermo + eens), i-PI's bath energy, so potential + kinetic − heat is i-PI's conserved quantity. No
centre-of-mass constraint (``fixcom`` false), as on ASE.

**Socket clients.** With ``clients: N`` the force field is an ``<ffsocket>`` served by N ``symprobe serve``
processes (:mod:`symprobe.md.ipi_clients`, :mod:`symprobe.md.ipi_serve`), inside an ``<ffrotations>`` that
averages over the config's Legendre grid; the checkpoint then holds no cached evaluation, and the first force
request after a restart goes to the clients.

**Checkpoints.** :meth:`IpiDynamics.checkpoint` returns i-PI's positions and momenta in atomic units,
the state of its MT19937 generator, the thermostat and ensemble energies (and the GLE's auxiliary
momenta), and each force field's last evaluation (positions, cell, results); restarting from them
reproduces the uninterrupted run bit for bit (the restored evaluations answer i-PI's first force
requests, so no model runs at the restart point: a random-rotation symmetrizer stays in step).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from xml.sax.saxutils import escape

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.md import MolecularDynamics

from symprobe.md.config import ConfigError, MDConfig, ipi_rotation_grid, quadrature
from symprobe.md.ipi_clients import ClientPool, SocketAddress
from symprobe.models.base import Model

DRIVER_PATH = Path(__file__).with_name("ipi_pes.py")
ISOLATED_BOX = 100.0  # Å, the i-PI cell of a non-periodic structure (unused by the dynamics)
# Structures per socket message (i-PI's <batch_size>). 1: batching did not pay where measured (2 cores shared with
# other work, 2026-12-07). The 36 copies of a 2i-averaged water monomer on 2 clients: a median 0.27-0.40 s per step
# with 1, 0.31-0.39 s with 18 (one message per client per step; load 4-8). 8 water molecules, 2i, 2 clients of 1
# thread (benchmarks/ipi_sockets.py --toy, load 2.8-3.5): 1.24 steps/s with 1, 1.11 with 18. The same script
# measures both on the 64-molecule liquid.
SOCKET_BATCH_SIZE = 1
_CACHED = ("cell", "positions", "energy", "forces", "virial")  # a force field's last evaluation, as saved


@dataclass(frozen=True)
class IpiUnits:
    """i-PI internal (atomic) units per ASE unit (eV, Å, amu, ASE time, K)."""

    length: float
    energy: float
    force: float
    mass: float
    momentum: float
    time: float
    temperature: float


@functools.cache
def ipi_units() -> IpiUnits:
    """The conversion factors of i-PI's "ase" units (i-PI's atomic unit per ASE unit)."""
    from ipi.utils.units import unit_to_internal

    names = ("length", "energy", "force", "mass", "momentum", "time", "temperature")
    return IpiUnits(*(unit_to_internal(name, "ase", 1.0) for name in names))


# ---------------------------------------------------------------------------------------------------
# The registry the PES driver reads


class RegisteredPotential:
    """A symprobe model as i-PI's driver sees it: atomic units in and out, the last evaluation kept.

    ``template`` gives the atomic numbers, ``pbc`` and (for isolated structures) the cell. A request for
    exactly the positions and cell of the last evaluation is answered from it (also after a restart).
    """

    def __init__(self, model: Model, template: Atoms):
        self.model = model
        self.numbers = template.numbers.copy()
        self.pbc = template.pbc.copy()
        self.cell = template.cell.array.copy()
        self.last: tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray] | None = None

    def compute(self, cell: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, str]:
        """(energy Ha, forces (N, 3) Ha/bohr, virial (3, 3) Ha, extras) of i-PI's ``cell`` h and ``pos`` (bohr)."""
        cell, pos = np.asarray(cell, dtype=np.float64), np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        if self.last is None or not (np.array_equal(cell, self.last[0]) and np.array_equal(pos, self.last[1])):
            self.last = (cell.copy(), pos.copy(), *self._evaluate(cell, pos))
        energy, forces, virial = self.last[2:]
        return energy, forces.copy(), virial.copy(), ""

    def _evaluate(self, cell: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        u = ipi_units()
        periodic = bool(self.pbc.any())
        atoms = Atoms(numbers=self.numbers, positions=pos / u.length, pbc=self.pbc,
                      cell=cell.T / u.length if periodic else self.cell)
        prediction = self.model.predict(atoms)
        virial = np.zeros((3, 3))
        if periodic and prediction.stress is not None:
            virial = (-np.asarray(prediction.stress) * atoms.get_volume()).T * u.energy
        return float(prediction.energy) * u.energy, np.asarray(prediction.forces, dtype=np.float64) * u.force, virial


_REGISTRY: dict[str, RegisteredPotential] = {}


def register(potential: RegisteredPotential) -> str:
    """Put ``potential`` in the registry; return its key for ``<parameters>{model: KEY}``."""
    key = f"symprobe-{uuid.uuid4().hex}"
    _REGISTRY[key] = potential
    return key


def unregister(key: str) -> None:
    """Drop the potential of ``key`` from the registry (nothing if it is not there)."""
    _REGISTRY.pop(key, None)


def lookup(key: str) -> RegisteredPotential:
    """The registered potential of ``key`` (called by the PES driver inside i-PI)."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"symprobe i-PI driver: no model registered under {key!r} (was the run closed?)") from None


# ---------------------------------------------------------------------------------------------------
# The simulation


def check_structure_for_ipi(atoms: Atoms) -> None:
    """Refuse a periodic cell i-PI cannot hold as given (lattice vectors a ∥ x, b in the xy plane)."""
    if not atoms.pbc.any():
        return
    cell = atoms.cell.array
    if np.abs(cell[np.triu_indices(3, 1)]).max() > 1e-12 * np.abs(cell).max():
        raise ConfigError(
            "engine ipi: i-PI stores the cell as an upper-triangular matrix (lattice vectors a along x, b in the "
            f"xy plane), and this cell is not of that form: {cell.tolist()}. Rotate the structure first (for a "
            "model that is not rotation invariant that changes the run, so symprobe does not do it silently)"
        )


def _array(values: Any) -> str:
    return "[" + ", ".join(repr(float(v)) for v in np.ravel(values)) + "]"


def direct_forcefield(name: str, key: str) -> str:
    """An ``<ffdirect>`` running the registered potential ``key`` in-process through the PES :data:`DRIVER_PATH`."""
    return (f'<ffdirect name="{name}" pbc="false"><pes>custom</pes><pes_path>{escape(str(DRIVER_PATH))}</pes_path>'
            f"<parameters>{{model: {key}}}</parameters></ffdirect>")


def socket_forcefield(name: str, address: SocketAddress, grid: tuple[int, bool] | None, batch_size: int = 1) -> str:
    """An ``<ffsocket>`` at ``address`` whose clients answer requests, ``batch_size`` structures per message, inside
    an ``<ffrotations>`` averaging over i-PI's Legendre grid ``grid`` = (order, inversion) unless None (every
    rotated copy is one request)."""
    where = (f"<address>{escape(address.ipi_address)}</address>" if address.transport == "unix" else
             f"<address>{escape(address.host)}</address><port>{address.port}</port>")
    socket = (f'<ffsocket name="{name}{"-rotated" if grid else ""}" mode="{address.transport}" pbc="false">{where}'
              f"<batch_size>{batch_size}</batch_size></ffsocket>")
    if grid is None:
        return socket
    order, inversion = grid
    return (f'<ffrotations name="{name}" pbc="false">{socket}<grid_mode>legendre</grid_mode><grid_order>{order}'
            f"</grid_order><inversion>{str(inversion).lower()}</inversion></ffrotations>")


def simulation_xml(atoms: Atoms, q: np.ndarray, p: np.ndarray, config: MDConfig, forcefields: Mapping[str, str]) -> str:
    """The i-PI input of a run: ``q``, ``p`` in atomic units, ``forcefields`` the XML of "potential" and, for
    MTS, "slow"."""
    u = ipi_units()
    cell = atoms.cell.array if atoms.pbc.any() else np.eye(3) * ISOLATED_BOX
    ensemble = config.ensemble
    mts = "slow" in forcefields
    forces = ('<force forcefield="potential"><mts_weights>[0, 1]</mts_weights></force>'
              '<force forcefield="slow"><mts_weights>[1, 0]</mts_weights></force>' if mts else
              '<force forcefield="potential"><mts_weights>[1]</mts_weights></force>')
    thermostat, temperature, mode, splitting = "", "", "nve", "obabo"
    fs = units.fs * u.time  # one femtosecond in atomic units of time
    if ensemble.kind == "nvt-gle":
        drift = np.asarray(ensemble.A_per_fs) / fs
        thermostat = f'<thermostat mode="gle"><A shape="{drift.shape}">{_array(drift)}</A></thermostat>'
    elif ensemble.kind != "nve":
        name = {"nvt-bussi": "svr", "nvt-langevin": "langevin"}[ensemble.kind]
        thermostat = f'<thermostat mode="{name}"><tau>{ensemble.tau_fs * fs!r}</tau></thermostat>'
    if ensemble.kind != "nve":
        mode, splitting = "nvt", "obabo" if ensemble.kind == "nvt-bussi" else "baoab"
        temperature = f"<ensemble><temperature>{ensemble.temperature_K * u.temperature!r}</temperature></ensemble>"
    dt = config.timestep_fs * config.n_inner * fs
    seed = int(np.random.SeedSequence([config.seed, 2]).generate_state(1)[0])
    return f"""<simulation verbosity="quiet" threading="false" safe_stride="{2**30}">
<output prefix=""></output>
<total_steps>{2**30}</total_steps>
<prng><seed>{seed}</seed></prng>
{''.join(forcefields.values())}
<system>
<initialize nbeads="1">
<positions mode="manual">{_array(q)}</positions>
<momenta mode="manual">{_array(p)}</momenta>
<masses mode="manual">{_array(atoms.get_masses() * u.mass)}</masses>
<labels mode="manual">[{', '.join(atoms.get_chemical_symbols())}]</labels>
<cell mode="manual">{_array(cell.T * u.length)}</cell>
</initialize>
<forces>{forces}</forces>
<motion mode="dynamics"><fixcom>false</fixcom>
<dynamics mode="{mode}" splitting="{splitting}"><timestep>{dt!r}</timestep>
<nmts>{'[1, %d]' % config.n_inner if mts else '[1]'}</nmts>{thermostat}</dynamics>
</motion>
{temperature}
</system>
</simulation>"""


class IpiDynamics(MolecularDynamics):
    """The MD of ``config`` on i-PI, stepped one (outer) step at a time; ``atoms`` mirrors its state.

    ``potential`` is the model the integrator sees (for MTS the raw model, on the inner level), ``slow``
    the MTS correction on the outer level (or None). ``checkpoint``/``state`` (from :meth:`checkpoint`)
    resume a run. After each step ``atoms`` holds positions (Å), momenta (ASE units) and a single-point
    calculator with the full potential energy (eV, raw + correction for MTS) and the forces of
    ``potential`` (eV/Å). ``transferred_energy`` is the heat put in by the thermostat (eV).
    With ``clients`` (a :class:`~symprobe.md.ipi_clients.ClientPool`, started here once i-PI listens) the
    model runs in them: an ``<ffsocket>``, inside ``<ffrotations>`` for a grid average; ``potential`` and
    ``slow`` are then not evaluated here. :meth:`close` stops i-PI and the clients and releases the models.
    """

    def __init__(self, atoms: Atoms, config: MDConfig, potential: Model, slow: Model | None,
                 checkpoint: Mapping[str, np.ndarray] | None = None, state: Mapping[str, Any] | None = None,
                 clients: ClientPool | None = None):
        from ipi.scripting import InteractiveSimulation
        from ipi.utils.softexit import softexit

        self.clients, self.keys = clients, {}
        try:
            check_structure_for_ipi(atoms)
            super().__init__(atoms, config.timestep_fs * config.n_inner * units.fs)
            self.potentials = {} if clients is not None else self._registered(atoms, potential, slow, checkpoint)
            self.keys = {name: register(registered) for name, registered in self.potentials.items()}
            u = ipi_units()
            q, p = atoms.get_positions() * u.length, atoms.get_momenta() * u.momentum
            if checkpoint is not None:
                q, p = checkpoint["ipi_q"], checkpoint["ipi_p"]
            try:
                self.simulation = InteractiveSimulation(simulation_xml(atoms, q, p, config, self._forcefields(config)))
            finally:
                softexit.reset()  # give back SIGINT/SIGTERM and stop i-PI's soft-exit watcher: we step it ourselves
        except BaseException:
            self._release()
            raise
        try:
            if clients is not None:
                clients.start()  # i-PI listens now
            self.system = self.simulation.syslist[0]
            if checkpoint is not None:
                self._restore(checkpoint, state)
            self._sync()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _registered(atoms: Atoms, potential: Model, slow: Model | None,
                    checkpoint: Mapping[str, np.ndarray] | None) -> dict[str, RegisteredPotential]:
        """The in-process potentials, with their last evaluation restored from ``checkpoint`` where it holds one
        (a checkpoint of a run served by socket clients holds none)."""
        potentials = {"potential": RegisteredPotential(potential, atoms)}
        if slow is not None:
            potentials["slow"] = RegisteredPotential(slow, atoms)
        for name, registered in potentials.items():
            if checkpoint is not None and f"{name}_cell" in checkpoint:
                cached = [np.array(checkpoint[f"{name}_{k}"]) for k in _CACHED]
                registered.last = (cached[0], cached[1], float(cached[2]), cached[3], cached[4])
        return potentials

    def _forcefields(self, config: MDConfig) -> dict[str, str]:
        """The XML of each force field: in-process ``<ffdirect>`` or, with clients, their ``<ffsocket>`` (inside
        ``<ffrotations>`` for a grid average)."""
        if self.clients is None:
            return {name: direct_forcefield(name, key) for name, key in self.keys.items()}
        grid = ipi_rotation_grid(quadrature(config.symmetrizer.grid)) if config.symmetrizer.kind == "grid" else None
        return {"potential": socket_forcefield("potential", self.clients.address, grid, SOCKET_BATCH_SIZE)}

    def potential_energy(self) -> float:
        """The full potential energy (eV, raw + correction for MTS)."""
        return float(self.atoms.get_potential_energy())

    @property
    def transferred_energy(self) -> float:
        """Energy the thermostat put into the system so far, eV."""
        heat = self.system.motion.thermostat.ethermo + self.system.ensemble.eens
        return -float(heat) / ipi_units().energy

    def step(self, forces=None):
        """One outer i-PI step (``n_inner`` inner steps under MTS); ``atoms`` then mirrors i-PI's state."""
        self.simulation.run_step(self.simulation.step)
        self.simulation.step += 1
        self._sync()

    def _sync(self) -> None:
        """Copy i-PI's state onto ``self.atoms`` (positions, momenta, energy, forces)."""
        from ipi.utils.depend import dstrip

        u = ipi_units()
        system = self.system
        self.atoms.set_positions(dstrip(system.beads.q)[0].reshape(-1, 3) / u.length, apply_constraint=False)
        self.atoms.set_momenta(dstrip(system.beads.p)[0].reshape(-1, 3) / u.momentum, apply_constraint=False)
        forces = dstrip(system.forces.mts_forces[-1].f)[0].reshape(-1, 3) / u.force
        self.atoms.calc = SinglePointCalculator(self.atoms, energy=float(system.forces.pot) / u.energy, forces=forces)

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-serialisable state) that restore i-PI's side of this run exactly (md.py adds the
        ASE-side positions, momenta, energy and forces, and the symmetrizer state)."""
        from ipi.engine.thermostats import ThermoGLE
        from ipi.utils.depend import dstrip

        arrays = {"ipi_q": dstrip(self.system.beads.q).copy(), "ipi_p": dstrip(self.system.beads.p).copy()}
        if isinstance(self.system.motion.thermostat, ThermoGLE):  # its auxiliary momenta
            arrays["ipi_gle_s"] = np.array(self.system.motion.thermostat.s)
        for name, registered in self.potentials.items():
            arrays.update({f"{name}_{k}": np.array(v) for k, v in zip(_CACHED, registered.last)})
        generator = [{**s, "state": {k: np.asarray(v).tolist() for k, v in s["state"].items()}}
                     for s in self.simulation.prng.state]
        state = {"engine": "ipi", "nsteps": self.nsteps, "prng": generator,
                 "ethermo": float(self.system.motion.thermostat.ethermo), "eens": float(self.system.ensemble.eens)}
        return arrays, state

    def _restore(self, checkpoint: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        if "ipi_gle_s" in checkpoint:
            self.system.motion.thermostat.s[:] = checkpoint["ipi_gle_s"]
        self.nsteps = int(state["nsteps"])
        self.simulation.step = self.nsteps
        self.simulation.prng.state = [
            {**s, "state": {"key": np.array(s["state"]["key"], dtype=np.uint32), "pos": int(s["state"]["pos"])}}
            for s in state["prng"]]
        self.system.motion.thermostat.ethermo = state["ethermo"]
        self.system.ensemble.eens = state["eens"]

    def close(self) -> None:
        """Stop i-PI's force fields (EXIT to socket clients), then the clients; drop the models from the registry."""
        from ipi.engine.forcefields import FFRotations

        try:
            if self.clients is not None:
                self.clients.stop_watching()
            self.simulation.stop()
            for forcefield in self.simulation.fflist.values():
                if isinstance(forcefield, FFRotations):  # its stop() leaves the force field inside it running (3.3.1)
                    forcefield.ff.stop()
        finally:
            self._release()

    def _release(self) -> None:
        """Stop the clients (if any) and drop the models from the registry."""
        try:
            if self.clients is not None:
                self.clients.stop()
        finally:
            for key in self.keys.values():
                unregister(key)
