"""Where tasks run: the ``--cluster`` spec (``local:N``, ``tcp://HOST:PORT``, ``slurm:FILE.yaml``) parsed into a
:class:`ClusterSpec`, and the SLURM YAML (docs/cluster.md) checked key by key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from symprobe.checks import ConfigError

SPEC_FORMS = "local:N (N worker processes here), tcp://HOST:PORT (a running Dask scheduler) or slurm:FILE.yaml"
SLURM_REQUIRED = ("cores", "memory", "walltime", "jobs")
SLURM_OPTIONAL = ("job_script_prologue", "threads_per_worker", "queue", "account", "job_extra_directives",
                  "log_directory", "local_directory", "python", "interface")
WALLTIME = re.compile(r"(\d+-)?\d{1,2}:\d{2}(:\d{2})?")
MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B)", re.IGNORECASE)


class ClusterError(ConfigError):
    """A cluster that cannot be used (bad spec, bad YAML, unreachable scheduler, workers that keep dying): one line."""


@dataclass(frozen=True)
class SlurmSettings:
    """A SLURM cluster of ``jobs`` batch jobs, each of ``cores`` CPUs and ``memory`` (e.g. ``16GB``) for ``walltime``
    (``HH:MM:SS``), running ``cores // threads_per_worker`` one-task workers; ``job_script_prologue`` lines run first
    in each job script (``module load …``, ``source venv/bin/activate``)."""

    cores: int
    memory: str
    walltime: str
    jobs: int
    threads_per_worker: int = 1
    job_script_prologue: tuple[str, ...] = ()
    queue: str | None = None
    account: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    log_directory: str | None = None
    local_directory: str | None = None
    python: str | None = None
    interface: str | None = None

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
    import yaml

    from symprobe import checks

    path = Path(path)
    if not path.is_file():
        raise ClusterError(f"slurm:{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ClusterError(f"slurm:{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict):
        raise ClusterError(f"slurm:{path}: expected a mapping of {', '.join(SLURM_REQUIRED)}, …")
    unknown = sorted(set(data) - set(SLURM_REQUIRED) - set(SLURM_OPTIONAL))
    missing = [key for key in SLURM_REQUIRED if key not in data]
    if unknown or missing:
        raise ClusterError(f"slurm:{path}: " + "; ".join(
            ([f"unknown keys {', '.join(unknown)} (known: {', '.join(SLURM_REQUIRED + SLURM_OPTIONAL)})"] if unknown else [])
            + ([f"missing {', '.join(missing)}"] if missing else [])))
    try:
        for key in ("cores", "jobs", "threads_per_worker"):
            if key in data:
                checks.number(data[key], key, integer=True, minimum=1)
        for key, pattern, example in (("memory", MEMORY, "16GB"), ("walltime", WALLTIME, "02:00:00")):
            if not isinstance(data[key], str) or not pattern.fullmatch(data[key].strip()):
                raise ClusterError(f"{key} must look like {example}, got {data[key]!r}")
        for key in ("job_script_prologue", "job_extra_directives"):
            if key in data and not (isinstance(data[key], list) and all(isinstance(line, str) for line in data[key])):
                raise ClusterError(f"{key} must be a list of strings")
    except ConfigError as error:
        raise ClusterError(f"slurm:{path}: {error}") from None
    if data.get("threads_per_worker", 1) > data["cores"]:
        raise ClusterError(f"slurm:{path}: threads_per_worker {data['threads_per_worker']} > cores {data['cores']}")
    lists = {key: tuple(data[key]) for key in ("job_script_prologue", "job_extra_directives") if key in data}
    return SlurmSettings(**{**data, **lists})
