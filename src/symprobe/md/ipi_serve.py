"""``symprobe serve``: a symprobe model as an i-PI client, on i-PI's own Python driver.

The client is i-PI's ``i-pi-py_driver`` loop (``run_driver``, loaded from the script i-PI installs) with the
custom PES :mod:`symprobe.md.ipi_pes` loaded by i-PI's ``load_pes``: the same PES that ``<ffdirect>`` runs
in-process, here answering a socket. i-PI sends positions and the cell only, so the client takes a template
structure for the atomic numbers, ``pbc`` and (isolated structures) the cell, as i-PI's own ASE, MACE and PET
drivers do. It serves until i-PI sends EXIT.

One change to the driver: i-PI 3.3's loop reads the next message header forever when i-PI vanishes without
EXIT (``recv`` then returns nothing); here that ends the client with an error instead of spinning a core.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import sys
import sysconfig
import types
from pathlib import Path

from ase import Atoms

from symprobe.md.ipi import DRIVER_PATH, RegisteredPotential, register, unregister
from symprobe.md.ipi_clients import SocketAddress
from symprobe.models.base import Model

DRIVER_SCRIPT = "i-pi-py_driver"


class ServerGone(ConnectionError):
    """i-PI closed the connection without sending EXIT."""


class _ConnectionSocket(socket.socket):
    """A socket whose ``recv`` raises :class:`ServerGone` where the peer has closed (an empty read)."""

    def recv(self, size: int, *flags: int) -> bytes:
        data = super().recv(size, *flags)
        if size and not data:
            raise ServerGone("i-PI closed the connection without sending EXIT (did the i-PI run die?)")
        return data


@functools.cache
def ipi_python_driver() -> types.ModuleType:
    """i-PI's ``i-pi-py_driver`` script as a module (its ``run_driver``), reading with :class:`_ConnectionSocket`."""
    found = Path(sysconfig.get_path("scripts")) / DRIVER_SCRIPT
    path = found if found.is_file() else shutil.which(DRIVER_SCRIPT)
    if path is None:
        raise ImportError(f"i-PI's Python driver ({DRIVER_SCRIPT}) is not installed: pip install 'symprobe[ipi]'")
    loader = importlib.machinery.SourceFileLoader("ipi_py_driver", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    module.socket = types.SimpleNamespace(**{**vars(socket), "socket": _ConnectionSocket})
    return module


def end_with_parent(pid: int) -> None:
    """Have Linux SIGKILL this process when the thread of process ``pid`` that started it ends
    (``PR_SET_PDEATHSIG``); exit at once if ``pid`` is no longer the parent. Elsewhere than Linux: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != pid:  # the parent ended before the request above
        raise ConnectionError(f"the process that started this client ({pid}) has ended")


def serve(model: Model, template: Atoms, address: SocketAddress) -> None:
    """Answer i-PI's force requests at ``address`` with ``model`` (atoms of ``template``) until i-PI sends EXIT.

    Raises ConnectionError when nothing listens at ``address`` or i-PI goes away without EXIT.
    """
    from ipi.pes import load_pes

    run_driver = ipi_python_driver().run_driver
    key = register(RegisteredPotential(model, template))
    try:
        driver = load_pes("custom", str(DRIVER_PATH))(model=key)
        unix = address.transport == "unix"
        try:
            run_driver(unix=unix, address=address.path if unix else address.host, port=address.port, driver=driver,
                       sockets_prefix="")
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise ConnectionError(f"no i-PI server listens at {address} ({error.strerror or error})") from None
    finally:
        unregister(key)
