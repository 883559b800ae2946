"""Long liquid runs (raw, random, MTS and raw again with another seed): the decay time's known answer, the run as cluster tasks that resume without
rerunning MD, a longer plan that continues the runs as if made at once, and the study report's section."""

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
    diffusion_bound,
    md_key,
    mobility,
    run_long_liquid,
    tail_decay_time,
    toy_long_liquid_plan,
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


def test_tail_decay_time_where_the_1_over_e_time_is_out_of_reach():
    """c_uu = exp(−t / 10 ps) over 16 ps: the halves' lags (4 ps) do not reach 1/e, the tail's τ is measured within
    15 %; with half the molecules frozen (c_uu = ½ + ½ exp(−t / 1.5 ps)) the tail is not exponential and is not fitted."""
    slow = rotational_diffusion(300, 801, 20.0, 10_000.0, seed=3)
    assert decay_time(slow, 20.0) is None
    tail = tail_decay_time(slow, 20.0)
    assert tail is not None and abs(tail["value"] - 10_000.0) < 0.15 * 10_000.0 and tail["window_fs"] == [1000.0, 4000.0]
    frozen = np.repeat(slow[:1], len(slow), axis=0)
    assert tail_decay_time(np.concatenate([rotational_diffusion(300, 801, 20.0, 1500.0, seed=4), frozen], axis=1), 20.0) is None


def test_diffusion_bound_holds_only_while_the_msd_is_sub_diffusive():
    """MSD = 6 D t + A (1 − exp(−t/τ)), a caged start: MSD/6t at the longest lag lies above D (1e-5 cm²/s), with the
    exponent below 1; a linear MSD (exponent 1) gives no bound."""
    lags = np.arange(0.0, 4001.0, 10.0)
    d_A2_per_fs = 0.05 / 1000.0  # 0.05 Å²/ps = 0.5e-5 cm²/s
    caged = 6 * d_A2_per_fs * lags + 1.0 * (1 - np.exp(-lags / 300.0))
    bound = diffusion_bound({"x": lags.tolist(), "y": caged.tolist(), "error": [0.01] * len(lags)})
    assert bound is not None and bound["local_exponent"] < 1.0
    assert bound["value"] == pytest.approx((6 * d_A2_per_fs * 4000.0 + 1.0 - np.exp(-4000.0 / 300.0)) / (6 * 4.0) * 10.0)
    assert bound["value"] > 0.5 and bound["error"] == pytest.approx(0.01 / 24.0 * 10.0)
    assert diffusion_bound({"x": lags.tolist(), "y": (6 * d_A2_per_fs * lags).tolist(), "error": None}) is None


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The long-liquid protocol at 0.05 ps on q-TIP4P/F, each variant a task run in turn here."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("liquid-long")
    plan = toy_long_liquid_plan()
    summary = run_long_liquid(load_model("builtin:qtip4pf"), out, plan, StudyFarm("builtin:qtip4pf"), progress=False)
    return out, plan, summary


def test_each_variant_runs_as_a_task_and_resumes_from_cache(toy_runs, monkeypatch):
    out, plan, summary = toy_runs
    tasks = out / "md" / md_key(plan) / "liquid_tasks"
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


def test_a_longer_plan_continues_the_runs_as_if_made_at_once(toy_runs, tmp_path):
    """0.03 ps (none of it discarded) → 0.05 ps: every task resumes from its old end (MTS rounds to whole outer steps of
    14), and its log and trajectory equal byte for byte those of the fixture's runs, made 0.05 ps long at once; a plan
    shorter than the runs is refused."""
    out, plan, _ = toy_runs
    shorter = dataclasses.replace(plan, liquid_steps=60, liquid_equilibration=0)
    assert md_key(shorter) == md_key(plan) and shorter.key() != plan.key()
    model, farm = load_model("builtin:qtip4pf"), StudyFarm("builtin:qtip4pf")
    for stage in (shorter, plan):
        run_long_liquid(model, tmp_path, stage, farm, progress=False)
    for variant in LONG_LIQUID_VARIANTS:
        task = Path("md") / md_key(plan) / "liquid_tasks" / f"liquid-{variant}-0"
        result = json.loads((tmp_path / task / "result.json").read_text())
        assert result["resumed_from_step"] == (70 if variant == "mts" else 60)
        for name in ("log.csv", "trajectory.extxyz"):
            lengthened, at_once = (root / task / result["run"] / name for root in (tmp_path, out))
            assert lengthened.read_bytes() == at_once.read_bytes(), (variant, name)
    with pytest.raises(ValueError, match=r"liquid-mts-0: the run already made 112 steps, more than the 70 asked for; ask for at least 112"):
        run_long_liquid(model, tmp_path, shorter, farm, progress=False)


def test_report_section_shows_the_runs_beside_the_paper(toy_runs):
    _, _, summary = toy_runs
    section = report.long_liquid_section(summary)
    assert "table-liquid_long" in section and "figure-liquid-long" in section
    assert f"{summary['paper']['diffusion_1e-5_cm2_s']:g} (paper)" in section
    assert "not reached" in section and section.count("<tr>") == 1 + len(LONG_LIQUID_VARIANTS)


def test_benchmark_toy_writes_json_figure_and_page(toy_runs, tmp_path):
    """The script's --toy plan is the fixture's: it finds the fixture's runs finished (no task attempted again) and
    writes their JSON, figure and page."""
    log = toy_runs[0] / "md" / md_key(toy_runs[1]) / "liquid_tasks" / "log.jsonl"
    attempts = log.read_text()
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "liquid_long.py"), "--toy", "--cluster", "none",
                          "--runs", str(toy_runs[0]), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600, check=False, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert log.read_text() == attempts
    document = json.loads((tmp_path / "out" / "liquid_long.json").read_text())
    assert document["benchmark"] == "liquid_long" and set(document["variants"]) == set(LONG_LIQUID_VARIANTS)
    assert (tmp_path / "out" / "liquid_long.png").stat().st_size > 10_000
    assert "Long liquid runs" in (tmp_path / "out" / "report.html").read_text()
    assert document["length_ps"] == toy_runs[2]["length_ps"] and document["variants"] == json.loads(json.dumps(toy_runs[2]["variants"]))


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


def test_a_long_run_checkpoints_every_few_minutes_not_every_tenth_of_it():
    """A killed 100-ps run (200,000 steps) loses at most 5,000 steps (about 6 min of a core for the 64-molecule box), not
    a tenth of the run; shorter runs checkpoint every tenth, and never more often than they write a frame."""
    from symprobe.study.variants import MAX_CHECKPOINT_STRIDE, checkpoint_stride

    assert checkpoint_stride(200_000, 20) == MAX_CHECKPOINT_STRIDE == 5000
    assert checkpoint_stride(40_000, 20) == 4000
    assert checkpoint_stride(100, 20) == 20
