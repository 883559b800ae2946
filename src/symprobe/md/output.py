"""What an MD run writes: ``log.csv`` (one row per logged step), the trajectory (``.extxyz``/``.xyz``/``.traj``)
and, on a restart, both cut back to the checkpoint so that the files equal those of an uninterrupted run.

Log columns: step, time_fs, potential_eV, kinetic_eV, thermostat_energy_eV (heat put in by the thermostat),
conserved_eV (potential + kinetic − thermostat energy), temperature_K, and for non-periodic structures the
angular momentum about the centre of mass Lx_eVfs, Ly_eVfs, Lz_eVfs (eV·fs).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from ase import Atoms, units

from symprobe.files import atomic_write
from symprobe.analysis.observables import EV_FS_PER_AMU_A2_PER_FS, angular_momentum

LOG_COLUMNS = ["step", "time_fs", "potential_eV", "kinetic_eV", "thermostat_energy_eV", "conserved_eV",
               "temperature_K"]
ANGULAR_COLUMNS = ["Lx_eVfs", "Ly_eVfs", "Lz_eVfs"]


def columns(periodic: bool) -> list[str]:
    """The log header of a periodic or an isolated structure."""
    return LOG_COLUMNS + ([] if periodic else ANGULAR_COLUMNS)


def angular_momentum_eVfs(positions: np.ndarray, momenta: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Angular momentum (3,) eV·fs about the centre of mass; positions Å, momenta in ASE units, masses amu."""
    velocities = momenta / masses[:, None] * units.fs  # Å/fs
    return angular_momentum(positions, velocities, masses) * EV_FS_PER_AMU_A2_PER_FS


def log_row(step: int, time_fs: float, potential: float, kinetic: float, heat: float, temperature: float,
            angular: np.ndarray | None = None) -> list[str]:
    """One log row (energies eV, temperature K, angular momentum eV·fs), full precision."""
    values = [time_fs, potential, kinetic, heat, potential + kinetic - heat, temperature]
    values += [] if angular is None else list(angular)
    return [str(int(step))] + [repr(float(v)) for v in values]


class Log:
    """An open ``log.csv`` in append mode; the header is written when the file is new."""

    def __init__(self, path: Path, periodic: bool):
        new = not path.exists()
        self.handle = open(path, "a", newline="")
        self.writer = csv.writer(self.handle, lineterminator="\n")
        if new:
            self.writer.writerow(columns(periodic))

    def write(self, row: list[str]) -> None:
        """Append one row of the log (columns as in :data:`LOG_COLUMNS`)."""
        self.writer.writerow(row)

    def flush(self) -> None:
        """Write buffered rows to the file."""
        self.handle.flush()

    def close(self) -> None:
        """Close the log file."""
        self.handle.close()


def write_frame(path: Path, atoms: Atoms, energy: float, forces: np.ndarray, step: int, time_fs: float) -> None:
    """Append ``atoms`` (positions, momenta) with its potential energy (eV), forces (eV/Å), step and time (fs)."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    frame.info.update(step=int(step), time_fs=float(time_fs))
    if path.suffix == ".traj":  # ase.io.write(append=True) makes .traj files ASE cannot read back
        from ase.io.trajectory import Trajectory

        with Trajectory(path, "a") as trajectory:
            trajectory.write(frame)
    else:
        write(path, frame, append=True)


def truncate_log(path: Path, last_step: int) -> None:
    """Keep the header and the rows up to ``last_step`` (after a restart)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    atomic_write(path, "".join(lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= last_step]))


def truncate_trajectory(path: Path, last_step: int) -> None:
    """Keep the frames up to ``last_step`` (after a restart)."""
    from ase.io import read, write

    from symprobe.files import replacing

    if not path.exists():
        return
    frames = [f for f in read(path, index=":") if int(f.info["step"]) <= last_step]
    with replacing(path) as tmp:
        write(tmp, frames) if frames else tmp.write_bytes(b"")


def read_log(directory: str | Path) -> dict[str, np.ndarray]:
    """The property log of a run as columns (numpy arrays), keyed by the CSV header."""
    path = Path(directory) / "log.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no MD log (did the run start?)")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
    return {name: values[:, k] for k, name in enumerate(header)}
