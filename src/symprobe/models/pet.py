"""A point-edge transformer (PET-style) water potential and its exactly invariant twin.

For every atom i, a transformer runs over one token for i itself and one token per neighbour j within
``cutoff`` Å. A neighbour token is built from the displacement r_ij, the species of j and the message
h_j (the centre token of j from the previous message-passing block). Energy = Σ_i atom head(centre
token) + Σ_ij f_c(r_ij) · bond head(token ij), summed over blocks, then scaled and shifted by
per-species reference energies.

* ``invariant=False`` (the PET-style model): the token sees the raw Cartesian components of r_ij, so the
  model is translation- and permutation-invariant but *not* rotation-invariant.
* ``invariant=True`` (the twin): the token sees only |r_ij| (radial basis) and the attention logits get
  a learned bias from the cosines r̂_ij·r̂_ik, so the energy is rotation-invariant to round-off.
* ``direct_forces=True`` adds a force head for direct-force pre-training: F_i = s · Σ_j f_c(r_ij) h(token_ij) r̂_ij
  on the last block's tokens (s the energy scale, eV/Å), equivariant for the twin. The energy never uses it.

Smoothness at the cutoff: attention weights of neighbour k are multiplied by f_c(r_ik) (softmax with
log f_c added to the logits) and bond terms by f_c(r_ij), with f_c going smoothly to zero at the
cutoff, so the energy is continuous (and differentiable) when atoms cross it.

:class:`PETCore` is TorchScript-compatible and takes plain tensors; :class:`PETModule` wraps it for a
:class:`~symprobe.models.torch_model.Graph`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from symprobe.models.torch_model import Graph, TorchModel

BUILTIN_NAMES = ("water-pet", "water-pet-twin")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def default_hypers(invariant: bool = False) -> dict[str, Any]:
    """Architecture hyper-parameters (lengths in Å); ``feedforward`` is the hidden width of each transformer
    layer's MLP (None: 2 × ``width``, as in the bundled models)."""
    return dict(
        species=[1, 8],
        cutoff=4.0,
        cutoff_width=0.5,
        width=64,
        heads=4,
        blocks=2,
        layers_per_block=1,
        feedforward=None,
        radial_basis=8,
        angular_degree=4,
        invariant=invariant,
        direct_forces=False,
    )


def smooth_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """1 for r ≤ cutoff − width, ½(1 + cos(π (r − cutoff + width)/width)) in the switching shell, 0 beyond."""
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer whose attention weights are multiplied by per-token cutoff weights.

    Tokens come as rows (R, d) in consecutive groups of atoms padded to one length (see :func:`token_layout`):
    group (n, t) holds n atoms of t token rows each; attention mixes the t rows of each atom. Only the
    attention needs the groups; every other operation runs on all rows at once.
    """

    def __init__(self, width: int, heads: int, angular_degree: int, feedforward: int):
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, feedforward), nn.SiLU(), nn.Linear(feedforward, width))
        # coefficients of the angular attention bias Σ_p c_hp cos^p (twin only; zero-size otherwise)
        self.angular = nn.Parameter(torch.zeros(heads, angular_degree))

    def forward(self, tokens: torch.Tensor, groups: list[tuple[int, int]], log_weights: list[torch.Tensor],
                cos_powers: list[torch.Tensor]) -> torch.Tensor:
        """tokens (R, d); per group: log_weights (n, t) log cutoff weights of the keys (−inf on padding) and
        cos_powers (n, P, t, t) (empty for the PET-style model)."""
        d = tokens.shape[1]
        head_width = d // self.heads
        qkv = self.qkv(self.norm_attention(tokens))
        mixed: list[torch.Tensor] = []
        # split, not slices: a slice's backward would fill a zero tensor of all rows per group
        for g, rows in enumerate(qkv.split([n * t for n, t in groups])):
            n, t = groups[g]
            q, k, v = rows.view(n, t, 3, self.heads, head_width).permute(2, 0, 3, 1, 4).reshape(3, n * self.heads, t, head_width).unbind(0)
            if self.angular.shape[1] > 0:
                bias = (log_weights[g][:, None, None, :] + torch.einsum("hp,aptu->ahtu", self.angular, cos_powers[g])).reshape(n * self.heads, t, t)
            else:
                bias = log_weights[g][:, None, None, :].expand(n, self.heads, 1, t).reshape(n * self.heads, 1, t)
            attention = torch.softmax(torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(head_width)), dim=-1)
            mixed.append(torch.bmm(attention, v).view(n, self.heads, t, head_width).transpose(1, 2).reshape(n * t, d))
        tokens = tokens + self.out(torch.cat(mixed))
        return tokens + self.mlp(self.norm_mlp(tokens))


def token_layout(edge_i: torch.Tensor, n_atoms: int, granularity: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Rows of the token matrix: one centre token per atom followed by one token per edge of that atom.

    Atoms are sorted by their number of edges and padded to a multiple of ``granularity`` tokens, and
    atoms of one padded length form a group, so padding stays below ``granularity`` rows per atom while
    attention runs on a few dense blocks. ``edge_i`` must be sorted. Returns the row of each atom's centre
    token (A,), the row of each edge (E,), the atom of each row (R,) and the groups in row order (atoms,
    tokens per atom).
    """
    counts = torch.bincount(edge_i, minlength=n_atoms)
    tokens = counts + 1
    padded = torch.minimum((tokens + granularity - 1) // granularity * granularity, tokens.max())
    padded, atom_order = torch.sort(padded, descending=True, stable=True)
    atom_start = torch.cumsum(padded, 0) - padded
    centre_row = torch.empty_like(atom_start).index_put_((atom_order,), atom_start)
    first_edge = torch.cumsum(counts, 0) - counts
    slot = torch.arange(edge_i.shape[0], device=edge_i.device) - first_edge[edge_i]
    edge_row = centre_row[edge_i] + 1 + slot
    row_atom = torch.repeat_interleave(atom_order, padded)
    lengths, sizes = torch.unique_consecutive(padded, return_counts=True)
    groups: list[tuple[int, int]] = []
    length_list: list[int] = lengths.tolist()
    size_list: list[int] = sizes.tolist()
    for t, n in zip(length_list, size_list):
        groups.append((n, t))
    return centre_row, edge_row, row_atom, groups


class PETCore(nn.Module):
    """The network on plain tensors (TorchScript-compatible).

    ``forward(vectors (E, 3) Å, edge_i (E,), edge_j (E,), numbers (A,), structure (A,), n_structures)``
    returns the energies (S,) in eV, always float64 (the network itself runs in the module's dtype).
    """

    def __init__(self, hypers: dict[str, Any]):
        super().__init__()
        self.cutoff = float(hypers["cutoff"])
        self.cutoff_width = float(hypers["cutoff_width"])
        self.invariant = bool(hypers["invariant"])
        self.blocks = int(hypers["blocks"])
        width, heads = int(hypers["width"]), int(hypers["heads"])
        feedforward = 2 * width if hypers.get("feedforward") is None else int(hypers["feedforward"])
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.radial_basis = int(hypers["radial_basis"])
        self.angular_degree = int(hypers["angular_degree"]) if self.invariant else 0
        species = [int(z) for z in hypers["species"]]
        index = torch.full((119,), -1, dtype=torch.long)
        index[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", index)
        # composition baseline (eV per atom of each species) and energy scale, set from training data
        self.register_buffer("species_energy", torch.zeros(len(species)))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("rbf_centres", torch.linspace(0.0, self.cutoff, self.radial_basis))
        geometry_in = self.radial_basis + (0 if self.invariant else 3)
        n = len(species)
        self.geometry = nn.ModuleList(
            [nn.Sequential(nn.Linear(geometry_in, width), nn.SiLU(), nn.Linear(width, width)) for _ in range(self.blocks)]
        )
        self.neighbour_species = nn.ModuleList([nn.Embedding(n, width) for _ in range(self.blocks)])
        self.centre_species = nn.ModuleList([nn.Embedding(n, width) for _ in range(self.blocks)])
        self.message = nn.ModuleList([nn.Linear(width, width) for _ in range(self.blocks - 1)])
        self.centre_message = nn.ModuleList([nn.Linear(width, width) for _ in range(self.blocks - 1)])
        self.layers = nn.ModuleList(
            [
                nn.ModuleList([TransformerLayer(width, heads, self.angular_degree, feedforward) for _ in range(int(hypers["layers_per_block"]))])
                for _ in range(self.blocks)
            ]
        )
        for embedding in [*self.neighbour_species, *self.centre_species]:
            nn.init.normal_(embedding.weight, 0.0, 0.1)  # small beside the geometric features, which carry forces
        self.atom_head = nn.ModuleList([_head(width) for _ in range(self.blocks)])
        self.bond_head = nn.ModuleList([_head(width) for _ in range(self.blocks)])
        self.force_head = nn.ModuleList([_head(width)] if hypers.get("direct_forces") else [])

    def forward(
        self,
        vectors: torch.Tensor,
        edge_i: torch.Tensor,
        edge_j: torch.Tensor,
        numbers: torch.Tensor,
        structure: torch.Tensor,
        n_structures: int,
    ) -> torch.Tensor:
        return self.energies_and_tokens(vectors, edge_i, edge_j, numbers, structure, n_structures)[0]

    def energies_and_direct_forces(
        self,
        vectors: torch.Tensor,
        edge_i: torch.Tensor,
        edge_j: torch.Tensor,
        numbers: torch.Tensor,
        structure: torch.Tensor,
        n_structures: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (S,) eV and the force head's direct forces (A, 3) eV/Å (needs ``direct_forces=True``)."""
        if len(self.force_head) == 0:
            raise ValueError("PET model: built without a force head (hyper-parameter direct_forces: false)")
        energies, tokens, fc, r, length, row_atom = self.energies_and_tokens(vectors, edge_i, edge_j, numbers, structure, n_structures)
        unit = r / torch.where(length > 0, length, torch.ones_like(length))[:, None]
        weights = self.force_head[0](tokens).squeeze(-1) * fc  # (R,), zero on centre and padding rows
        forces = torch.zeros((numbers.shape[0], 3), dtype=tokens.dtype, device=tokens.device)
        return energies, forces.index_add(0, row_atom, weights[:, None] * unit) * self.energy_scale

    def energies_and_tokens(
        self,
        vectors: torch.Tensor,
        edge_i: torch.Tensor,
        edge_j: torch.Tensor,
        numbers: torch.Tensor,
        structure: torch.Tensor,
        n_structures: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energies (S,) eV and, per token row (:func:`token_layout`), the last block's tokens (R, d), the
        cutoff weights (R,), vectors r_ij (R, 3) Å and lengths (R,) Å (all zero on centre and padding rows)
        and the atom of the row (R,)."""
        n_atoms = numbers.shape[0]
        species = self.species_index[numbers.clamp(0, 118)]
        if bool((species < 0).any()) or bool((numbers > 118).any()):
            raise ValueError("PET model: structure contains species the model was not trained on")
        edge_i_sorted, order = torch.sort(edge_i, stable=True)
        centre_row, edge_row, row_atom, groups = token_layout(edge_i_sorted, n_atoms)
        n_rows = row_atom.shape[0]
        edge_vectors = vectors[order]
        edge_length = torch.linalg.norm(edge_vectors, dim=-1)
        rows = (edge_row,)
        r = torch.zeros((n_rows, 3), dtype=vectors.dtype, device=vectors.device).index_put(rows, edge_vectors)
        length = torch.zeros((n_rows,), dtype=vectors.dtype, device=vectors.device).index_put(rows, edge_length)
        present = torch.zeros((n_rows,), dtype=vectors.dtype, device=vectors.device).index_put(rows, torch.ones_like(edge_length))
        fc = smooth_cutoff(length, self.cutoff, self.cutoff_width) * present  # (R,), 0 on centre and padding rows
        weights = fc.index_fill(0, centre_row, 1.0)  # the centre token always has weight 1
        # attention ∝ f_c · exp(logit); the clamp keeps gradients finite where f_c = 0 exactly
        log_weights = torch.where(weights > 0, torch.log(weights.clamp_min(1e-30)), torch.full_like(weights, -math.inf))
        group_rows = [n * t for n, t in groups]
        log_weight_groups = [w.view(n, t) for w, (n, t) in zip(log_weights.split(group_rows), groups)]
        # geometric features of each neighbour token
        width_rbf = self.cutoff / self.radial_basis
        rbf = torch.exp(-(((length[:, None] - self.rbf_centres) / width_rbf) ** 2))
        cos_groups: list[torch.Tensor] = []
        if self.invariant:
            geometry_in = rbf
            unit = r / torch.where(present > 0, length, torch.ones_like(length))[:, None]  # zero on centre and padding rows
            for u, (n, t) in zip(unit.split(group_rows), groups):
                u = u.view(n, t, 3)
                cos = u @ u.transpose(1, 2)  # (n, t, t); no angular bias to or from the centre token
                cos_groups.append(torch.stack([cos ** (p + 1) for p in range(self.angular_degree)], dim=1))
        else:
            geometry_in = torch.cat([r / self.cutoff, rbf], dim=-1)
        neighbour = torch.zeros((n_rows,), dtype=torch.long, device=edge_i.device).index_put(rows, edge_j[order])
        neighbour_species = species[neighbour]
        energy_atoms = torch.zeros((n_atoms,), dtype=vectors.dtype, device=vectors.device)
        centre = torch.zeros((0,), dtype=vectors.dtype, device=vectors.device)
        tokens = torch.zeros((0,), dtype=vectors.dtype, device=vectors.device)
        for b, (geometry, neighbour_embedding, centre_embedding, layers, atom_head, bond_head) in enumerate(
            zip(self.geometry, self.neighbour_species, self.centre_species, self.layers, self.atom_head, self.bond_head)
        ):
            edge_tokens = geometry(geometry_in) + neighbour_embedding(neighbour_species)
            centre_token = centre_embedding(species)
            if b > 0:
                edge_tokens = edge_tokens + tokens + self._message(b - 1, centre)[neighbour]
                centre_token = centre_token + centre + self._centre_message(b - 1, centre)
            tokens = edge_tokens.index_put((centre_row,), centre_token)
            for layer in layers:
                tokens = layer(tokens, groups, log_weight_groups, cos_groups)
            centre = tokens[centre_row]
            bonds = bond_head(tokens).squeeze(-1) * fc
            energy_atoms = energy_atoms + atom_head(centre).squeeze(-1) + torch.zeros_like(energy_atoms).index_add(0, row_atom, bonds)
        # summed in float64: a float32 sum of ~-400 eV atomic terms would round cell energies to meV
        energy_atoms = (energy_atoms * self.energy_scale).double() + self.species_energy[species].double()
        energies = torch.zeros((n_structures,), dtype=torch.float64, device=vectors.device)
        return energies.index_add(0, structure, energy_atoms), tokens, fc, r, length, row_atom

    def _message(self, b: int, centre: torch.Tensor) -> torch.Tensor:
        for k, message in enumerate(self.message):
            if k == b:
                return message(centre)
        raise IndexError("no message layer")

    def _centre_message(self, b: int, centre: torch.Tensor) -> torch.Tensor:
        for k, message in enumerate(self.centre_message):
            if k == b:
                return message(centre)
        raise IndexError("no message layer")


def _head(width: int) -> nn.Module:
    """LayerNorm → MLP → scalar; the last layer starts at zero so an untrained model predicts the baseline."""
    head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head


class PETModule(nn.Module):
    """PET-style energy model on a :class:`Graph` (``cutoff`` Å; ``forward(graph) -> (S,)`` eV)."""

    def __init__(self, hypers: dict[str, Any] | None = None, invariant: bool | None = None):
        super().__init__()
        hypers = dict(default_hypers() if hypers is None else hypers)
        if invariant is not None:
            hypers["invariant"] = invariant
        unknown = set(hypers) - set(default_hypers())
        if unknown:
            raise ValueError(f"unknown model hyper-parameters {sorted(unknown)} (known: {sorted(default_hypers())})")
        self.hypers = {**default_hypers(), **hypers}
        self.core = PETCore(self.hypers)
        self.cutoff = self.core.cutoff

    @property
    def species(self) -> list[int]:
        """Atomic numbers the model knows."""
        return [int(z) for z in self.hypers["species"]]

    def forward(self, graph: Graph) -> torch.Tensor:
        return self.core(graph.edge_vectors(), graph.edge_i, graph.edge_j, graph.numbers, graph.structure, graph.n_structures)

    def direct_forces(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (S,) eV and direct forces (A, 3) eV/Å from the force head (not −∂E/∂x)."""
        return self.core.energies_and_direct_forces(graph.edge_vectors(), graph.edge_i, graph.edge_j, graph.numbers, graph.structure,
                                                    graph.n_structures)

    def set_baseline(self, species_energy: torch.Tensor, energy_scale: float) -> None:
        """Per-species reference energies (eV/atom, in ``hypers['species']`` order) and the energy scale (eV)."""
        self.core.species_energy.copy_(torch.as_tensor(species_energy, dtype=self.core.species_energy.dtype))
        self.core.energy_scale.fill_(float(energy_scale))

    def n_parameters(self) -> int:
        """Number of parameters (all of ``parameters()``, buffers not counted)."""
        return sum(p.numel() for p in self.parameters())


def save_model(module: PETModule, path: str | Path, card: dict[str, Any] | None = None) -> None:
    """Write hyper-parameters, weights and an optional model card to ``path`` atomically."""
    from symprobe.files import replacing

    with replacing(path) as tmp:
        torch.save({"hypers": module.hypers, "state_dict": module.state_dict(), "card": card or {}}, tmp)


def load_module(path: str | Path) -> PETModule:
    """A :class:`PETModule` from a file written by :func:`save_model` or a training checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such PET model file")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or "hypers" not in data or ("state_dict" not in data and "model" not in data):
        raise ValueError(f"{path}: not a symprobe PET model file (expected keys 'hypers' and 'state_dict')")
    state = data["state_dict"] if "state_dict" in data else data["model"]
    module = PETModule(data["hypers"]).to(state["core.energy_scale"].dtype)  # keep the saved precision
    module.load_state_dict(state)
    return module


def builtin_path(name: str) -> Path:
    """Path of a bundled model ('water-pet' or 'water-pet-twin')."""
    if name not in BUILTIN_NAMES:
        raise ValueError(f"unknown built-in model {name!r} (available: {', '.join(BUILTIN_NAMES)})")
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"built-in model {name!r} is not bundled in this installation ({path} missing)")
    return path


def pet_model(path_or_name: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> TorchModel:
    """A PET-style model (file path or built-in name) as a :class:`TorchModel` in ``dtype`` on ``device``."""
    name = str(path_or_name)
    path = builtin_path(name) if name in BUILTIN_NAMES else Path(name)
    module = load_module(path)
    label = name if name in BUILTIN_NAMES else path.stem
    return TorchModel(module, name=label, species=module.species, dtype=dtype, device=device)
