"""Writing results so that a crash never leaves half a file (every write goes to a temporary file in the
same directory, then replaces the target in one ``os.replace``), result sets replaced as a unit
(:func:`replacing_set`), and output directories that belong to one run."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from symprobe.checks import ConfigError


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``
    (for writers that take a file name: ``savefig``, ``torch.save``, ``np.savez``). The suffix is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; refuses NaN and infinities (ValueError)."""
    return atomic_write(path, json.dumps(data, indent=1, allow_nan=False))


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure to ``path`` atomically (tight bounding box) and close it."""
    import matplotlib.pyplot as plt

    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


@contextmanager
def replacing_set(directory: str | Path, members: Sequence[str]) -> Iterator[Path]:
    """Replace a result set (files ``members`` of ``directory``, e.g. a JSON and its figures) as a unit.

    Yields an empty staging directory inside ``directory`` (same file system); the block writes the new set
    there. When it ends without error, members it did not write are deleted from ``directory`` and the new
    files moved in, renames only (a full disk cannot stop them half-way); on error the previous set is left
    as it was. The staging directory is removed either way; one left by a killed run is cleared first.
    """
    directory = Path(directory)
    staging = directory / ".replacing.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        written = {path.name for path in staging.iterdir()}
        if not written <= set(members):
            raise ValueError(f"replacing_set: {sorted(written - set(members))} are not members of the result set")
        for name in members:
            if name in written:
                os.replace(staging / name, directory / name)
            else:
                (directory / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def writing_to(directory: str | Path) -> Iterator[None]:
    """Give an ``OSError`` raised without a file name (a flush on a full disk) the name of ``directory``."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror, str(directory)) from error


def check_writable(directory: str | Path) -> Path:
    """Create ``directory`` if needed and make sure a file can be written in it, before any work starts;
    raises ``PermissionError``/``OSError`` naming the directory otherwise."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".symprobe-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise type(error)(error.errno, f"cannot write to {directory}: {error.strerror or error}") from None
    return directory


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def claim_directory(out: Path, names: Sequence[str], resume: bool, overwrite: bool, kept: Sequence[str] = ()) -> None:
    """Make ``out`` this run's: refuse a directory that holds a run (any of ``names`` or ``kept``) unless resuming;
    with ``overwrite`` delete ``names`` first and leave ``kept``, a result set that the run replaces as a unit
    once its new one is complete (:func:`replacing_set`). Checks that ``out`` is writable."""
    check_writable(out)
    held = sorted(name for name in [*names, *kept] if (out / name).exists())
    if resume:
        return
    if held and not overwrite:
        raise ConfigError(f"output directory {out} already holds a run ({', '.join(held)}); continue it with --resume, replace it with "
                          "--overwrite, or choose another output directory")
    for name in set(held) - set(kept):
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
