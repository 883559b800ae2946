"""symprobe: measure, judge and remove rotational symmetry breaking in ML interatomic potentials.

Conventions (see docs/conventions.md): energies in eV, lengths in Å, forces in eV/Å, stress in eV/Å³,
time in fs, masses in amu. A rotation R (3×3, possibly improper) acts on positions as x → R x; the
forces of a rotated structure are brought back to the original frame as Rᵀ F(R x).
"""

__version__ = "0.1.0"
