"""Known-answer models and test helpers, for this package's tests and for users' own test suites.

Models (all :class:`~symprobe.models.qtip4pf.WaterModel`: q-TIP4P/F, :mod:`symprobe.models.qtip4pf`,
plus a term of known angular content):

* :func:`anisotropic_qtip4pf` — q-TIP4P/F plus :class:`SphericalHarmonicTerm`, an orientation-dependent
  term of chosen angular degrees ℓ and amplitudes, whose power spectrum is known exactly
  (:func:`expected_power`).
* :func:`noo3_qtip4pf` — q-TIP4P/F plus :class:`NoO3Term`, the smooth, non-band-limited term of i-PI's
  ``noo3-h2o`` test driver (all ℓ present; its spectrum is known too).

Atoms must come as whole molecules ordered O, H, H. Energies in eV, lengths in Å.

For crystals: :class:`AnisotropicPairCalculator`, ASE's EMT plus a known lab-frame pair term (ℓ = 0, 2, 4).

For any elements: :class:`KnownAnswerCalculator` (:mod:`.pair`), a Morse pair potential plus a lab-frame term of
chosen angular degree and a rotation-invariant, inversion-odd pseudoscalar term c·T.

For users' test suites: :func:`assert_invariant` (:mod:`.assertions`), rotation and inversion checked apart, with
tolerances in meV/atom and meV/Å or relative to the round-off floor.

Helpers: :func:`finite_difference_forces`, :func:`random_rotations`, :func:`max_rotation_deviation`,
:func:`unit_bisectors`.

Modules: :mod:`.harmonics` (real spherical harmonics in torch), :mod:`.orientation` (the orientation terms and
the known-answer water models), :mod:`.spectrum` (:func:`expected_power`, :func:`unit_bisectors`),
:mod:`.checks` (finite differences, random rotations, rotation deviation), :mod:`.factories` (:func:`random_pet`,
:func:`write_labelled_water`), :mod:`.crystal` (:class:`AnisotropicPairCalculator`), :mod:`.pair`,
:mod:`.assertions` and :mod:`.delayed` (a model with a known wall-time cost per call).
"""

from symprobe.testing.assertions import assert_invariant
from symprobe.testing.checks import (
                                          finite_difference_forces,
                                          max_rotation_deviation,
                                          random_rotations,
)
from symprobe.testing.crystal import AnisotropicPairCalculator
from symprobe.testing.factories import random_pet, write_labelled_water
from symprobe.testing.harmonics import real_spherical_harmonics
from symprobe.testing.orientation import (
                                          NoO3Term,
                                          OrientationTerm,
                                          SphericalHarmonicTerm,
                                          anisotropic_qtip4pf,
                                          noo3_qtip4pf,
)
from symprobe.testing.pair import KnownAnswerCalculator
from symprobe.testing.spectrum import expected_power, unit_bisectors

__all__ = [
                                          "AnisotropicPairCalculator",
                                          "KnownAnswerCalculator",
                                          "NoO3Term",
                                          "OrientationTerm",
                                          "SphericalHarmonicTerm",
                                          "anisotropic_qtip4pf",
                                          "assert_invariant",
                                          "expected_power",
                                          "finite_difference_forces",
                                          "max_rotation_deviation",
                                          "noo3_qtip4pf",
                                          "random_pet",
                                          "random_rotations",
                                          "real_spherical_harmonics",
                                          "unit_bisectors",
                                          "write_labelled_water",
]
