"""i-PI socket clients: where they connect (:class:`SocketAddress`) and the ``symprobe serve`` processes that an
``engine: ipi`` run with ``clients: N`` starts, replaces when one ends, and stops (:class:`ClientPool`).

A run's UNIX socket is /tmp/ipi_symprobe-<random> (i-PI's place for it; unique per run, removed with it);
its inet socket is 127.0.0.1 on a port the system reported free just before i-PI binds it. i-PI hands each
queued force request to whichever client is free and gives the request of a client that died to another
(its ``<ffsocket>``), so a replaced client costs time, never a step. Clients run in their own session (Ctrl-C
in a terminal reaches the run alone, which stops them after its checkpoint) and, on Linux, the kernel kills
them if the run dies without stopping them (``symprobe serve --parent``). The template structure the clients read
and each client's output (``client-K.log``, whose last line is quoted when that client ends) are in a
temporary directory, removed when the pool stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ase import Atoms
from ase.io import write

TRANSPORTS = ("unix", "inet")
IPI_SOCKETS_PREFIX = "/tmp/ipi_"  # where i-PI and its drivers put the UNIX socket of a bare address name
MAX_UNIX_PATH = 107  # bytes in sockaddr_un.sun_path, less the closing NUL
POLL_S = 0.1  # how often the pool looks for clients that ended
REPLACEMENTS_PER_CLIENT = 5  # the pool gives up after this many replacements per client (a client that keeps dying)
EXIT_BAD_INPUT = 2  # a client's exit status for bad input (symprobe.cli): starting another would fail the same way


class ClientsFailed(ConnectionError):
    """The clients of a run cannot serve it (bad input in a client, or clients that keep dying)."""


@dataclass(frozen=True)
class SocketAddress:
    """An i-PI socket: ``unix`` with the socket file ``path``, or ``inet`` at ``host``:``port``."""

    transport: str
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 0

    @classmethod
    def unix(cls, name: str) -> SocketAddress:
        """A UNIX socket by i-PI's address ``name`` (the file /tmp/ipi_NAME) or by the path of its file (NAME with a /)."""
        if not name:
            raise ValueError("--unix needs a socket name (i-PI's <address>) or the path of the socket file")
        path = name if "/" in name else IPI_SOCKETS_PREFIX + name
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise ValueError(f"UNIX socket path {path!r} is longer than the {MAX_UNIX_PATH} bytes the system allows")
        return cls("unix", path=path)

    @classmethod
    def inet(cls, host: str, port: int) -> SocketAddress:
        """A TCP socket at ``host``:``port`` (1–65535)."""
        if not host:
            raise ValueError("--address needs a host name or IP address")
        if not 1 <= port <= 65535:
            raise ValueError(f"--port must be between 1 and 65535, got {port}")
        return cls("inet", host=host, port=port)

    @property
    def ipi_address(self) -> str:
        """The ``<address>`` of i-PI's ``<ffsocket>``: the host, or the UNIX socket's name after ``/tmp/ipi_`` (i-PI 3.3
        binds a nested ``<ffsocket>`` there whatever the simulation's ``sockets_prefix``)."""
        if self.transport == "inet":
            return self.host
        if not self.path.startswith(IPI_SOCKETS_PREFIX):
            raise ValueError(f"i-PI binds UNIX sockets at {IPI_SOCKETS_PREFIX}NAME, not at {self.path}")
        return self.path.removeprefix(IPI_SOCKETS_PREFIX)

    def __str__(self) -> str:
        return self.path if self.transport == "unix" else f"{self.host}:{self.port}"

    def serve_arguments(self) -> list[str]:
        """The ``symprobe serve`` arguments that connect to this socket."""
        return ["--unix", self.path] if self.transport == "unix" else ["--address", self.host, "--port", str(self.port)]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def threads_per_client(n: int) -> int:
    """This machine's cores (those this process may use) shared among ``n`` clients, at least one each."""
    return max(1, len(os.sched_getaffinity(0)) // n)


def read_resets_as_closes() -> None:
    """Make i-PI's server take a reset connection for a closed one (idempotent; this process only).

    i-PI 3.3.1 reads a client's answer with ``recv_into`` and takes 0 bytes for a client gone. A client killed
    while i-PI's request is still unread in its socket resets the connection instead (ECONNRESET), which i-PI
    does not catch: its socket thread dies with the request in flight and the run waits forever.
    """
    from ipi.interfaces.sockets import DriverSocket

    if getattr(DriverSocket, "symprobe_reads_resets_as_closes", False):
        return

    def recv_into(self: socket.socket, buffer, nbytes: int = 0, flags: int = 0) -> int:
        try:
            return socket.socket.recv_into(self, buffer, nbytes, flags)
        except ConnectionResetError:
            return 0

    DriverSocket.recv_into = recv_into
    DriverSocket.symprobe_reads_resets_as_closes = True


def _ending(status: int) -> str:
    """A process's exit status in words."""
    return f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"


class ClientPool:
    """``n`` ``symprobe serve`` processes answering i-PI at a fresh socket; one that fails while the pool runs
    is replaced (up to :data:`REPLACEMENTS_PER_CLIENT` × ``n`` times); bad input in a client fails the run.

    Each client is ``symprobe serve MODEL --structure TEMPLATE --device DEVICE`` at the pool's socket, with
    ``threads`` OMP/MKL/torch threads. Call :meth:`start` once i-PI listens and :meth:`stop` always (it also
    removes the temporary directory). A client that ends with status 0 was sent EXIT by i-PI and is not
    replaced. When the pool gives up it records :attr:`failure` and, if it was started in the main thread,
    raises :class:`ClientsFailed` there (through SIGUSR1: the main thread is then waiting inside i-PI for forces).
    """

    def __init__(self, model: str, template: Atoms, n: int, transport: str, device: str = "cpu", threads: int = 1):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        self.n, self.threads = int(n), int(threads)
        self.directory = Path(tempfile.mkdtemp(prefix="symprobe-ipi-"))
        structure = self.directory / "template.extxyz"
        write(structure, template, format="extxyz")
        self.serve = [model, "--structure", str(structure), "--device", device]
        self.address = (SocketAddress.unix(f"symprobe-{uuid.uuid4().hex[:16]}") if transport == "unix"
                        else SocketAddress.inet("127.0.0.1", free_port()))
        self.replaced = 0
        self.failure: str | None = None
        self._processes: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._main: int | None = None
        self._previous_handler = None

    def start(self) -> None:
        """Start the clients and the thread that replaces those that end."""
        read_resets_as_closes()
        if threading.current_thread() is threading.main_thread():
            self._main = threading.get_ident()
            self._previous_handler = signal.signal(signal.SIGUSR1, self._raise_failure)
        self._processes = [self._spawn(k) for k in range(self.n)]
        self._watcher = threading.Thread(target=self._watch, name="symprobe-ipi-clients", daemon=True)
        self._watcher.start()

    def _spawn(self, k: int) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        command = [sys.executable, "-m", "symprobe", "serve", *self.serve, *self.address.serve_arguments(),
                   "--threads", str(self.threads), "--parent", str(os.getpid())]
        with open(self.directory / f"client-{k}.log", "ab") as log:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    def _last_line(self, k: int) -> str:
        lines = (self.directory / f"client-{k}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else "no output"

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            for k, process in enumerate(self._processes):
                status = process.poll()
                if status is None or status == 0 or self._stopping.is_set():  # 0: i-PI sent EXIT
                    continue
                ending = _ending(status) + (f": {self._last_line(k)}" if status > 0 else "")  # > 0: it said why
                if status == EXIT_BAD_INPUT or self.replaced >= REPLACEMENTS_PER_CLIENT * self.n:
                    why = "" if status == EXIT_BAD_INPUT else f" (after {self.replaced} replacements)"
                    self._give_up(f"i-PI client {k} (pid {process.pid}) ended with {ending}{why}")
                    return
                print(f"symprobe md: i-PI client {k} (pid {process.pid}) ended ({ending}); started another",
                      file=sys.stderr, flush=True)
                self._processes[k] = self._spawn(k)
                self.replaced += 1

    def _give_up(self, failure: str) -> None:
        self.failure = failure
        print(f"symprobe md: {failure}; stopping the run", file=sys.stderr, flush=True)
        if self._main is not None:
            signal.pthread_kill(self._main, signal.SIGUSR1)

    def _raise_failure(self, number: int, frame: object) -> None:
        if self.failure is not None:
            raise ClientsFailed(self.failure)

    def stop_watching(self) -> None:
        """Stop replacing clients (before i-PI closes: a client that then fails to connect is no failure)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop replacing clients, give each up to ``grace_s`` to leave (i-PI's EXIT), then terminate, then kill
        it; remove the temporary directory (socket file, template, logs)."""
        self.stop_watching()
        for ask in (None, subprocess.Popen.terminate, subprocess.Popen.kill):
            deadline = time.monotonic() + grace_s
            for process in self._processes:
                if ask is not None and process.poll() is None:
                    ask(process)
            for process in self._processes:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        if self._main is not None:
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._main = None
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.address.transport == "unix":  # i-PI removes it when it closes; not if it failed before
            Path(self.address.path).unlink(missing_ok=True)
