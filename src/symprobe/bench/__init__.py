"""``symprobe bench MODEL [MODEL…]``: the same symmetry tests for several models on a built-in set of structures.

The set is built with ASE and GenIce2, nothing is downloaded: small molecules (H2O, CH4, NH3, benzene, SO2, ethanol, and the chiral CHFClBr), water
(a 27-molecule liquid-like cell and GenIce2's 64-molecule proton-disordered ice Ih cell), and crystals rattled by 0.05 Å so that their
forces do not vanish by symmetry (diamond Si, fcc Al, bcc Fe, rocksalt NaCl, wurtzite ZnO, graphene in a
20 Å vacuum, and the chiral alpha-quartz, whose mirror image is its enantiomorph). A structure with species outside a model's is skipped for that model and named.

Per model and structure:

* the audit on a grid (:func:`symprobe.audit.audit`): rotational errors of energy, forces and stress, the
  λ spectrum and, for molecules, the torque;
* the ml-peg rotational metric: a seeded walk of 114 orientations (14 steps about random axes by 1°–40°, then
  100 Haar-random steps; :func:`walk_rotations`), successive orientations compared: |ΔE| per atom (meV/atom) and
  the force MAE between them in a common frame (meV/Å), mean and max over pairs (ml-peg's
  ``physicality/rotational_symmetry`` benchmark, whose seeds this walk reuses);
* the numerical floor: the larger of two terms, recorded with the one that sets it (``set_by``): the largest of the
  same differences between the structure and a translated and a permuted copy, which every model must give
  identically in exact arithmetic, and a round-off term, 10 ε × the larger of the RMS force and |E|/N per Å at the
  model's precision ε (rotated inputs round differently; :func:`~symprobe.bench.metrics.numerical_floor`); a model breaks
  rotational symmetry above its floor when the walk's mean force difference exceeds ``FLOOR_FACTOR`` × that floor.

With ``--cluster`` each model on each structure is one task on the cluster (:mod:`.run`, :mod:`symprobe.cluster`).
"""

from symprobe.bench.metrics import (DEFAULT_GRID, FLOOR_FACTOR, bench, bench_header, bench_model, bench_structure, merged_model,
                                    numerical_floor, resumable, walk_metric, walk_rotations)
from symprobe.bench.report import render_bench, write_bench
from symprobe.bench.run import farmed_bench
from symprobe.bench.structures import BUILDERS, builtin_set

__all__ = ["BUILDERS", "DEFAULT_GRID", "FLOOR_FACTOR", "bench", "bench_header", "bench_model", "bench_structure", "builtin_set",
           "farmed_bench", "merged_model", "numerical_floor", "render_bench", "resumable", "walk_metric", "walk_rotations",
           "write_bench"]
