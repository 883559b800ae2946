"""Long liquid runs in the background: ``results/liquid_long/`` (JSON, figure and the study report's section).

    .venv/bin/python benchmarks/liquid_long.py                    # 20 ps each of raw, random, MTS T/14 on local:2
    .venv/bin/python benchmarks/liquid_long.py --cluster local:1   # one worker (leave a core free)
    .venv/bin/python benchmarks/liquid_long.py --toy --out /tmp/l  # toy size (q-TIP4P/F, 0.05 ps; what the test runs)

Each variant's run is a task (:mod:`symprobe.cluster`) whose MD checkpoints live under ``--runs`` (default
``runs/liquid_long``, not committed); the same command resumes them where they stopped, from run to run. A larger
``--ps`` continues finished runs from their last checkpoint (:func:`symprobe.study.liquid_long.lengthen`), and
``--equilibration-ps`` changes only the analysis. When all four have reached their length,
:func:`symprobe.study.liquid_long.summarise` writes ``liquid_long.json`` and its figure. Bad input (such as a
``--ps`` shorter than the runs already are): one line, exit code 2; interrupted: exit code 130, checkpoints kept.

    .venv/bin/python benchmarks/liquid_long.py --ps 50 --equilibration-ps 12   # the 20-ps runs continued to 50 ps
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:water-pet")
    parser.add_argument("--ps", type=float, default=20.0, help="length of each run in ps (default 20)")
    parser.add_argument("--equilibration-ps", type=float, default=1.0, help="discarded start of each run in ps (default 1)")
    parser.add_argument("--mts", default="T/14")
    parser.add_argument("--cluster", default="local:2", help="where the four runs go ('none': in turn here)")
    parser.add_argument("--runs", default=str(REPO / "runs" / "liquid_long"))
    parser.add_argument("--out", default=str(REPO / "results" / "liquid_long"))
    parser.add_argument("--toy", action="store_true", help="q-TIP4P/F for 0.05 ps, 20 steps of pre-equilibration (seconds)")
    args = parser.parse_args(argv)

    from symprobe.cluster.spec import parse_cluster
    from symprobe.files import atomic_write, write_json
    from symprobe.interrupt import Interrupted
    from symprobe.md import load_model
    from symprobe.pages import CSS
    from symprobe.study.liquid_long import (
        long_liquid_plan,
        run_long_liquid,
        toy_long_liquid_plan,
        write_figure,
    )
    from symprobe.study.report import long_liquid_section
    from symprobe.study.tasks import StudyFarm

    if args.toy:
        model_spec, plan = "builtin:qtip4pf", toy_long_liquid_plan(args.mts)
    else:
        model_spec, plan = args.model, long_liquid_plan(args.ps, args.mts, equilibration_ps=args.equilibration_ps)
    cluster = None if args.cluster == "none" else parse_cluster(args.cluster, threads_per_worker=1)
    load_before = os.getloadavg()
    begin = time.perf_counter()
    try:
        summary = run_long_liquid(load_model(model_spec), Path(args.runs), plan, StudyFarm(model_spec, "cpu", cluster))
    except ValueError as error:
        print(f"liquid_long.py: error: {error}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt):
        print(f"liquid_long.py: interrupted; the runs keep their last checkpoints in {args.runs}: the same command continues them",
              file=sys.stderr)
        return 130
    out = Path(args.out)
    document = {"benchmark": "liquid_long", "model": model_spec, "cluster": args.cluster, "runs": str(args.runs),
                "wall_s_this_invocation": time.perf_counter() - begin, "cpu_count": os.cpu_count(),
                "load_average_before": load_before, "load_average_after": os.getloadavg(), **summary}
    write_json(out / "liquid_long.json", document)
    write_figure(summary, out / "liquid_long.png")
    atomic_write(out / "report.html", f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>symprobe: long liquid runs</title>"
                 f"<style>{CSS}</style></head><body>{long_liquid_section(summary)}</body></html>")
    print(f"wrote {out / 'liquid_long.json'}, its figure and report.html")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
