"""How fast a model evaluates: atom-steps per second of energy + forces (+ stress on periodic cells)."""

from __future__ import annotations

import time

from ase import Atoms

from symprobe.models.base import Model


def throughput(model: Model, atoms: Atoms, seconds: float = 5.0) -> float:
    """Atom-steps per second of ``model.predict(atoms)`` over at least ``seconds`` s of wall time and two calls
    (after one warm-up call, which pays for allocations a run pays once)."""
    model.predict(atoms)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        model.predict(atoms)
        calls += 1
    return len(atoms) * calls / (time.perf_counter() - start)
