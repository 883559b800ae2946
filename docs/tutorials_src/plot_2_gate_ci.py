"""
Gate your CI on symmetry breaking
=================================

A model that learns rotational symmetry from data can lose it when it is retrained. ``symprobe audit
--fail-above RATIO`` turns the audit into a check: on *labelled* structures (reference energies and forces,
e.g. your test set in extended XYZ), it exits with code 3 when the rotational force error exceeds ``RATIO``
times the model's own force error against the labels. One line in CI::

    symprobe audit mypackage.calc:make_calculator labelled.extxyz --fail-above 0.1

Here we build labelled water boxes with a known answer (q-TIP4P/F energies and forces) and gate two models:
q-TIP4P/F itself plus an orientation-dependent term of known size (breaking of the same order as its error),
and the exact q-TIP4P/F model (no breaking).
"""

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from symprobe.cli import main
from symprobe.testing import write_labelled_water

workdir = Path(tempfile.mkdtemp())
labelled = write_labelled_water(workdir / "labelled.extxyz", n_boxes=2)

# %%
# The known-answer model with a lab-frame term (``symprobe.testing``), given as a ``FILE.py:attribute`` spec:
(workdir / "broken.py").write_text(
    "from symprobe.testing import anisotropic_qtip4pf\n\n\ndef model():\n"
    "    return anisotropic_qtip4pf({1: 0.02, 2: 0.01})\n"
)

options = ["--grid", "T", "--convergence", "none", "--fail-above", "0.1"]
models = {"broken": f"{workdir / 'broken.py'}:model", "exact": "builtin:qtip4pf"}
codes = {}
for name, spec in models.items():
    out = str(workdir / name)
    codes[name] = main(["audit", spec, str(labelled), *options, "--out", out])
print(codes)

# %%
# The exit codes: 3 for the model whose breaking exceeds 10 % of its own error, 0 for the exact one. The
# numbers behind the verdict are in ``audit.json`` (``summary``, :doc:`/audit-schema`):
ratios = {}
for name in codes:
    summary = json.loads((workdir / name / "audit.json").read_text())["summary"]
    ratios[name] = (
        summary["rotational_force_mae_meV_per_A"]
        / summary["model_error"]["force_mae_meV_per_A"]
    )
    print(name, f"rotational / own force MAE = {ratios[name]:.3g}")

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(
    list(ratios),
    list(ratios.values()),
    color=["tab:red" if codes[n] == 3 else "tab:green" for n in ratios],
)
ax.axhline(0.1, color="k", ls="--", label="--fail-above 0.1")
ax.set(yscale="log", ylabel="rotational / own force error", title="the CI gate")
ax.legend()
fig.tight_layout()

# %%
# In a CI job, the exit code is the gate; ``SYMPROBE_DEBUG=1`` prints a traceback if the audit itself fails
# (exit 1), and bad input (a missing file, a structure without labels) exits 2 with one line
# (:doc:`/bad-input`).
