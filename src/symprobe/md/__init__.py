"""Molecular dynamics with raw or symmetrized models, from a YAML config or from Python.

* :mod:`.config` — the config schema (:class:`~symprobe.md.config.MDConfig`, the annotated :data:`~symprobe.md.config.EXAMPLE`), validated before any step;
* :mod:`.batched` — symprobe's batched engine: many replicas as one state, one force call per step, any
  device (``engine: batched``);
* :mod:`.ase_engine` — ASE's integrators for one structure (``engine: ase``, the reference);
* :mod:`.ipi` — i-PI in-process (``engine: ipi``: GLE, and i-PI as a second reference);
* :mod:`.run` — :func:`run_md` for a config, :func:`run_batched` for replicas written in groups;
* :mod:`.output` — logs and trajectories;
* :mod:`.summary` — the summary of a finished run.
"""

from symprobe.md.batched import BatchedDynamics, Replica, ReplicaBlowUp
from symprobe.md.config import EXAMPLE, ConfigError, MDConfig, load_config, validate_config
from symprobe.md.output import read_log
from symprobe.md.run import Group, Strides, checkpoint_step, load_model, load_structure, run_batched, run_md
from symprobe.md.summary import run_summary

__all__ = ["EXAMPLE", "BatchedDynamics", "ConfigError", "Group", "MDConfig", "Replica", "ReplicaBlowUp", "Strides",
           "checkpoint_step", "load_config", "load_model", "load_structure", "read_log", "run_batched", "run_md", "run_summary",
           "validate_config"]
