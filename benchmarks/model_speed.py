"""Speed of the model kernels: the landed implementation at a baseline commit against this tree, alternating.

Each case is timed in a fresh worker process (``model_speed.py worker CASE``) whose ``symprobe`` is either
this tree's or a ``git worktree`` of ``--baseline`` (the code at the start of the kernels work; the worktree
is removed at the end, so no old code stays in the tree). Rounds alternate which one goes first; each
number is the median over rounds. Cases, all on the CPU with ``--threads`` torch threads:

- ``ef:MODEL:N`` — energy, forces and stress of a liquid water cell of N atoms (``Model.predict``, as a user
  calls it; float32 for the PET-style models, float64 for q-TIP4P/F), in atom-steps per second;
- ``md:MODEL`` — one step of the batched engine (NVE, 0.5 fs) on the 64-molecule liquid, steps per second;
- ``average:O+i`` — the bundled PET-style model averaged over O+i (48 rotations) on the 192-atom liquid
  (``GridAverage.predict``), calls per second;
- ``train:MODEL`` — one training step (float32, two 192-atom labelled cells: energies and forces with the
  graph kept, an MSE loss, backward, Adam), steps per second;
- ``profile:MODEL`` — where the time of one 192-atom energy + forces call goes (torch profiler, by operator).

MACE and metatrain PET (the peers of ``benchmarks/train_water.py``) are timed in the same run, once per
round, by their own scripts' ``evaluate`` in ``.venv-mace`` / ``.venv-metatrain`` (left out, with a line on
stderr, when that environment or its model is missing). A worker reports its peak resident memory. The
``compile`` case measures ``torch.compile`` on the transformer's row-wise block against eager (the only
candidate that needs a cold start), with its compile time. The ``roofline`` case says where the floor of a 192-atom
call lies (matmul FLOPs at this machine's rate for the model's shapes, operators at their dispatch cost) and records
the candidates tried against it (attention through ``scaled_dot_product_attention``, the whole model compiled). The
machine's load average is recorded before and after.

    python benchmarks/model_speed.py --output results/model_speed.json [--rounds 3] [--threads 2]
    python benchmarks/model_speed.py --roofline-only      # only the roofline, into the existing JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = "d04df21"  # main when the kernels issue (#26) started
PEERS = ROOT / "results" / "peer_models"
GOALS = {"ef:water-pet": 2.0, "ef:water-pet-twin": 2.0, "ef:qtip4pf": 2.0, "md": 1.8, "average": 1.8, "train": 1.5}


# ---------------------------------------------------------------------------------------------------
# The worker: one case, timed in this process with whichever symprobe is importable


def _liquid(n_atoms: int):
    """The first revPBE0-D3 test cell (192 atoms) or its 2×2×2 supercell, from the shared data or built."""
    import numpy as np
    from ase.build import make_supercell

    from symprobe.structures import read_structures, shared_data_dir, water_box

    data = shared_data_dir()
    path = None if data is None else data / "liquid" / "cheng2019_revPBE0-D3_liquid_test190.extxyz"
    cell = read_structures(path, "0")[0] if path is not None and path.exists() else water_box(4, seed=1)
    cell.calc = None
    return cell if n_atoms == len(cell) else make_supercell(cell, round((n_atoms / len(cell)) ** (1 / 3)) * np.eye(3))


def _rate(call: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``call`` over at least ``seconds`` of wall time (after one warm-up call). Not
    ``symprobe.models.speed.throughput``: the workers also run the baseline commit's symprobe, which lacks it."""
    call()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        call()
        calls += 1
    return calls / (time.perf_counter() - start)


def _model(name: str):
    from symprobe.models.external import load_model

    return load_model("builtin:qtip4pf" if name == "qtip4pf" else f"builtin:{name}")


def _training_step(name: str):
    """One optimiser step on two labelled 192-atom cells (energies and forces of the model itself, jittered)."""
    import torch

    from symprobe.models.pet import builtin_path, load_module
    from symprobe.models.torch_model import batch_graph, energy_forces_stress

    module = load_module(builtin_path(name)).float().train()
    cells = [_liquid(192), _liquid(192)]
    cells[1].rattle(0.05, seed=1)
    graph = batch_graph(cells, module.cutoff, torch.float32)
    energies, forces, _ = energy_forces_stress(module, graph)
    target_e, target_f = energies.detach() + 0.1, forces.detach() * 1.1
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-6)

    def step() -> None:
        optimizer.zero_grad()
        e, f, _ = energy_forces_stress(module, graph, create_graph=True)
        loss = ((e - target_e) ** 2).mean() + ((f - target_f) ** 2).mean()
        loss.backward()
        optimizer.step()

    return step


def _profile(name: str) -> dict[str, Any]:
    """Self CPU time per operator (ms per call) of one 192-atom energy + forces call, largest first."""
    from torch.profiler import ProfilerActivity, profile

    model, atoms = _model(name), _liquid(192)
    for _ in range(2):
        model.predict(atoms)
    calls = 5
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            model.predict(atoms)
    rows = sorted(prof.key_averages(), key=lambda row: -row.self_cpu_time_total)
    total = sum(row.self_cpu_time_total for row in rows) / calls / 1e3
    matmul = sum(row.self_cpu_time_total for row in rows if row.key in ("aten::mm", "aten::addmm", "aten::bmm")) / calls / 1e3
    return {"ms_per_call_in_operators": total, "matmul_ms_per_call": matmul,
            "top_operators_ms_per_call": {row.key: row.self_cpu_time_total / calls / 1e3 for row in rows[:15]}}


def _compile_probe(seconds: float) -> dict[str, Any]:
    """torch.compile against eager on the transformer's row-wise block x + MLP(LayerNorm(x)), forward and
    backward to x, on the rows of a 192-atom cell (64 wide)."""
    import torch

    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(64)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.SiLU(), torch.nn.Linear(128, 64))
    x = torch.randn(5000, 64, requires_grad=True)

    def block(rows: torch.Tensor) -> torch.Tensor:
        return rows + mlp(norm(rows))

    compiled = torch.compile(block, dynamic=True)
    start = time.perf_counter()
    torch.autograd.grad(compiled(x).sum(), [x])
    compile_s = time.perf_counter() - start
    eager = _rate(lambda: torch.autograd.grad(block(x).sum(), [x]), seconds)
    fast = _rate(lambda: torch.autograd.grad(compiled(x).sum(), [x]), seconds)
    return {"compile_s": compile_s, "eager_calls_per_s": eager, "compiled_calls_per_s": fast, "compiled_over_eager": fast / eager}


def _ops_per_call(call: Callable[[], Any]) -> int:
    """Operators dispatched by one ``call`` from Python or autograd (aten operators not inside another one)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return sum(1 for event in prof.events()
               if event.name.startswith("aten::") and (event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::")))


def _gemm_rate(rows: int, width: int, seconds: float) -> float:
    """FLOP/s of the token matrix's products (rows × width) @ (width × k) for k = width, 2 width, 3 width, float32."""
    import torch

    flops, wall = 0.0, 0.0
    for k in (width, 2 * width, 3 * width):
        a, b = torch.randn(rows, width), torch.randn(width, k)
        rate = _rate(lambda a=a, b=b: a @ b, seconds / 3)
        flops, wall = flops + 2 * rows * width * k, wall + 1 / rate
    return flops / wall


def _token_groups(model, atoms) -> list[tuple[int, int]]:
    """The PET model's token groups (atoms, tokens per atom) on ``atoms`` (:func:`symprobe.models.pet.token_layout`)."""
    import torch

    from symprobe.models.pet import token_layout
    from symprobe.models.torch_model import batch_graph

    graph = batch_graph([atoms], model.cutoff, torch.float32)
    return token_layout(torch.sort(graph.edge_i, stable=True).values, len(atoms))[3]


def _attention_candidates(model, atoms, seconds: float) -> dict[str, float]:
    """Forward and backward of one layer's attention of the PET ``model`` on the token groups of ``atoms``, per group
    as the model does it (``baddbmm``, softmax, ``bmm``) and through ``scaled_dot_product_attention``: calls per
    second of each."""
    import math

    import torch
    import torch.nn.functional as F

    groups = _token_groups(model, atoms)
    heads = int(model.module.hypers["heads"])
    head_width = int(model.module.hypers["width"]) // heads
    qkv = torch.randn(sum(n * t for n, t in groups), 3 * heads * head_width, requires_grad=True)
    bias = [torch.randn(n, t) for n, t in groups]
    probe = torch.randn(qkv.shape[0], heads * head_width)

    def attention(fused: bool) -> torch.Tensor:
        mixed = []
        for g, rows in enumerate(qkv.split([n * t for n, t in groups])):
            n, t = groups[g]
            q, k, v = rows.view(n, t, 3, heads, head_width).permute(2, 0, 3, 1, 4).unbind(0)
            if fused:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[g][:, None, None, :])
            else:
                q, k, v = (x.reshape(n * heads, t, head_width) for x in (q, k, v))
                logits = torch.baddbmm(bias[g][:, None, None, :].expand(n, heads, 1, t).reshape(n * heads, 1, t), q,
                                       k.transpose(1, 2), alpha=1.0 / math.sqrt(head_width))
                out = torch.bmm(torch.softmax(logits, dim=-1), v).view(n, heads, t, head_width)
            mixed.append(out.transpose(1, 2).reshape(n * t, heads * head_width))
        return torch.cat(mixed)

    def forward_backward(fused: bool) -> None:
        torch.autograd.grad((attention(fused) * probe).sum(), [qkv])

    return {"per_group_bmm_calls_per_s": _rate(lambda: forward_backward(False), seconds),
            "sdpa_calls_per_s": _rate(lambda: forward_backward(True), seconds), "groups": len(groups)}


def _whole_model_compile(name: str, seconds: float) -> dict[str, Any]:
    """``torch.compile`` (inductor) of the whole PET core with frozen weights, energy and forces of the 192-atom cell
    against eager: the ratio of calls per second, or the error the compiler raised."""
    import torch

    from symprobe.models.pet import builtin_path, load_module
    from symprobe.models.torch_model import batch_graph

    core = load_module(builtin_path(name)).float().core
    for parameter in core.parameters():
        parameter.requires_grad_(False)
    graph = batch_graph([_liquid(192)], core.cutoff, torch.float32)

    def energy_forces(network) -> None:
        moving = dataclasses.replace(graph, positions=graph.positions.detach().requires_grad_(True))
        energy = network(moving.edge_vectors(), graph.edge_i, graph.edge_j, graph.numbers, graph.structure, graph.n_structures)
        torch.autograd.grad(energy.sum(), [moving.positions])

    compiled = torch.compile(core, dynamic=False)
    start = time.perf_counter()
    try:
        energy_forces(compiled)
    except Exception as error:  # noqa: BLE001 (the finding is the compiler's failure itself, whatever it raises)
        return {"compiled": False, "error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}",
                "seconds_until_error": time.perf_counter() - start}
    compile_s = time.perf_counter() - start
    eager, fast = _rate(lambda: energy_forces(core), seconds), _rate(lambda: energy_forces(compiled), seconds)
    return {"compiled": True, "compile_s": compile_s, "compiled_over_eager": fast / eager}


def _roofline(name: str, threads: int, seconds: float, whole_model_compile: bool = True) -> dict[str, Any]:
    """Where the floor of one 192-atom energy + forces call lies: its matmul FLOPs at this machine's rate for the
    model's own matrix shapes, plus its operator count at the cost of dispatching an empty-sized operator; the rest
    of the call is memory traffic of element-wise and layout operators. With the candidates that were tried."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, atoms = _model(name), _liquid(192)
    call_s = 1 / _rate(lambda: model.predict(atoms), seconds)
    with FlopCounterMode(display=False) as counter:
        model.predict(atoms)
    flops = counter.get_total_flops()
    rows = sum(n * t for n, t in _token_groups(model, atoms))
    width = int(model.module.hypers["width"])
    gemm = _gemm_rate(rows, width, seconds)
    ops = _ops_per_call(lambda: model.predict(atoms))
    tiny = torch.zeros(8, requires_grad=True)
    dispatch_s = 1 / _rate(lambda: tiny * 2.0, seconds / 3)  # one operator recorded for autograd, 8 elements
    matmul_floor, dispatch_floor = flops / gemm, ops * dispatch_s
    return {"case": f"roofline:{name}", "threads": threads, "call_ms": 1e3 * call_s, "gflop_per_call": flops / 1e9,
            "flops_by_operator": {str(op): n / 1e9 for op, n in counter.get_flop_counts()["Global"].items()},
            "token_rows": rows, "gemm_gflop_per_s_at_model_shapes": gemm / 1e9, "matmul_floor_ms": 1e3 * matmul_floor,
            "operators_per_call": ops, "dispatch_us_per_operator": 1e6 * dispatch_s, "dispatch_floor_ms": 1e3 * dispatch_floor,
            "rest_ms": 1e3 * (call_s - matmul_floor - dispatch_floor),
            "candidates": {"attention_one_layer": _attention_candidates(model, atoms, seconds),
                           **({"whole_model_compile": _whole_model_compile(name, seconds)} if whole_model_compile else {})}}


def worker(case: str, threads: int, seconds: float) -> dict[str, Any]:
    """Time one case with this process's symprobe."""
    import torch

    torch.set_num_threads(threads)
    kind, _, rest = case.partition(":")
    row: dict[str, Any] = {"case": case}
    if kind == "ef":
        name, size = rest.rsplit(":", 1)
        model, atoms = _model(name), _liquid(int(size))
        row["atom_steps_per_s"] = len(atoms) * _rate(lambda: model.predict(atoms), seconds)
    elif kind == "md":
        from symprobe.md.batched import BatchedDynamics, Replica
        from symprobe.md.run import thermalized
        from symprobe.structures import water_box

        dynamics = BatchedDynamics([Replica(thermalized(water_box(4, seed=1), 300.0, 1), _model(rest))], 0.5)
        row["steps_per_s"] = _rate(dynamics.step, seconds)
    elif kind == "average":
        from symprobe import so3
        from symprobe.symmetrize import GridAverage

        averaged, atoms = GridAverage(_model("water-pet"), so3.with_inversion(so3.group("O"))), _liquid(192)
        row["calls_per_s"] = _rate(lambda: averaged.predict(atoms), seconds)
    elif kind == "train":
        row["steps_per_s"] = _rate(_training_step(rest), seconds)
    elif kind == "profile":
        row.update(_profile(rest))
    elif kind == "compile":
        row.update(_compile_probe(seconds))
    elif kind == "roofline":
        row.update(_roofline(rest, threads, seconds))
    else:
        raise SystemExit(f"unknown case {case!r}")
    row["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


# ---------------------------------------------------------------------------------------------------
# The driver


def run_worker(case: str, source: Path, threads: int, seconds: float, timeout_s: float = 900) -> dict[str, Any]:
    """Run ``case`` in a fresh process whose ``symprobe`` comes from ``source`` (a src/ folder)."""
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "worker", case, "--threads", str(threads), "--seconds", str(seconds)],
                          env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode:
        raise SystemExit(f"worker {case} ({source}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_rates(threads: int, seconds: float) -> dict[str, dict[str, float]]:
    """Atom-steps per second of MACE and metatrain PET at 192 and 1536 atoms, from their evaluate steps."""
    peers = {  # python, script and its arguments; metatrain's evaluate takes its threads from OMP_NUM_THREADS
        "MACE": (ROOT / ".venv-mace" / "bin" / "python", HERE / "mace_water.py", PEERS / "mace-water" / "best.model",
                 ["--threads", str(threads)]),
        "metatrain PET": (ROOT / ".venv-metatrain" / "bin" / "python", HERE / "metatrain_pet.py", PEERS / "metatrain-pet" / "model.pt", []),
    }
    rates = {}
    for name, (python, script, model, extra) in peers.items():
        if not python.exists() or not model.exists():
            print(f"{name}: left out ({python if not python.exists() else model} missing)", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "peer.json"
            subprocess.run([str(python), str(script), "evaluate", "--model", str(model), "--out", str(out),
                            "--timing-seconds", str(seconds), *extra],
                           check=True, capture_output=True, timeout=1800, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            rates[name] = json.loads(out.read_text())["throughput_atom_steps_per_s"]
    return rates


def cases(toy: bool, only: str | None = None) -> list[str]:
    if only:
        return only.split(",")
    if toy:
        return ["ef:water-pet:192", "ef:qtip4pf:192"]
    return ["ef:water-pet:192", "ef:water-pet:1536", "ef:water-pet-twin:192", "ef:water-pet-twin:1536",
            "ef:qtip4pf:192", "ef:qtip4pf:1536", "md:water-pet", "md:water-pet-twin", "average:O+i",
            "train:water-pet", "train:water-pet-twin"]


def rate_of(row: dict[str, Any]) -> float:
    return next(row[k] for k in ("atom_steps_per_s", "steps_per_s", "calls_per_s") if k in row)


def goal_of(case: str) -> float:
    kind, _, rest = case.partition(":")
    return GOALS.get(f"{kind}:{rest.rsplit(':', 1)[0]}", GOALS.get(kind, float("nan")))


def measure(args: argparse.Namespace, old_src: Path, new_src: Path) -> dict[str, Any]:
    """Alternating rounds of every case, old and new, then the profiles, the compile probe and the peers."""
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {case: {"old": [], "new": []} for case in cases(args.toy, args.cases)}
    peers: list[dict[str, dict[str, float]]] = []
    for round_ in range(args.rounds):
        for case in samples:
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for which in order:
                samples[case][which].append(run_worker(case, old_src if which == "old" else new_src, args.threads, args.seconds))
            old, new = (statistics.median(rate_of(r) for r in samples[case][w]) for w in ("old", "new"))
            print(f"round {round_ + 1}/{args.rounds} {case}: new/old {new / old:.2f}", file=sys.stderr, flush=True)
        if not (args.toy or args.no_peers):
            peers.append(peer_rates(args.threads, args.seconds))
    rows = []
    for case, by in samples.items():
        old, new = (statistics.median(rate_of(r) for r in by[w]) for w in ("old", "new"))
        rows.append({"case": case, "old": old, "new": new, "ratio": new / old, "goal": goal_of(case),
                     "old_rounds": [rate_of(r) for r in by["old"]], "new_rounds": [rate_of(r) for r in by["new"]],
                     "peak_rss_MiB": {w: max(r["peak_rss_MiB"] for r in by[w]) for w in ("old", "new")}})
    result: dict[str, Any] = {"cases": rows}
    if peers and peers[0]:
        result["peers_atom_steps_per_s"] = {name: {size: statistics.median(p[name][size] for p in peers if name in p)
                                                   for size in peers[0][name]} for name in peers[0]}
    result["profile_192_atoms"] = {f"{name} {which}": run_worker(f"profile:{name}", src, args.threads, args.seconds)
                                   for name in (["water-pet"] if args.toy else ["water-pet", "water-pet-twin", "qtip4pf"])
                                   for which, src in (("old", old_src), ("new", new_src))}
    result["compile_candidate"] = run_worker("compile", new_src, args.threads, args.seconds)
    result["roofline"] = rooflines(new_src, args.threads, args.seconds)
    return result


def rooflines(source: Path, threads: int, seconds: float) -> list[dict[str, Any]]:
    """The roofline case of the PET-style model and its twin with ``source``'s symprobe, with the load around them."""
    rows = []
    for name in ("water-pet", "water-pet-twin"):
        load_before = os.getloadavg()
        rows.append({**run_worker(f"roofline:{name}", source, threads, seconds), "load_before": load_before, "load_after": os.getloadavg()})
    return rows


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["cases"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    y = range(len(rows))
    ax.barh(list(y), [r["ratio"] for r in rows], color=["tab:green" if r["ratio"] >= r["goal"] else "tab:orange" for r in rows])
    ax.scatter([r["goal"] for r in rows], list(y), marker="|", s=300, color="k", label="goal")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_yticks(list(y), [r["case"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"speed-up, new / baseline {result['baseline']} (median of {result['rounds']} alternating rounds)")
    ax.set_title(f"model kernels on {result['threads']} CPU thread(s)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        parser = argparse.ArgumentParser()
        parser.add_argument("worker")
        parser.add_argument("case")
        parser.add_argument("--threads", type=int, default=2)
        parser.add_argument("--seconds", type=float, default=3.0)
        args = parser.parse_args()
        print(json.dumps(worker(args.case, args.threads, args.seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "model_speed.json")
    parser.add_argument("--baseline", default=BASELINE, help="commit of today's implementation (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per worker (default: %(default)s)")
    parser.add_argument("--toy", action="store_true", help="two cases, for a quick check of the script")
    parser.add_argument("--cases", default=None, help="comma-separated cases instead of all (e.g. ef:water-pet:192)")
    parser.add_argument("--no-peers", action="store_true", help="leave out MACE and metatrain PET")
    parser.add_argument("--roofline-only", action="store_true",
                        help="only (re)measure the roofline of this tree and put it into the existing --output")
    args = parser.parse_args()
    from symprobe.files import atomic_write

    if args.roofline_only:
        if not args.output.exists():
            raise SystemExit(f"--roofline-only: {args.output} does not exist (run the whole measurement first)")
        result = {**json.loads(args.output.read_text()), "roofline": rooflines(ROOT / "src", args.threads, args.seconds)}
        atomic_write(args.output, json.dumps(result, indent=1))
        print(f"{args.output}: roofline written")
        return

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline], check=True, capture_output=True)
        try:
            result = measure(args, tree / "src", ROOT / "src")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True, check=False)
    result.update(baseline=args.baseline, rounds=args.rounds, threads=args.threads, seconds_per_worker=args.seconds,
                  load_before=load_before, load_after=os.getloadavg(), units={
                      "atom_steps_per_s": "atoms × energy+forces(+stress) calls per second",
                      "steps_per_s": "MD or training steps per second", "calls_per_s": "averaged calls per second"})
    atomic_write(args.output, json.dumps(result, indent=1))
    plot(result, args.output.with_suffix(".png"))
    print(f"{args.output} written")


if __name__ == "__main__":
    main()
