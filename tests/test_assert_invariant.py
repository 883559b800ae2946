"""``symprobe.testing.assert_invariant`` (issue 28, item 3): passes on the invariant twin, fails naming the structure,
channel, size and tolerance on each known-answer model."""

from __future__ import annotations

import re

import pytest
import torch
from ase.build import molecule

from symprobe.bench import builtin_set
from symprobe.models.external import load_model
from symprobe.structures import water_box, water_monomer
from symprobe.testing import (
    KnownAnswerCalculator,
    anisotropic_qtip4pf,
    assert_invariant,
)


def test_passes_on_the_invariant_twin():
    twin = load_model("builtin:water-pet-twin", dtype=torch.float64)
    assert_invariant(twin, [water_monomer(), water_box(2, seed=0)], rotations="O")  # the random box is chiral
    assert_invariant(twin, water_monomer(), rotations=5, inversion=False, energy_meV_per_atom=1e-6, force_meV_per_A=1e-6)


def test_refuses_to_check_inversion_on_achiral_structures_only():
    with pytest.raises(ValueError, match=r"no structure can show inversion breaking \(water monomer: planar"):
        assert_invariant(KnownAnswerCalculator(pseudoscalar=0.01), [water_monomer(), molecule("CH4")])


def test_fails_on_the_lab_frame_model_in_the_rotation_channel():
    chiral = builtin_set(["CHFClBr"])["CHFClBr"]
    with pytest.raises(AssertionError) as failure:
        assert_invariant(KnownAnswerCalculator(degree=2, amplitude=0.05), chiral, rotations="O")
    message = str(failure.value)
    assert re.search(r"CHFClBr: rotation breaking of the energy [\d.e+-]+ meV/atom > tolerance [\d.e+-]+ meV/atom", message)
    assert "inversion" not in message  # an even-λ term: the mirror image averages the same
    with pytest.raises(AssertionError, match=r"water monomer: rotation breaking of the forces [\d.]+ meV/Å > tolerance 1 meV/Å"):
        assert_invariant(anisotropic_qtip4pf({1: 0.05}, cutoff=4.0), [water_monomer()], rotations=3, inversion=False,
                         energy_meV_per_atom=1.0, force_meV_per_A=1.0)


def test_fails_on_the_pseudoscalar_model_in_the_inversion_channel_only():
    chiral = builtin_set(["CHFClBr"])["CHFClBr"]
    model = KnownAnswerCalculator(pseudoscalar=0.01)
    with pytest.raises(AssertionError) as failure:
        assert_invariant(model, [molecule("CH4"), chiral], rotations="T", energy_meV_per_atom=0.1, force_meV_per_A=1.0)
    lines = str(failure.value).splitlines()[1:]
    assert lines and all(line.startswith("CHFClBr: inversion breaking of the") for line in lines)
    assert_invariant(model, chiral, rotations="T", inversion=False)  # rotation-invariant: at the floor

