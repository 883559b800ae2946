"""Batched molecular dynamics: many independent replicas stepped together as one state, one force call per step.

A :class:`Replica` is a structure with its own potential (the model or a symmetrizer of it), optionally multiple
time stepping (the averaging correction every ``n_inner`` steps), its own thermostat and its own generators.
All replicas share one base model, so every step's forces come from one batched evaluation: torch models go
through the engine of :mod:`symprobe.models.torch_model` with neighbour lists kept within a skin (rebuilt
for a replica when one of its atoms has moved more than half the skin), any other model through
``predict_many``. The state is float64 torch tensors on the model's device.

Integrators, each equal to ASE's on one replica to round-off (same random draws from the same generator,
``numpy.random.default_rng([seed, 2])`` per replica):

* ``nve`` — velocity Verlet (:class:`ase.md.verlet.VelocityVerlet`);
* ``nvt-bussi`` — stochastic velocity rescaling before each step (:class:`ase.md.bussi.Bussi`);
* ``nvt-langevin`` — BAOAB (:class:`ase.md.langevinbaoab.LangevinBAOAB`);
* multiple time stepping (r-RESPA, :class:`symprobe.md.ase_engine.MultipleTimeStep`): a block of ``n_inner``
  velocity-Verlet steps of the raw model between half kicks with the slow force (grid average − raw); Bussi
  rescales once per block (before it), Langevin acts as an O half-step of n_inner·dt/2 on each side (OBABO
  at the outer level, the splitting i-PI's ``<nmts>`` uses).

Units: positions Å, momenta amu·Å per ASE time unit (ASE's), energies eV, forces eV/Å; times in fs at the
interface. A replica whose state stops being finite raises :class:`ReplicaBlowUp` naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms, units

from symprobe.models.base import Model
from symprobe.models.torch_model import Copies, Structures, TorchModel, neighbour_list
from symprobe.symmetrize import Symmetrizer

Term = tuple[int, np.ndarray, np.ndarray]  # (replica, rotations (C, 3, 3), weights (C,)): Σ_c w_c E(R_c x_r)


class ReplicaBlowUp(RuntimeError):
    """A replica's positions, energies or forces stopped being finite; ``replica`` is its index."""

    def __init__(self, replica: int, name: str, step: int, what: str):
        self.replica = replica
        super().__init__(f"replica {replica} ({name}) blew up at step {step}: {what}")


@dataclass
class Replica:
    """One independent system: ``atoms`` (positions Å, momenta, masses, cell, pbc), the ``potential`` the
    integrator sees (under MTS: the raw model), the MTS correction ``slow`` applied every ``n_inner`` steps
    (or None), the ``ensemble`` (as in an MD config), the generator ``seed`` and a ``name`` for messages."""

    atoms: Atoms
    potential: Model
    slow: Model | None = None
    n_inner: int = 1
    ensemble: Mapping[str, Any] = field(default_factory=lambda: {"kind": "nve"})
    seed: int = 0
    name: str = ""


def base_model(potential: Model) -> Model:
    """The model a potential evaluates (the innermost one of symmetrizers)."""
    return potential.base if isinstance(potential, Symmetrizer) else potential


def terms_of(potential: Model) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (C, 3, 3), weights (C,)) of one call of ``potential`` on the base model (random rotations
    are drawn here, one call's worth)."""
    if isinstance(potential, Symmetrizer):
        return potential.expand(np.eye(3)[None])
    return np.eye(3)[None], np.ones(1)


# ---------------------------------------------------------------------------------------------------
# The force call


def _gather(terms: Sequence[Term], n_replicas: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Copies ordered by replica: the rotations of each replica, and per copy its term and weight."""
    rotations: list[list[np.ndarray]] = [[] for _ in range(n_replicas)]
    owner: list[list[np.ndarray]] = [[] for _ in range(n_replicas)]
    weight: list[list[np.ndarray]] = [[] for _ in range(n_replicas)]
    for q, (r, R, w) in enumerate(terms):
        rotations[r].append(R)
        owner[r].append(np.full(len(R), q))
        weight[r].append(w)
    per_replica = [np.concatenate(R) if R else np.zeros((0, 3, 3)) for R in rotations]
    return per_replica, np.concatenate(sum(owner, [])), np.concatenate(sum(weight, []))


class ForceCall:
    """Energies (Q,) eV and forces (Σ_q N_q, 3) eV/Å of terms on replicas, from one batched evaluation of
    ``model`` (any :class:`Model`: ``predict_many``)."""

    def __init__(self, model: Model, templates: Sequence[Atoms], device: torch.device):
        self.model, self.templates, self.device = model, list(templates), device
        self.atom_start = np.cumsum([0] + [len(a) for a in templates])

    def frames(self, x: np.ndarray, replicas: Sequence[int]) -> list[Atoms]:
        """ASE structures of ``replicas`` at the stacked positions ``x`` (all atoms, Å)."""
        out = []
        for r in replicas:
            atoms = self.templates[r].copy()
            atoms.calc = None
            atoms.set_positions(x[self.atom_start[r] : self.atom_start[r + 1]])
            out.append(atoms)
        return out

    def __call__(self, x: torch.Tensor, terms: Sequence[Term]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.templates)
        rotations, owner, weight = _gather(terms, n)
        used = [r for r in range(n) if len(rotations[r])]
        batches = self.model.predict_many(self.frames(x.cpu().numpy(), used), [rotations[r] for r in used])
        energies = np.zeros(len(terms))
        forces = [np.zeros((len(self.templates[r]), 3)) for r, _, _ in terms]
        c = 0
        for batch in batches:
            for k in range(len(batch.energies)):
                energies[owner[c]] += weight[c] * batch.energies[k]
                forces[owner[c]] += weight[c] * batch.forces[k]
                c += 1
        as_torch = dict(dtype=torch.float64, device=x.device)
        return torch.as_tensor(energies, **as_torch), torch.as_tensor(np.concatenate(forces), **as_torch)


class TorchForceCall(ForceCall):
    """:class:`ForceCall` for a :class:`TorchModel`: its copy engine, with neighbour lists of cutoff + ``skin``
    Å kept until an atom of the replica moves more than ``skin``/2, filtered to the cutoff at every call."""

    def __init__(self, model: TorchModel, templates: Sequence[Atoms], device: torch.device, skin: float):
        super().__init__(model, templates, device)
        self.skin = float(skin)
        self.lists: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(templates)
        self.reference: torch.Tensor | None = None
        self.structures: Structures | None = None
        self.edge_structure: torch.Tensor | None = None
        self.rebuilds = 0

    def _refresh(self, x: torch.Tensor) -> None:
        """Rebuild the lists of replicas that moved more than half the skin; put ``x`` in the structures."""
        n = len(self.templates)
        if self.reference is None:
            stale = np.ones(n, dtype=bool)
        else:
            displacement = (x - self.reference).norm(dim=1).cpu().numpy()
            stale = np.maximum.reduceat(displacement, self.atom_start[:-1]) > 0.5 * self.skin
        if stale.any():
            frames = self.frames(x.cpu().numpy(), range(n))
            if self.reference is None:
                self.reference = x.clone()
            for r in np.flatnonzero(stale):
                self.lists[r] = neighbour_list(frames[r], self.model.cutoff + self.skin, self.model.half_list)
                start, end = self.atom_start[r], self.atom_start[r + 1]
                self.reference[start:end] = x[start:end]  # each replica's own list is what its displacement is measured from
            self.structures = Structures.of(frames, self.model.cutoff, self.device, edges=self.lists, half_list=self.model.half_list)
            counts = np.diff(self.structures.edge_start)
            self.edge_structure = torch.as_tensor(np.repeat(np.arange(n), counts), device=self.device)
            self.rebuilds += 1
        self.structures.positions = x

    def __call__(self, x: torch.Tensor, terms: Sequence[Term]) -> tuple[torch.Tensor, torch.Tensor]:
        self._refresh(x)
        s = self.structures
        vectors = x[s.edge_j] - x[s.edge_i] + torch.einsum("ea,eab->eb", s.shifts, s.cells[self.edge_structure])
        inside = (vectors * vectors).sum(dim=1) < self.model.cutoff**2
        rotations, owner, weight = _gather(terms, len(self.templates))
        copies = Copies.of(s, [len(R) for R in rotations], inside)
        R = torch.as_tensor(np.concatenate(rotations), dtype=torch.float64, device=self.device)
        results = self.model.evaluate(s, copies, R, stress=False)  # no barostat: forces only
        forces = -torch.einsum("aji,aj->ai", R[copies.atom_copy], results.grad_positions)
        owner_t = torch.as_tensor(owner, device=self.device)
        weight_t = torch.as_tensor(weight, dtype=torch.float64, device=self.device)
        energies = torch.zeros(len(terms), dtype=torch.float64, device=self.device).index_add(0, owner_t, weight_t * results.energies)
        term_sizes = np.array([len(self.templates[r]) for r, _, _ in terms])
        term_start = torch.as_tensor(np.cumsum(np.concatenate([[0], term_sizes]))[:-1], device=self.device)
        replica_start = torch.as_tensor(self.atom_start[:-1], device=self.device)
        atom_owner = owner_t[copies.atom_copy]
        target = term_start[atom_owner] + copies.atom_source - replica_start[copies.copy_structure[copies.atom_copy]]
        total = torch.zeros((int(term_sizes.sum()), 3), dtype=torch.float64, device=self.device)
        return energies, total.index_add(0, target, weight_t[copies.atom_copy, None] * forces)


# ---------------------------------------------------------------------------------------------------
# The dynamics


_KINDS = ("nve", "nvt-bussi", "nvt-langevin")


class BatchedDynamics:
    """The replicas as one state, stepped ``timestep_fs`` at a time (the inner step under MTS).

    Arrays over all atoms (A) or replicas (R), float64 on the device: ``positions``, ``momenta``,
    ``forces`` (of each replica's potential; under MTS the raw model's), ``slow_forces``, ``energies``,
    ``slow_energies``, ``heat`` (energy the thermostats put in). ``nsteps`` counts inner steps.
    """

    def __init__(self, replicas: Sequence[Replica], timestep_fs: float, skin: float = 1.0):
        if not replicas:
            raise ValueError("batched MD needs at least one replica")
        self.replicas = list(replicas)
        bases = {id(base_model(p)) for r in self.replicas for p in (r.potential, r.slow) if p is not None}
        if len(bases) != 1:
            raise ValueError("batched MD: all replicas must evaluate the same model object (one force call per step)")
        self.model = base_model(self.replicas[0].potential)
        self.device = getattr(self.model, "device", torch.device("cpu"))
        templates = [r.atoms for r in self.replicas]
        self.force_call = (TorchForceCall(self.model, templates, self.device, skin) if isinstance(self.model, TorchModel)
                           else ForceCall(self.model, templates, self.device))
        f64 = dict(dtype=torch.float64, device=self.device)
        sizes = np.array([len(a) for a in templates])
        self.atom_start = np.cumsum(np.concatenate([[0], sizes]))
        self.replica_of_atom = torch.as_tensor(np.repeat(np.arange(len(sizes)), sizes), device=self.device)
        self.masses = torch.as_tensor(np.concatenate([a.get_masses() for a in templates]), **f64)
        self.positions = torch.as_tensor(np.concatenate([a.get_positions() for a in templates]), **f64)
        self.momenta = torch.as_tensor(np.concatenate([a.get_momenta() for a in templates]), **f64)
        self.dt = float(timestep_fs) * units.fs
        self.timestep_fs = float(timestep_fs)
        self.n_inner = np.array([r.n_inner if r.slow is not None else 1 for r in self.replicas])
        self.mts = np.array([r.slow is not None for r in self.replicas])
        kinds = [r.ensemble["kind"] for r in self.replicas]
        for kind in kinds:
            if kind not in _KINDS:
                raise ValueError(f"batched MD: ensemble {kind!r} is not supported (one of {', '.join(_KINDS)})")
        self.bussi = np.array([k == "nvt-bussi" for k in kinds])
        self.langevin = np.array([k == "nvt-langevin" for k in kinds])
        self.temperature = np.array([float(r.ensemble.get("temperature_K", 0.0)) for r in self.replicas])
        self.tau = np.array([float(r.ensemble.get("tau_fs", 1.0)) * units.fs for r in self.replicas])
        self.rngs = [np.random.default_rng([r.seed, 2]) for r in self.replicas]
        self.nsteps = 0
        self.heat = torch.zeros(len(self.replicas), **f64)
        self.energies, self.forces, self.slow_energies, self.slow_forces = self._evaluate(self.mts)
        for r in np.flatnonzero((self.bussi | self.langevin) & (self.kinetic_energies().cpu().numpy() <= 0)):
            raise ValueError(f"replica {r} ({self.replicas[r].name}): the atoms start at rest; a thermostat needs "
                             "initial velocities")

    # --- forces -------------------------------------------------------------------------------------
    def _evaluate(self, slow: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energies (R,) and forces (A, 3) of every replica's potential, and of the slow terms of the replicas
        in ``slow`` (zero elsewhere), from one force call at the current positions."""
        self._check_finite(self.positions, "positions")
        terms = [(r, *terms_of(rep.potential)) for r, rep in enumerate(self.replicas)]
        terms += [(r, *terms_of(self.replicas[r].slow)) for r in np.flatnonzero(slow)]
        energies, forces = self.force_call(self.positions, terms)
        self._check_terms(terms, energies, forces)
        n_fast, n_atoms = len(self.replicas), int(self.atom_start[-1])
        slow_energies = torch.zeros_like(self.heat)
        slow_forces = torch.zeros_like(self.positions)
        offset = n_atoms
        for q in range(n_fast, len(terms)):
            r = terms[q][0]
            a, b = int(self.atom_start[r]), int(self.atom_start[r + 1])
            slow_energies[r] = energies[q]
            slow_forces[a:b] = forces[offset : offset + b - a]
            offset += b - a
        return energies[:n_fast], forces[:n_atoms], slow_energies, slow_forces

    def _check_terms(self, terms: list[Term], energies: torch.Tensor, forces: torch.Tensor) -> None:
        sizes = [int(self.atom_start[r + 1] - self.atom_start[r]) for r, _, _ in terms]
        finite = torch.isfinite(forces).all(dim=1)
        start = 0
        for q, ((r, _, _), n) in enumerate(zip(terms, sizes)):
            if not bool(torch.isfinite(energies[q])) or not bool(finite[start : start + n].all()):
                raise ReplicaBlowUp(r, self.replicas[r].name, self.nsteps, "non-finite energy or forces")
            start += n

    def _check_finite(self, values: torch.Tensor, what: str) -> None:
        bad = ~torch.isfinite(values).all(dim=1)
        if bool(bad.any()):
            r = int(self.replica_of_atom[torch.nonzero(bad)[0, 0]])
            raise ReplicaBlowUp(r, self.replicas[r].name, self.nsteps, f"non-finite {what}")

    # --- per-replica sums ---------------------------------------------------------------------------
    def per_replica(self, values: torch.Tensor) -> torch.Tensor:
        """Σ over each replica's atoms of ``values`` (A,) → (R,)."""
        return torch.zeros(len(self.replicas), dtype=values.dtype, device=self.device).index_add(0, self.replica_of_atom, values)

    def kinetic_energies(self) -> torch.Tensor:
        """Kinetic energy of each replica (R,) eV."""
        return self.per_replica(0.5 * (self.momenta * self.momenta).sum(dim=1) / self.masses)

    def potential_energies(self) -> torch.Tensor:
        """Full potential energy of each replica (R,) eV (raw + correction under MTS)."""
        return self.energies + self.slow_energies

    # --- thermostats --------------------------------------------------------------------------------
    def _atom_mask(self, replicas: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(replicas, device=self.device)[self.replica_of_atom]

    def _rescale(self, which: np.ndarray, dt: np.ndarray) -> None:
        """Bussi's stochastic velocity rescaling of the replicas ``which`` over ``dt`` (ASE time, per replica)."""
        if not which.any():
            return
        kinetic = self.kinetic_energies().cpu().numpy()
        alpha = np.ones(len(self.replicas))
        for r in np.flatnonzero(which):
            ndof = 3 * int(self.atom_start[r + 1] - self.atom_start[r])
            exp_term = math.exp(-dt[r] / self.tau[r])
            target = 0.5 * units.kB * self.temperature[r] * ndof
            scaling = (1 - exp_term) * target / kinetic[r] / ndof
            normal = self.rngs[r].standard_normal()
            squares = 2.0 * self.rngs[r].standard_gamma(0.5 * (ndof - 1))
            alpha[r] = math.sqrt(exp_term + scaling * (squares + normal**2) + 2 * normal * math.sqrt(exp_term * scaling))
        factor = torch.as_tensor(alpha, dtype=torch.float64, device=self.device)
        self.momenta = self.momenta * factor[self.replica_of_atom, None]
        self.heat = self.heat + (factor**2 - 1.0) * torch.as_tensor(kinetic, dtype=torch.float64, device=self.device)

    def _ornstein_uhlenbeck(self, which: np.ndarray, dt: np.ndarray) -> None:
        """The Langevin O step of the replicas ``which`` over ``dt`` (ASE time, per replica), as ASE's BAOAB."""
        if not which.any():
            return
        before = self.kinetic_energies()
        gamma = 1.0 / self.tau
        damping = np.where(which, np.exp(-gamma * dt), 1.0)
        amplitude = np.where(which, np.sqrt(units.kB * self.temperature * (1.0 - np.exp(-2.0 * gamma * dt))), 0.0)
        noise = np.zeros((int(self.atom_start[-1]), 3))
        for r in np.flatnonzero(which):
            noise[self.atom_start[r] : self.atom_start[r + 1]] = self.rngs[r].normal(size=(int(self.atom_start[r + 1] - self.atom_start[r]), 3))
        as_torch = lambda a: torch.as_tensor(a, dtype=torch.float64, device=self.device)  # noqa: E731
        velocities = self.momenta / self.masses[:, None]
        velocities = velocities * as_torch(damping)[self.replica_of_atom, None]
        velocities = velocities + as_torch(amplitude)[self.replica_of_atom, None] * as_torch(noise) / torch.sqrt(self.masses)[:, None]
        self.momenta = velocities * self.masses[:, None]
        self.heat = self.heat + self.kinetic_energies() - before

    # --- one step -----------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance every replica by one (inner) time step."""
        n, dt = self.nsteps, self.dt
        outer = self.n_inner * dt
        start = self.mts & (n % self.n_inner == 0)
        end = self.mts & ((n + 1) % self.n_inner == 0)
        self._rescale(start & self.bussi, outer)
        self._ornstein_uhlenbeck(start & self.langevin, 0.5 * outer)
        kick = torch.as_tensor(np.where(start, 0.5 * outer, 0.0), dtype=torch.float64, device=self.device)
        self.momenta = self.momenta + kick[self.replica_of_atom, None] * self.slow_forces
        self._rescale(~self.mts & self.bussi, np.full(len(self.replicas), dt))
        self.momenta = self.momenta + 0.5 * dt * self.forces
        baoab = ~self.mts & self.langevin
        if baoab.any():
            half = self._atom_mask(baoab)[:, None]
            self.positions = torch.where(half, self.positions + 0.5 * dt * self.momenta / self.masses[:, None],
                                         self.positions + dt * self.momenta / self.masses[:, None])
            self._ornstein_uhlenbeck(baoab, np.full(len(self.replicas), dt))
            self.positions = torch.where(half, self.positions + 0.5 * dt * self.momenta / self.masses[:, None], self.positions)
        else:
            self.positions = self.positions + dt * self.momenta / self.masses[:, None]
        self.energies, self.forces, slow_e, slow_f = self._evaluate(end)
        if end.any():
            self.slow_forces = torch.where(self._atom_mask(end)[:, None], slow_f, self.slow_forces)
            self.slow_energies = torch.where(torch.as_tensor(end, device=self.device), slow_e, self.slow_energies)
        self.momenta = self.momenta + 0.5 * dt * self.forces
        kick = torch.as_tensor(np.where(end, 0.5 * outer, 0.0), dtype=torch.float64, device=self.device)
        self.momenta = self.momenta + kick[self.replica_of_atom, None] * self.slow_forces
        self._ornstein_uhlenbeck(end & self.langevin, 0.5 * outer)
        self._check_finite(self.momenta, "momenta")
        self.nsteps += 1

    # --- views and checkpoints ----------------------------------------------------------------------
    def atoms(self, r: int) -> Atoms:
        """Replica ``r`` as ASE atoms (positions, momenta; a copy)."""
        a, b = self.atom_start[r], self.atom_start[r + 1]
        atoms = self.replicas[r].atoms.copy()
        atoms.calc = None
        atoms.set_positions(self.positions[a:b].cpu().numpy())
        atoms.set_momenta(self.momenta[a:b].cpu().numpy(), apply_constraint=False)
        return atoms

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-serialisable state) that restore this state exactly."""
        arrays = {name: getattr(self, name).cpu().numpy() for name in
                  ("positions", "momenta", "forces", "slow_forces", "energies", "slow_energies", "heat")}
        state = {"engine": "batched", "nsteps": self.nsteps, "rngs": [g.bit_generator.state for g in self.rngs],
                 "symmetrizers": [r.potential.state() if isinstance(r.potential, Symmetrizer) else {} for r in self.replicas],
                 "activation_bytes": getattr(self.model, "activation_bytes", None)}
        return arrays, state

    def restore(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> None:
        """Put back a :meth:`checkpoint` of the same replicas."""
        for name in ("positions", "momenta", "forces", "slow_forces", "energies", "slow_energies", "heat"):
            setattr(self, name, torch.as_tensor(arrays[name], dtype=torch.float64, device=self.device))
        self.nsteps = int(state["nsteps"])
        for generator, saved in zip(self.rngs, state["rngs"]):
            generator.bit_generator.state = saved
        for replica, saved in zip(self.replicas, state["symmetrizers"]):
            if isinstance(replica.potential, Symmetrizer):
                replica.potential.restore(saved)
        if state.get("activation_bytes") is not None and hasattr(self.model, "activation_bytes"):
            self.model.activation_bytes = state["activation_bytes"]
