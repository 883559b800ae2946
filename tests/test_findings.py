"""The paper's gas-phase findings, tested on the bundled PET-style model (not the known-answer one): short runs
through the study pipeline, judged by the study's own verdicts."""

from __future__ import annotations

import pytest
import torch

from symprobe import study
from symprobe.models.pet import pet_model

SHORT = study.Plan(quick=True, gas_nve_molecules=6, gas_nve_steps=200, gas_nvt_molecules=16, gas_nvt_steps=400,
                   gas_bandwidth=0.3, torque_samples=4, orientation_snapshots=2)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    torch.set_num_threads(1)
    try:
        model = pet_model("water-pet")
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    results = study.run_study(model, tmp_path_factory.mktemp("findings"), plan=SHORT, progress=False, stop_after="gas_nvt")
    found = study.findings({**results, "liquid": {"skipped": "not run in this test"}, "ice": {"skipped": "not run in this test"}})
    return {f["id"]: f for f in found}


@pytest.mark.parametrize("finding", [
    "gas_angular_momentum_drifts_raw",  # the raw model exerts a net torque on an isolated molecule
    "gas_angular_momentum_fixed_by_averaging",  # the 2i grid average conserves L
    "gas_mts_reproduces_averaged",  # and so does MTS (averaged correction every 10th step)
    "torque_falls_with_grid",
    "gas_orientation_energy_flat_averaged",  # and the 2i average removes that preference (static profile)
])
# not here: the NVT orientation maps. 0.2 ps of 16 molecules cannot resolve them: with 0.5 ps the raw map's
# Hotelling test gave p = 0.03 with one set of random streams and p = 0.32 with another (bias 1.15 ± 0.35 kT, the
# averaged map's noise 1.3 ± 0.27 kT); the demo and the 60-minute study resolve them.
def test_paper_finding_holds_for_bundled_model(verdicts, finding):
    assert verdicts[finding]["holds"] is True, verdicts[finding]["evidence"]


# nor the liquid, which is not run here: with the 2 replicas per variant a short run affords, the null comparison
# is always inconclusive, so the study could only issue no verdict (None), and a check of that could not fail;
# test_study checks that gate on the known-answer model, and the demo and the 60-minute study give the verdict.
@pytest.mark.parametrize("finding", ["gas_orientation_not_flat_raw", "gas_orientation_flat_averaged", "gas_orientation_flat_mts"])
def test_short_orientation_maps_do_not_contradict_the_paper(verdicts, finding):
    assert verdicts[finding]["holds"] is not False, verdicts[finding]["evidence"]
