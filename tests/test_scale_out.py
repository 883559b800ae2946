"""benchmarks/scale_out.py end to end at toy size: every part runs, the fault part loses and doubles no task, and a rerun
of one part keeps the others."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]


def test_scale_out_at_toy_size(tmp_path):
    spec = importlib.util.spec_from_file_location("scale_out", ROOT / "benchmarks" / "scale_out.py")
    scale_out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale_out)
    assert scale_out.main(["--toy", "--kills", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scale_out.json").read_text())
    assert result["size"] == "toy" and result["overhead_audit"]["results_equal"]
    assert set(result["replicas_workers_vs_threads"]) >= {"workers_2x1_thread_s", "one_process_2_threads_tasks_in_turn_s",
                                                           "one_process_2_threads_batched_s"}
    kills = result["worker_kills"]
    assert kills["lost"] == 0 and kills["counted_twice"] == 0 and kills["results_equal_in_turn"]
    assert kills["attempts"] == kills["tasks"] + kills["kills_landed"]  # each kill that landed reran one task, once
    before = result["replicas_workers_vs_threads"], kills
    assert scale_out.main(["--toy", "--parts", "a", "--out", str(tmp_path)]) == 0
    rerun = json.loads((tmp_path / "scale_out.json").read_text())
    assert (rerun["replicas_workers_vs_threads"], rerun["worker_kills"]) == before
