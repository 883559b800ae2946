"""Export symprobe torch models as metatomic models (``.pt``), runnable by i-PI, LAMMPS and ASE.

A model is exportable when its torch module has a TorchScript-compatible *core*, either the module itself
or its ``core`` attribute, with the signature

    forward(vectors (E, 3) Å, edge_i (E,), edge_j (E,), numbers (A,), structure (A,), n_structures: int)
        -> energies (n_structures,) eV

where (edge_i, edge_j) is a full neighbour list within ``cutoff`` Å and ``vectors`` are r_ij = x_j − x_i
(+ periodic image shift). The exported :class:`metatomic.torch.AtomisticModel` asks the engine for that
neighbour list and feeds the pair vectors the engine computed to the core, so forces and stress come from
autograd through the engine's positions and cell. The file holds TorchScript code and weights only:
loading it does not need symprobe.

Per-atom energies and ``selected_atoms`` (domain decomposition in LAMMPS) reuse the same core: the
``structure`` index of each atom decides which energy it is summed into, so routing unselected atoms to a
discarded extra slot, or giving every atom its own slot, costs nothing extra.

With a quadrature (``grid``), the exported model is the grid average E(x) = Σ_k w_k E(R_k x) of
:class:`symprobe.symmetrize.GridAverage`: the K rotated copies of the pair vectors, r_ij → R_k r_ij, go
through one core call (copy k's atoms and energy slots offset by k), and the K energies of every slot are
contracted with the weights; forces and stress, by autograd, are then the grid averages too. Without a grid
the rule is the identity alone (K = 1).
"""

from pathlib import Path
from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)

from symprobe import so3
from symprobe.so3 import Quadrature

CORE_SIGNATURE = "forward(vectors, edge_i, edge_j, numbers, structure, n_structures: int) -> energies"


class PairVectorEnergy(torch.nn.Module):
    """metatomic ``ModelInterface`` around a core on pair vectors (see the module docstring), averaged over
    ``rotations`` (K, 3, 3) acting as r_ij → R r_ij, with ``weights`` (K,) summing to 1."""

    def __init__(self, core: torch.nn.Module, cutoff: float, rotations: torch.Tensor, weights: torch.Tensor):
        super().__init__()
        self.core = core
        self.neighbors = NeighborListOptions(cutoff=cutoff, full_list=True, strict=True, requestor="symprobe")
        self.register_buffer("rotations", rotations)
        self.register_buffer("weights", weights)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The one full neighbour list (cutoff in Å) the engine must provide."""
        return [self.neighbors]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        if "energy" not in outputs:
            return {}
        per_atom = outputs["energy"].sample_kind == "atom"
        device = systems[0].positions.device
        vectors, edge_i, edge_j, numbers, system_of_atom, atom_index = [], [], [], [], [], []
        offset = 0
        for s, system in enumerate(systems):
            pairs = system.get_neighbor_list(self.neighbors)
            samples = pairs.samples.values
            vectors.append(pairs.values.reshape(-1, 3))
            edge_i.append(samples[:, 0].to(torch.long) + offset)
            edge_j.append(samples[:, 1].to(torch.long) + offset)
            numbers.append(system.types.to(torch.long))
            n = len(system)
            system_of_atom.append(torch.full((n,), s, dtype=torch.long, device=device))
            atom_index.append(torch.arange(n, dtype=torch.long, device=device))
            offset += n
        system_of_atom_all = torch.cat(system_of_atom)
        atom_index_all = torch.cat(atom_index)
        selected = torch.ones_like(system_of_atom_all, dtype=torch.bool)
        if selected_atoms is not None:
            chosen = selected_atoms.values.to(torch.long)
            selected = torch.zeros_like(selected)
            starts = torch.cumsum(torch.tensor([0] + [len(s) for s in systems], device=device), 0)
            selected[starts[chosen[:, 0]] + chosen[:, 1]] = True
        if per_atom:
            n_slots = offset
            slot = torch.arange(offset, dtype=torch.long, device=device)
        else:
            n_slots = len(systems)
            slot = system_of_atom_all
        # unselected atoms are summed into one extra slot that is dropped
        slot = torch.where(selected, slot, torch.full_like(slot, n_slots))
        all_vectors = torch.cat(vectors)
        energies = self.averaged_core(all_vectors, torch.cat(edge_i), torch.cat(edge_j), torch.cat(numbers), slot, n_slots + 1)
        energies = energies[:n_slots].to(all_vectors.dtype)  # the core sums in float64; metatomic wants the model's
        if per_atom:
            labels = Labels(
                ["system", "atom"], torch.stack([system_of_atom_all, atom_index_all], dim=1)[selected].to(torch.int32)
            )
            values = energies[selected]
        else:
            labels = Labels(["system"], torch.arange(len(systems), dtype=torch.int32, device=device).reshape(-1, 1))
            values = energies
        block = TensorBlock(
            values=values.reshape(-1, 1),
            samples=labels,
            components=torch.jit.annotate(List[Labels], []),
            properties=Labels(["energy"], torch.tensor([[0]], device=device)),
        )
        return {"energy": TensorMap(Labels(["_"], torch.tensor([[0]], device=device)), [block])}

    def averaged_core(
        self,
        vectors: torch.Tensor,
        edge_i: torch.Tensor,
        edge_j: torch.Tensor,
        numbers: torch.Tensor,
        slot: torch.Tensor,
        n_slots: int,
    ) -> torch.Tensor:
        """Σ_k w_k core(R_k r_ij) per slot (eV), from one core call on the K rotated copies of the edges (Å)."""
        k = self.rotations.shape[0]
        n_atoms = numbers.shape[0]
        copy = torch.arange(k, dtype=torch.long, device=vectors.device).reshape(-1, 1)
        rotated = torch.einsum("kab,eb->kea", self.rotations, vectors).reshape(-1, 3)
        energies = self.core(
            rotated,
            (edge_i.reshape(1, -1) + copy * n_atoms).reshape(-1),
            (edge_j.reshape(1, -1) + copy * n_atoms).reshape(-1),
            numbers.repeat(k),
            (slot.reshape(1, -1) + copy * n_slots).reshape(-1),
            k * n_slots,
        )
        return self.weights.to(energies.dtype) @ energies.reshape(k, n_slots)


def exportable_core(module: torch.nn.Module) -> torch.nn.Module:
    """The module's core on pair vectors (``module.core`` or the module itself), checked to be scriptable."""
    core = getattr(module, "core", module)
    try:
        torch.jit.script(core)
    except Exception as error:  # TorchScript raises several error types
        raise ValueError(
            f"{type(module).__name__} cannot be exported to metatomic: it needs a TorchScript-compatible "
            f"`core` submodule with {CORE_SIGNATURE} ({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error
    return core


def interaction_range(module: torch.nn.Module) -> float:
    """Cutoff × number of message-passing blocks (``blocks`` attribute of the core, else 1), in Å."""
    core = getattr(module, "core", module)
    return float(module.cutoff) * int(getattr(core, "blocks", 1))


def exported_name(model, grid: str | Quadrature | None = None) -> str:
    """The name an exported model carries by default: the model's, with ``@GRID`` when averaged over a grid
    (e.g. ``water-pet@O+i``), so that later audits tell the two apart."""
    return model.name if grid is None else f"{model.name}@{so3.get(grid).name}"


def export_metatomic(
    model,
    path: str | Path,
    name: str | None = None,
    description: str = "",
    species: List[int] | None = None,
    dtype: torch.dtype | None = None,
    grid: str | Quadrature | None = None,
) -> Path:
    """Write ``model`` (a :class:`~symprobe.models.torch_model.TorchModel` or a torch module with a
    ``cutoff`` in Å) as a metatomic model file at ``path`` (energy in eV, lengths in Å).

    ``species`` (atomic numbers) defaults to the model's; ``dtype`` to the model's evaluation precision.
    ``grid`` (a quadrature or its name, see :func:`symprobe.so3.get`) exports the model's average over it.
    """
    import copy

    from symprobe.models.torch_model import TorchModel

    if isinstance(model, TorchModel):
        module, name = model.module, name or exported_name(model, grid)
        species = species if species is not None else (None if model.species is None else sorted(model.species))
        dtype = dtype or model.dtype
    elif isinstance(model, torch.nn.Module):
        module = model
    else:
        raise TypeError(f"cannot export {type(model).__name__}: expected a symprobe TorchModel or a torch module")
    if not hasattr(module, "cutoff"):
        raise ValueError(f"{type(module).__name__} cannot be exported: it has no `cutoff` attribute (Å)")
    if species is None:
        species = getattr(module, "species", None)
    if not species:
        raise ValueError(f"{type(module).__name__}: give the atomic species the model handles (species=[...])")
    dtype = dtype or next(module.parameters(), torch.zeros((), dtype=torch.float64)).dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"metatomic models are float32 or float64, not {dtype}")
    quadrature = so3.identity() if grid is None else so3.get(grid)
    core = copy.deepcopy(exportable_core(module)).to(dtype=dtype).eval()
    rotations, weights = (torch.tensor(a, dtype=dtype) for a in (quadrature.rotations, quadrature.weights))
    wrapper = PairVectorEnergy(core, float(module.cutoff), rotations, weights).eval()
    capabilities = ModelCapabilities(
        outputs={"energy": ModelOutput(quantity="", unit="eV", sample_kind="atom")},
        atomic_types=[int(z) for z in sorted(species)],
        interaction_range=interaction_range(module),
        length_unit="angstrom",
        supported_devices=["cpu", "cuda"],
        dtype="float64" if dtype == torch.float64 else "float32",
    )
    averaged = "" if grid is None else f", averaged over the {len(quadrature)} rotations of {quadrature.name}"
    metadata = ModelMetadata(
        name=name or type(module).__name__,
        description=description or f"exported by symprobe (energy from pair vectors{averaged}; forces and stress by autograd)",
    )
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"{path}: metatomic model files end in .pt")
    from symprobe.files import replacing

    with replacing(path) as tmp:
        AtomisticModel(wrapper, metadata, capabilities).save(str(tmp))
    return path
