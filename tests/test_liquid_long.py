"""Long liquid runs (raw, random, MTS and raw again with another seed): the decay time's known answer, the run as cluster tasks that resume without
rerunning MD, and the study report's section."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from symprobe.md import load_model
from symprobe.study import report
from symprobe.study.liquid_long import (
    LONG_LIQUID_VARIANTS,
    decay_time,
    long_liquid_plan,
    mobility,
    run_long_liquid,
)
from symprobe.study.tasks import StudyFarm
from symprobe.study.variants import REPEAT

REPO = Path(__file__).resolve().parents[1]


def rotational_diffusion(n_molecules: int, n_frames: int, frame_dt_fs: float, decay_fs: float, seed: int) -> np.ndarray:
    """Unit vectors in rotational Brownian motion whose c_uu(t) = exp(−t / decay_fs) (D_r = 1 / (2 decay))."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_molecules, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    steps = 20  # sub-steps per frame keep the small-step Brownian update accurate
    sigma = np.sqrt(2.0 * frame_dt_fs / steps / (2.0 * decay_fs))
    out = [u]
    for _ in range(n_frames - 1):
        for _ in range(steps):
            kick = rng.normal(scale=sigma, size=u.shape)
            kick -= np.sum(kick * u, axis=1, keepdims=True) * u
            u = u + kick
            u /= np.linalg.norm(u, axis=1, keepdims=True)
        out.append(u)
    return np.array(out)


def test_decay_time_of_rotational_diffusion():
    u = rotational_diffusion(400, 200, 20.0, 500.0, seed=1)
    result = decay_time(u, 20.0)
    assert result is not None and result["unit"] == "fs"
    assert abs(result["value"] - 500.0) < 0.1 * 500.0
    assert abs(result["halves_fs"][0] - result["halves_fs"][1]) < 4.0 * result["error"] * np.sqrt(2.0) + 1e-9
    assert decay_time(rotational_diffusion(50, 40, 20.0, 1e5, seed=2), 20.0) is None  # never reaches 1/e: not reported


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The long-liquid protocol at 0.05 ps on q-TIP4P/F, each variant a task run in turn here."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("liquid-long")
    plan = dataclasses.replace(long_liquid_plan(0.05, "T/14", equilibration_ps=0.01), liquid_pre_steps=20)
    summary = run_long_liquid(load_model("builtin:qtip4pf"), out, plan, StudyFarm("builtin:qtip4pf"), progress=False)
    return out, plan, summary


def test_each_variant_runs_as_a_task_and_resumes_from_cache(toy_runs, monkeypatch):
    out, plan, summary = toy_runs
    tasks = out / "md" / plan.key() / "liquid_tasks"
    assert sorted(p.name for p in tasks.iterdir() if p.is_dir()) == sorted(f"liquid-{v}-0" for v in LONG_LIQUID_VARIANTS)
    assert set(summary["variants"]) == set(LONG_LIQUID_VARIANTS) and set(summary["verdicts"]) == {"random", "mts", REPEAT}
    assert summary["length_ps"] == pytest.approx(0.05) and summary["mts"] == "T/14"
    # 0.05 ps reaches neither the diffusive regime nor the c_uu decay: both are withheld, not extrapolated
    assert all(v["diffusion"] is None and not v["diffusion_regime"]["reached"] and v["c_uu_decay"] is None
               for v in summary["variants"].values())
    assert summary["calibration"] is None  # no quantity reached: no null comparison of raw against raw

    def refuse(*args, **kwargs):
        raise AssertionError("MD was rerun although every run finished")

    monkeypatch.setattr("symprobe.md.run.run_batched", refuse)
    again = run_long_liquid(load_model("builtin:qtip4pf"), out, plan, StudyFarm("builtin:qtip4pf"), progress=False)
    assert json.dumps(again, sort_keys=True) == json.dumps(summary, sort_keys=True)


def test_report_section_shows_the_runs_beside_the_paper(toy_runs):
    _, _, summary = toy_runs
    section = report.long_liquid_section(summary)
    assert "table-liquid_long" in section and "figure-liquid-long" in section
    assert f"{summary['paper']['diffusion_1e-5_cm2_s']:g} (paper)" in section
    assert "not reached" in section and section.count("<tr>") == 1 + len(LONG_LIQUID_VARIANTS)


def test_benchmark_toy_writes_json_figure_and_page(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "liquid_long.py"), "--toy", "--cluster", "none",
                          "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600, check=False, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    document = json.loads((tmp_path / "out" / "liquid_long.json").read_text())
    assert document["benchmark"] == "liquid_long" and set(document["variants"]) == set(LONG_LIQUID_VARIANTS)
    assert (tmp_path / "out" / "liquid_long.png").stat().st_size > 10_000
    assert "Long liquid runs" in (tmp_path / "out" / "report.html").read_text()


def _random_walk_frames(steps_A: np.ndarray, frame_dt_fs: float, seed: int) -> list:
    """Frames of 32 oxygens in a 20 Å box doing a random walk whose step (Å per frame) is ``steps_A`` frame by frame."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    positions = np.cumsum(rng.normal(size=(len(steps_A), 32, 3)) * steps_A[:, None, None], axis=0)
    frames = []
    for k, x in enumerate(positions):
        atoms = Atoms("O32", positions=x % 20.0, cell=[20.0] * 3, pbc=True)
        atoms.info["time_fs"] = k * frame_dt_fs
        frames.append(atoms)
    return frames


def test_mobility_tells_a_settled_liquid_from_a_relaxing_one():
    """A random walk of constant step is stationary (its MSD over 1 ps is 3 σ² × 100 frames); one whose step falls by
    √2 over the kept part is not (the halves' ratio near 2 for the MSD)."""
    frames = 1200
    steady = mobility(_random_walk_frames(np.full(frames, 0.05), 10.0, seed=1), equilibration_fs=1000.0)
    assert steady["stationary"] and np.mean(steady["msd_A2"]) == pytest.approx(3 * 0.05**2 * 100, rel=0.1)
    slowing = np.where(np.arange(frames) < 650, 0.05, 0.05 / np.sqrt(2))
    relaxing = mobility(_random_walk_frames(slowing, 10.0, seed=2), equilibration_fs=1000.0)
    assert relaxing["stationary"] is False and relaxing["kept_halves_ratio"] > 1.5
