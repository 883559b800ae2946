#!/usr/bin/env bash
# One call of the full study on a lent GPU, resumable: the paper's protocols (`symprobe study` without
# --quick) for at most MINUTES of wall time, continuing whatever an earlier call on the same (warm) machine
# left in WORK (stage cache and MD checkpoints); it exits 75 when time ran out (call it again) and 0 when the
# study is done. Each call copies the finished stages, plan and results into $OUT/study_full_<device>/.
# On the device machine, with ".whl" carried (benchmarks/gpu_wheels.sh):
#   bash benchmarks/gpu_study.sh
# At toy size on CPU (the same mechanics): DEVICE=cpu MINUTES=0.3 STUDY_ARGS="--budget-min 1" bash benchmarks/gpu_study.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-8.5}
WORK=${WORK:-runs/study_full_${DEVICE}}
OUT=${OUT:-results}
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import ase, vesin" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}
PYTHON=${PYTHON:-python3}
$PYTHON -m symprobe.cli study --device "$DEVICE" --max-minutes "$MINUTES" --out "$WORK" ${STUDY_ARGS:-}
code=$?
kept="$OUT/study_full_${DEVICE}"
mkdir -p "$kept"
cp -r "$WORK/stages" "$kept/" 2>/dev/null
cp "$WORK"/*.json "$WORK"/*.html "$kept/" 2>/dev/null
echo "gpu_study: exit $code (75: time limit reached, call again to continue); kept $(ls "$kept/stages" 2>/dev/null | wc -l) stage(s) in $kept"
exit $code
