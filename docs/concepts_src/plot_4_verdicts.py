"""
Calibrated verdicts and detectable effects
==========================================

A study compares observables of the raw model with those of its symmetrized variants. "No difference" means
nothing unless two things are known:

* **calibration**: would the test call two runs of the *same* model different? Every stage runs a second raw
  set (``raw-repeat``) with its own starts and seeds and puts it through the same test. Only when that null
  comparison passes does the stage issue verdicts; otherwise it says why it gives none.
* **the detectable effect**: the smallest true difference the run would call significant with 80 % power,
  (q(1 − α/2n) + q(0.8)) σ at α = 0.05 with n the Bonferroni count. A verdict of "no difference" always comes
  with it: short runs detect only large effects.

The detectable effect falls as 1/√(samples): this page computes it for a scalar with unit spread per sample
and reads the study's own numbers from ``results/study_60min/results.json``.
"""

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

samples = np.array([2, 5, 10, 27, 100, 512])
alpha, power = 0.05, 0.8
detectable = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * np.sqrt(
    2 / samples
)  # two sets, unit spread each
for n, d in zip(samples, detectable):
    print(f"{n:4d} samples per set: detects a difference ≥ {d:.2f} σ")

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(samples, detectable, "o-")
ax.set(xscale="log", yscale="log", title="80 % power at 95 % confidence")
ax.set(xlabel="independent samples per set", ylabel="detectable difference (σ)")
fig.tight_layout()

# %%
# In the 60-minute study, each finding states its null comparison and what it could detect:
ROOT = next(
    p for p in [Path.cwd(), *Path.cwd().parents] if (p / "results").is_dir()
)  # the repository
findings = json.loads(
    (ROOT / "results" / "study_60min" / "results.json").read_text()
)["findings"]
for finding in findings:
    if "detect" in finding["evidence"]:
        print(f"- {finding['claim']}:\n  {finding['evidence'][:300]}\n")
