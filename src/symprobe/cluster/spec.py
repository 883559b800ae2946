"""Where tasks run: the ``--cluster`` spec (``local:N``, ``tcp://HOST:PORT``, ``slurm:FILE.yaml``) parsed into a
:class:`ClusterSpec`, and the SLURM YAML (docs/cluster.md) declared by :class:`SlurmSettings`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from symprobe.checks import ConfigError, Section, read_yaml, validate

SPEC_FORMS = "local:N (N worker processes here), tcp://HOST:PORT (a running Dask scheduler) or slurm:FILE.yaml"
WALLTIME = re.compile(r"(\d+-)?\d{1,2}:\d{2}(:\d{2})?")
MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B)", re.IGNORECASE)


class ClusterError(ConfigError):
    """A cluster that cannot be used (bad spec, bad YAML, unreachable scheduler, workers that keep dying): one line."""


class SlurmSettings(Section):
    """A SLURM cluster of ``jobs`` batch jobs, each of ``cores`` CPUs and ``memory`` (e.g. ``16GB``) for ``walltime``
    (``HH:MM:SS``), running ``cores // threads_per_worker`` one-task workers; ``job_script_prologue`` lines run first
    in each job script (``module load …``, ``source venv/bin/activate``)."""

    model_config = ConfigDict(frozen=True)

    cores: int = Field(ge=1, description="CPUs of each batch job")
    memory: str = Field(description="memory of each batch job, e.g. 16GB")
    walltime: str = Field(description="wall time of each batch job, [D-]HH:MM[:SS]")
    jobs: int = Field(ge=1, description="batch jobs to submit")
    threads_per_worker: int = Field(1, ge=1, description="torch threads of each task (workers per job: cores // this)")
    job_script_prologue: tuple[str, ...] = Field((), strict=False, description="shell lines run first in each job script")
    queue: str | None = Field(None, description="SLURM partition (#SBATCH -p)")
    account: str | None = Field(None, description="SLURM account (#SBATCH -A)")
    job_extra_directives: tuple[str, ...] = Field((), strict=False, description="extra #SBATCH options without the prefix, e.g. --constraint=cpu")
    log_directory: str | None = Field(None, description="where the job logs go")
    local_directory: str | None = Field(None, description="the workers' scratch directory")
    python: str | None = Field(None, description="the Python the workers run (default: this one)")
    interface: str | None = Field(None, description="the network interface of the workers, e.g. ib0")

    @field_validator("memory", "walltime")
    @classmethod
    def _looks_right(cls, value: str, info: ValidationInfo) -> str:
        pattern, example = (MEMORY, "16GB") if info.field_name == "memory" else (WALLTIME, "02:00:00")
        if not pattern.fullmatch(value.strip()):
            raise ClusterError(f"{info.field_name} must look like {example}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _threads_fit(self) -> SlurmSettings:
        if self.threads_per_worker > self.cores:
            raise ClusterError(f"threads_per_worker {self.threads_per_worker} > cores {self.cores}")
        return self

    @property
    def processes(self) -> int:
        """Worker processes per job."""
        return max(self.cores // self.threads_per_worker, 1)


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster``: ``kind`` is ``local``, ``tcp`` or ``slurm``; ``threads`` torch threads per task."""

    kind: str
    text: str
    workers: int = 0  # local
    address: str = ""  # tcp
    slurm: SlurmSettings | None = field(default=None)
    threads: int = 1

    @property
    def threads_per_task(self) -> int:
        """torch threads each task runs with."""
        return self.slurm.threads_per_worker if self.slurm is not None else self.threads


def parse_cluster(text: str, threads_per_worker: int | None = None) -> ClusterSpec:
    """The cluster named by ``text`` (see :data:`SPEC_FORMS`); ``threads_per_worker`` torch threads per task (default 1;
    for SLURM the YAML's ``threads_per_worker``). Raises :class:`ClusterError` naming the problem."""
    if threads_per_worker is not None and threads_per_worker < 1:
        raise ClusterError(f"--threads-per-worker must be ≥ 1, got {threads_per_worker}")
    threads = threads_per_worker or 1
    kind, _, rest = text.partition(":")
    if kind == "local":
        if not rest.isdigit() or int(rest) < 1:
            raise ClusterError(f"--cluster {text}: local:N needs a number of workers N ≥ 1")
        return ClusterSpec("local", text, workers=int(rest), threads=threads)
    if kind == "tcp":
        host, _, port = rest.removeprefix("//").rpartition(":")
        if not rest.startswith("//") or not host or not port.isdigit():
            raise ClusterError(f"--cluster {text}: a scheduler address is tcp://HOST:PORT")
        return ClusterSpec("tcp", text, address=text, threads=threads)
    if kind == "slurm":
        if threads_per_worker is not None:
            raise ClusterError("--threads-per-worker: for slurm: give threads_per_worker in the YAML")
        return ClusterSpec("slurm", text, slurm=read_slurm_settings(rest))
    raise ClusterError(f"--cluster {text!r}: not a cluster spec; use {SPEC_FORMS}")


def read_slurm_settings(path: str | Path) -> SlurmSettings:
    """The :class:`SlurmSettings` of a YAML file, each key checked."""
    if not Path(path).is_file():
        raise ClusterError(f"slurm:{path}: no such file")
    try:
        return validate(SlurmSettings, read_yaml(path) or {}, f"slurm:{path}", prefixed=True)
    except ConfigError as error:
        raise ClusterError(str(error)) from None
