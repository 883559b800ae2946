"""Averaged MD over i-PI sockets (engine ipi, clients: N): `symprobe serve` clients give the in-process trajectory,
a killed client is replaced without losing a step, and nothing is left running or on disk afterwards."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from symprobe.cli import main
from symprobe.md import ConfigError, load_config, read_log, run_md, validate_config
from symprobe.md.ipi_clients import IPI_SOCKETS_PREFIX, ClientsFailed

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ipi") is None, reason="i-PI (the 'ipi' extra) is missing"),
              pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning")]

MODELS = '''
import os
import signal

from symprobe.testing import anisotropic_qtip4pf


def model():
    """A float64 water model with orientational terms up to l = 4: the 2i grid (exact to 2) leaves some of them."""
    water = anisotropic_qtip4pf({2: 0.2, 3: 0.2, 4: 0.2}, seed=1)
    marker = os.environ.get("KILL_MARKER")
    if marker and os.getpid() != int(os.environ["TEST_PID"]):  # a client: SIGKILL itself at its KILL_AT-th call
        predict, calls = water.predict, [0]

        def dying(atoms):
            calls[0] += 1
            if calls[0] == int(os.environ["KILL_AT"]) and os.path.exists(marker):
                os.unlink(marker)  # once: the client started in its place finds no marker
                os.kill(os.getpid(), signal.SIGKILL)
            return predict(atoms)

        water.predict = dying
    return water


def test_process_only():
    if os.getpid() != int(os.environ["TEST_PID"]):
        raise ValueError("this model loads in the test process only")
    return model()
'''


@pytest.fixture
def models(tmp_path, monkeypatch) -> str:
    """The module of MODELS importable here and in clients (PYTHONPATH); returns its name."""
    (tmp_path / "socket_models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.setenv("TEST_PID", str(os.getpid()))
    return "socket_models"


def config(tmp_path, name: str, model: str, grid: str = "2i", steps: int = 20, **extra) -> dict:
    return {"structure": "builtin:water-monomer", "model": model, "timestep_fs": 0.5, "steps": steps,
            "initial_temperature_K": 300, "seed": 5, "engine": "ipi", "symmetrizer": {"kind": "grid", "grid": grid},
            "output": {"directory": tmp_path / name, "progress": False, "trajectory": "trajectory.traj",
                       "trajectory_stride": 1}, **extra}


def frames(directory: Path) -> list:
    return read(directory / "trajectory.traj", ":")


def largest_difference(a: Path, b: Path) -> float:
    """Largest difference of positions (Å), momenta and forces between two runs' frames."""
    pairs = list(zip(frames(a), frames(b), strict=True))
    return max(float(np.abs(getattr(x, f)() - getattr(y, f)()).max()) for x, y in pairs
               for f in ("get_positions", "get_momenta", "get_forces"))


def children(parent: int | None = None) -> set[int]:
    """PIDs of the child processes of ``parent`` (default: this process), from /proc."""
    parent, found = parent or os.getpid(), set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def leftovers() -> set[str]:
    """i-PI UNIX socket files of symprobe runs and symprobe client directories now on disk."""
    return {str(p) for p in Path(IPI_SOCKETS_PREFIX).parent.glob(Path(IPI_SOCKETS_PREFIX).name + "symprobe-*")} | {
        str(p) for p in Path(tempfile.gettempdir()).glob("symprobe-ipi-*")}


@pytest.fixture
def clean():
    """Asserts that a test leaves no child process, socket file or client directory behind (children started
    before it, such as the resource tracker of an earlier test's Dask cluster, are not its own)."""
    before, running = leftovers(), children()
    yield
    assert children() - running == set()
    assert leftovers() - before == set()


@pytest.fixture
def reference(tmp_path, models) -> Path:
    """The in-process i-PI run (<ffdirect>, the 2i average computed by symprobe)."""
    return run_md(config(tmp_path, "ffdirect", f"{models}:model"))


@pytest.mark.parametrize("transport", ["unix", "inet"])
def test_two_socket_clients_give_the_in_process_trajectory(tmp_path, models, reference, clean, transport):
    """<ffrotations> over <ffsocket> with 2 `symprobe serve` clients = <ffdirect> with symprobe's 2i average (on
    inet also when stopped at step 10 and resumed from its checkpoint)."""
    clients = {"clients": 2, "transport": transport}
    if transport == "inet":  # and resumed from a checkpoint at step 10
        run_md(config(tmp_path, transport, f"{models}:model", steps=10, **clients))
    served = run_md(config(tmp_path, transport, f"{models}:model", **clients), resume=transport == "inet")
    assert len(frames(served)) == 21
    assert largest_difference(served, reference) < 1e-10  # measured 2e-14
    logs = read_log(served), read_log(reference)
    for column in logs[1]:
        np.testing.assert_allclose(logs[0][column], logs[1][column], rtol=0, atol=1e-10, err_msg=column)
    if transport == "unix":  # the average is over 2i: the 2-grid (no inversion) gives another trajectory
        other = run_md(config(tmp_path, "grid-2", f"{models}:model", grid="2"))
        assert largest_difference(other, reference) > 1e-6


def test_a_killed_client_is_replaced_without_losing_a_step(tmp_path, models, reference, clean, monkeypatch, capfd):
    """The only client dies (SIGKILL) holding a request in the middle of step 3: i-PI requeues the request,
    the run starts another client, and the trajectory is the uninterrupted one."""
    marker = tmp_path / "kill-once"
    marker.touch()
    monkeypatch.setenv("KILL_MARKER", str(marker))
    monkeypatch.setenv("KILL_AT", str(36 * 2 + 18))  # calls: 36 rotated copies per step, the first step's forces at 0
    served = run_md(config(tmp_path, "killed", f"{models}:model", clients=1))
    assert not marker.exists()  # the client did kill itself
    assert "i-PI client 0" in capfd.readouterr().err.split("ended (killed by SIGKILL")[0]
    assert largest_difference(served, reference) < 1e-10


def test_clients_that_cannot_load_the_model_fail_the_run_with_their_error(tmp_path, models, clean):
    with pytest.raises(ClientsFailed, match=r"i-PI client \d \(pid \d+\) ended with exit status 2: symprobe serve: "
                       r"error: .*this model loads in the test process only"):
        run_md(config(tmp_path, "refused", f"{models}:test_process_only", clients=2, steps=4))


def test_an_interrupted_run_leaves_no_client_running(tmp_path, models):
    """`symprobe md` (raw model on a bare <ffsocket>) stopped by Ctrl-C writes its checkpoint, sends EXIT to its
    `symprobe serve` clients and stops them: none is left running."""
    path = tmp_path / "md.yaml"
    path.write_text(f"structure: builtin:water-monomer\nmodel: {models}:model\ntimestep_fs: 0.5\nsteps: 100000\n"
                    f"initial_temperature_K: 300\nengine: ipi\nclients: 2\n"  # raw: one <ffsocket>, no <ffrotations>
                    f"output: {{directory: {tmp_path / 'run'}, progress: false}}\n")
    before = leftovers()
    run = subprocess.Popen([sys.executable, "-m", "symprobe", "md", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / "log.csv").exists() or len(read_log(tmp_path / "run")["step"]) < 3:
            assert time.monotonic() < deadline and run.poll() is None, run.stderr.read() if run.poll() else "timeout"
            time.sleep(0.2)
        clients = children(run.pid)
        assert len(clients) == 2
        run.send_signal(signal.SIGINT)
        status = run.wait(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert status == 130
    assert "symprobe md: SIGINT: stopped at step" in run.stderr.read()
    assert (tmp_path / "run" / "checkpoint.npz").exists()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in clients) and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = [pid for pid in clients if not Path(f"/proc/{pid}").exists() or "serve" not in Path(
        f"/proc/{pid}/cmdline").read_text(errors="replace")]
    assert sorted(gone) == sorted(clients)
    assert leftovers() - before == set()  # socket file and client directory removed


@pytest.mark.parametrize("args, message", [
    (["builtin:qtip4pf", "--structure", "builtin:water-monomer", "--address", "127.0.0.1"], "--address needs --port"),
    (["builtin:qtip4pf", "--structure", "builtin:water-monomer", "--unix", "x", "--port", "5"], "--port goes with --address"),
    (["builtin:qtip4pf", "--structure", "builtin:water-monomer", "--address", "127.0.0.1", "--port", "0"],
     "--port must be between 1 and 65535"),
    (["builtin:nothing", "--structure", "builtin:water-monomer", "--unix", "x"], "unknown built-in model 'nothing'"),
    (["builtin:qtip4pf", "--structure", "builtin:ice", "--unix", "x"], "structure: unknown built-in 'builtin:ice'"),
    (["builtin:qtip4pf", "--structure", "builtin:water-monomer", "--unix", "/nonexistent/socket"],
     "no i-PI server listens at /nonexistent/socket"),
])
def test_serve_refuses_bad_input_on_one_line(capsys, args, message):
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symprobe serve: error: ") and message in err[0]


def test_serve_ends_when_ipi_goes_away_without_exit(tmp_path, capsys):
    """i-PI 3.3's driver loop would spin on a closed connection; the client ends with one line instead."""
    path = tmp_path / "ipi.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        closer = threading.Thread(target=lambda: server.accept()[0].close())
        closer.start()
        code = main(["serve", "builtin:qtip4pf", "--structure", "builtin:water-monomer", "--unix", str(path)])
        closer.join()
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "symprobe serve: error: i-PI closed the connection without sending EXIT (did the i-PI run die?)")


GOOD = {"structure": "builtin:water-monomer", "model": "builtin:qtip4pf", "timestep_fs": 0.5, "steps": 8, "engine": "ipi"}


@pytest.mark.parametrize("change, message", [
    ({"clients": -1}, "clients must be non-negative, got -1"),
    ({"clients": 1.5}, "clients must be a non-negative integer, got 1.5"),
    ({"clients": 2, "engine": "ase"}, "clients: 2 i-PI socket clients need engine ipi"),
    ({"transport": "inet"}, "transport: inet is the socket of the clients; set clients > 0"),
    ({"clients": 2, "transport": "tcp"}, "transport must be one of unix, inet, got 'tcp'"),
    ({"clients": 2, "symmetrizer": {"kind": "mts", "grid": "2i", "n_inner": 2}},
     "clients: symmetrizer mts is not available with socket clients"),
    ({"clients": 2, "symmetrizer": {"kind": "grid", "grid": "O"}},
     "i-PI's <ffrotations> averages over Legendre grids .*; O is not one of them"),
])
def test_bad_client_configs_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**GOOD, **change})


def test_clients_need_a_model_spec():
    from symprobe.models.qtip4pf import qtip4pf

    with pytest.raises(ConfigError, match="clients: each client loads the model from its spec"):
        validate_config({**GOOD, "model": qtip4pf(), "clients": 1})
    assert validate_config({**GOOD, "clients": 3, "transport": "inet"}).clients == 3


def test_the_example_config_runs_two_clients_on_a_unix_socket():
    example = load_config(Path(__file__).parents[1] / "configs" / "md_liquid_ipi_clients.yaml")
    assert (example.engine, example.clients, example.transport, example.symmetrizer.grid) == ("ipi", 2, "unix", "2i")


def test_the_socket_benchmark_runs_at_toy_size(tmp_path):
    """benchmarks/ipi_sockets.py --toy: in-process and batched-socket rows, each with its rate and load."""
    out = tmp_path / "toy.json"
    script = Path(__file__).parents[1] / "benchmarks" / "ipi_sockets.py"
    subprocess.run([sys.executable, str(script), "--toy", "--cores", "1", "--variants", "ffdirect,unix-batched", "--out", str(out)],
                   check=True, timeout=300, capture_output=True)
    result = json.loads(out.read_text())
    assert result["toy"] and [row["variant"] for row in result["rows"]] == ["ffdirect", "unix-batched"]
    assert all(row["steps_per_s"] > 0 and len(row["load_before"]) == 3 for row in result["rows"])
    assert result["rows"][1]["batch_size"] == 18 and "unix-batched/ffdirect" in result["speed_ratios"]
