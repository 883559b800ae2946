#!/usr/bin/env bash
# Fill .whl/ with the Python 3.12 wheels a lent GPU machine lacks (it has torch, numpy, scipy, matplotlib,
# but no network). Run here, once, from the repository root; then name ".whl" in the device call's carry:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
#   PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
for package in ase==3.29.0 vesin==0.6.2 metatensor-core==0.2.6 metatensor-torch==0.10.8 \
               metatensor-operations==0.5.0 metatomic-torch==0.1.19 metatomic-ase==0.1.4; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$package"
done
ls -la .whl
