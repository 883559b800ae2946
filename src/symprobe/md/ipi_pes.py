"""The i-PI PES driver that hands force evaluations to in-memory symprobe models.

i-PI loads this file by path (``<ffdirect><pes>custom</pes><pes_path>``…), as a top-level module of its
own; the models live in :mod:`symprobe.md.ipi`'s registry and are found by the ``model`` key given in
``<parameters>{model: KEY}</parameters>``. Units and conventions are handled there
(:class:`symprobe.md.ipi.RegisteredPotential`): i-PI sends positions and the cell in bohr and receives
hartree, hartree/bohr and the virial in hartree.
"""

from ipi.pes.dummy import Dummy_driver

__DRIVER_NAME__ = "symprobe"
__DRIVER_CLASS__ = "SymprobeDriver"


class SymprobeDriver(Dummy_driver):
    """Evaluates the registered symprobe potential ``model`` (a registry key of :mod:`symprobe.md.ipi`)."""

    def __init__(self, model, *args, **kwargs):
        self.key = str(model)
        super().__init__(*args, **kwargs)

    def check_parameters(self):
        from symprobe.md.ipi import lookup

        self.potential = lookup(self.key)

    def compute_structure(self, cell, pos):
        return self.potential.compute(cell, pos)
