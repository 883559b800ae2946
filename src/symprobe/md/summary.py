"""The one-screen summary printed at the end of ``symprobe md``: length, conserved-quantity drift, mean temperature
and where the files are, read back from the run's own files."""

from __future__ import annotations

from pathlib import Path

from symprobe.md.config import MDConfig
from symprobe.md.output import read_log


def run_summary(config: MDConfig) -> str:
    """Lines on the run in ``config.output.directory`` (each replica's files when there are several)."""
    out = config.output.directory
    directories = [out] if config.replicas == 1 else [out / f"replica-{k}" for k in range(config.replicas)]
    lines = [(f"md: {config.engine} engine, {config.ensemble.kind}, time step {config.timestep_fs:g} fs, "
              f"symmetrizer {config.symmetrizer.kind}")]
    for directory in directories:
        prefix = "" if config.replicas == 1 else f"{directory.name}: "
        lines.append(prefix + log_summary(directory, config.output.trajectory))
    where = f"{out}/" if config.replicas == 1 else f"{out}/replica-0 … replica-{config.replicas - 1}/"
    checkpoints = (f"{out}/checkpoint.npz: continue with --resume and a longer run" if config.cluster is None else
                   f"each replica's checkpoint in its directory, every attempt of its task in {out}/log.jsonl")
    lines.append(f"files: {where} (log.csv: energies and temperature per logged step; {config.output.trajectory}: frames "
                 f"every {config.output.trajectory_stride} steps); {checkpoints}")
    return "\n".join(lines)


def log_summary(directory: Path, trajectory: str) -> str:
    """Steps, simulated time (ps), the conserved quantity's drift (meV/atom/ps, with its standard error, and its total
    change in meV/atom) and the mean temperature (K) of the log in ``directory``."""
    from ase.io import read

    from symprobe.analysis.observables import conserved_drift

    log = read_log(directory)
    n_atoms = len(read(directory / trajectory, index=0))
    steps, time_ps = int(log["step"][-1]), float(log["time_fs"][-1]) / 1000.0
    conserved = log["conserved_eV"]
    change = 1000.0 * float(conserved[-1] - conserved[0]) / n_atoms
    if len(conserved) >= 3:
        slope = conserved_drift(log["time_fs"], conserved, n_atoms).mev_per_molecule_per_ps
        drift = f"conserved quantity drift {slope.mean:+.3g} ± {slope.error:.2g} meV/atom/ps ({change:+.3g} meV/atom in all)"
    else:
        drift = f"conserved quantity changed by {change:+.3g} meV/atom (too few log rows for a drift)"
    return (f"{steps} steps, {time_ps:.4g} ps simulated, {n_atoms} atoms; {drift}; mean temperature "
            f"{float(log['temperature_K'].mean()):.1f} K over {len(conserved)} logged steps")
