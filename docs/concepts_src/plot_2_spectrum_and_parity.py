"""
The λ spectrum and parity
=========================

For a fixed structure x, the energy as a function of the rotation, f(R) = E(R x), expands in Wigner-D
functions. Its **λ spectrum** is the power (eV²) in each degree λ: λ = 0 (even) is the square of the mean,
the invariant part; everything at λ ≥ 1 is rotational breaking. With inversion in the grid each λ splits into
an even and an odd **parity** sector: an odd λ = 0 part is a pseudoscalar, invariant under rotations but not
under inversion (chirality the model should not have).

The audit reports the spectrum up to ``--lmax``. Its rule is exact to degree 2·lmax, so the power in each λ is
exact, not aliased. A known-answer model shows it: q-TIP4P/F plus orientation terms with ℓ = 1 and 2
(``symprobe.testing.anisotropic_qtip4pf``) has power at λ = 1 and 2 only.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from symprobe.audit import audit
from symprobe.structures import water_monomer
from symprobe.testing import anisotropic_qtip4pf

model = anisotropic_qtip4pf({1: 0.02, 2: 0.01})  # amplitudes in eV
report = audit(model, [water_monomer()], grid="O+i", lmax=3, convergence_grids=[])
spectrum = report.structures[0].spectrum
lam = np.arange(len(spectrum.power_eV2))
for l, even, odd in zip(lam, spectrum.power_even_eV2, spectrum.power_odd_eV2):
    print(f"λ = {l}: even {even:.3e} eV², odd {odd:.3e} eV²")

# %%
floor = 1e-14  # eV²: anything below is round-off of the float64 evaluation
even = np.maximum(spectrum.power_even_eV2, floor)
odd = np.maximum(spectrum.power_odd_eV2, floor)
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.bar(lam - 0.2, even, width=0.4, label="even")
ax.bar(lam + 0.2, odd, width=0.4, label="odd")
ax.set(yscale="log", ylim=(floor, 1e-3), xticks=lam, title="known terms at ℓ = 1, 2")
ax.set(xlabel="λ", ylabel="power (eV²)")
ax.legend()
fig.tight_layout()

# %%
# The ℓ = 1 term of a unit vector is odd under inversion and the ℓ = 2 term even, so the breaking shows
# at λ = 1 (odd) and λ = 2 (even), and the even λ = 0 holds the invariant energy. A grid of degree L removes
# the power up to λ = L (:doc:`plot_1_quadratures`).
