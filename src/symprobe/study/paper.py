"""The paper's numbers, cited (never computed here): Langer, Pozdnyakov & Ceriotti, Mach. Learn.: Sci. Technol. 5,
04LT01 (2024), arXiv 2406.17747. Values marked ≈ in the report were read off its figures."""

from __future__ import annotations

from typing import Any

CITATION = ("Langer, Pozdnyakov & Ceriotti, Probing the effects of broken symmetries in machine learning, "
            "Mach. Learn.: Sci. Technol. 5, 04LT01 (2024), arXiv 2406.17747")
PAPER: dict[str, Any] = {
    "citation": CITATION,
    "note": "cited from the paper (values marked ≈ were read off its figures); not computed by symprobe",
    "model": "PET, revPBE0-D3 liquid water, float32",
    "rotational_energy_error_meV": {  # grid: [test cells meV/cell, bulk MD meV/cell, isolated molecule meV]
        "0": [5.09, 7.94, 2.82], "i": [2.57, 4.88, 1.06], "2": [0.56, 1.09, 0.084], "2i": [0.28, 0.68, 0.045],
        "3": [0.157, 0.41, 0.015]},
    "rotational_force_error_meV_per_A": {"0": [2.04, 1.21, 11.8], "i": [1.0, None, None], "2": [0.19, None, None],
                                         "2i": [0.10, None, None], "3": [0.05, None, None]},
    "rms_torque_eV": {"0": 5e-3, "i": 2.5e-3, "2": 4e-4, "2i": 2.5e-4, "3": 1e-4, "3i": 2.5e-5},
    "gas_L_swing_eV_fs": 3.0, "gas_L_magnitude_eV_fs": 3.2, "gas_L_duration_ps": 25.0,
    "gas_orientation_bias_kT": {"raw": 0.3, "averaged": 0.0},
    "dV_orders_below_V": [2, 4],
    "liquid_dipole_bias_kT": "≪ 0.1 for both",
    "liquid_msd_10ps_A2": 16.0, "liquid_diffusion_1e-5_cm2_s": 2.7, "liquid_c_uu_2ps": 0.5,
    "drift_meV_per_H2O_per_500ps": {"raw": 1.0, "mts": 6.0, "random": 10.0},
    "mts_cost_x_raw": 4.6,
    "ice_energy_difference_eV_per_atom": 1.4e-5, "ice_relaxation_difference_eV_per_atom": 2e-6,
    "ice_relative_change_meV_per_H2O": 0.007, "ice_relative_spread_meV_per_H2O": 0.32,
}
