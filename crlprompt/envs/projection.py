"""Action projections: how an env action ``a (d,)`` becomes a prompt offset ``δ = A a (D,)``.

Three kinds (``EnvConfig.projection``):

* ``"gaussian"``: one seeded matrix A ``(D, d)`` with N(0, 1/d) entries, so each coordinate of
  A a has unit variance for a ~ N(0, I_d); identity when ``projection_dim`` is None.
* ``"bbt"`` (Black-Box Tuning, Sun et al. 2022): entries N(0, s_j²) with
  ``s_j = α·σ̂_j / (√d·σ₀)``. σ̂_j is measured from the real values coordinate j of the prompt
  replaces (:func:`activation_scales`), so that z ~ N(0, σ₀² I_d) gives offsets at the scale of
  real activations (per-coordinate std α·σ̂_j). Without ``projection_dim`` the same scale is
  applied coordinate-wise: δ_j = (α σ̂_j / σ₀) a_j (a diagonal "projection", d = D).
* ``"bbt_layer"`` (BBTv2, deep prompts): one such matrix per layer, A_l ``(D_l, d)``, each with
  its own slice z_l of the action: ``a = (z_1 .. z_L)`` has L·d dimensions and layer l's keys and
  values are A_l z_l (a block-diagonal A). BBTv2 searches the z_l in turn (divide and conquer);
  here an agent sees one action of L·d dimensions.

σ̂ (:func:`activation_scales`): for a shallow prompt, the std of the input-embedding matrix (BBT);
for a deep prefix, per layer and separately for keys and values, the std of the keys/values the
frozen LM computes for real task text (train rows), after dropping outliers beyond 3 std (a
few massive activations, e.g. at attention-sink positions, would otherwise set the scale).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..build import Setup
from ..errors import ConfigError
from ..models import cache_kwargs
from ..prompts import PromptLayout
from .config import PROJECTIONS

#: Train rows whose keys/values measure σ̂ for deep prefixes.
SCALE_ROWS = 32
#: Outliers beyond this many standard deviations are dropped before σ̂ is taken.
CLIP_STD = 3.0


def clipped_std(x: torch.Tensor, clip: float = CLIP_STD) -> float:
    """Std of ``x`` after dropping entries farther than ``clip`` std from the mean (one pass)."""
    x = x.double().flatten()
    mean, std = x.mean(), x.std()
    kept = x[(x - mean).abs() <= clip * std]
    return float(kept.std()) if kept.numel() > 1 else float(std)


@torch.no_grad()
def activation_scales(setup: Setup, rows: int = SCALE_ROWS) -> torch.Tensor:
    """σ̂ of the values the prompt replaces: ``(1,)`` for a shallow prompt, ``(L, 2)`` (layer,
    key/value) for a deep prefix, measured on up to ``rows`` train rows of ``setup``."""
    from transformers import DynamicCache

    pm, lm = setup.model, setup.lm
    if pm.layout.kind == "shallow":
        return torch.tensor([clipped_std(lm.input_embeddings().weight.detach().float(), clip=math.inf)])
    data = setup.train if len(setup.train) else setup.drl
    ids, mask, _ = data.batch(np.arange(min(rows, len(data))), pm.device)
    cache = DynamicCache()
    lm.body(input_ids=ids, attention_mask=mask, use_cache=True, **cache_kwargs(lm.body, cache))
    real = mask.bool()  # (B, T): keys/values of padding are not real text
    out = torch.empty(pm.layout.num_layers, 2)
    for i, layer in enumerate(cache.layers):
        for j, t in enumerate((layer.keys, layer.values)):  # each (B, H, T, head_dim)
            out[i, j] = clipped_std(t.float().permute(0, 2, 1, 3)[real])
    return out


def coordinate_scales(layout: PromptLayout, scales: torch.Tensor) -> torch.Tensor:
    """Broadcast :func:`activation_scales` to one σ̂ per prompt coordinate: ``(D,)`` in θ's layout."""
    if layout.kind == "shallow":
        return scales.expand(layout.dim).clone()
    p, n_layers, _, heads, hd = layout.shape
    return scales.view(1, n_layers, 2, 1, 1).expand(p, n_layers, 2, heads, hd).reshape(-1).clone()


class Projection:
    """δ = A a for a batch of actions ``(K, d) -> (K, D)`` (see the module docstring).

    Args:
        kind: one of :data:`PROJECTIONS`.
        layout: the prompt's layout (D and, for ``bbt_layer``, the layers).
        dim: d (per layer for ``bbt_layer``), or None for no projection (gaussian: identity;
            bbt: coordinate-wise scaling).
        scales: σ̂ from :func:`activation_scales` (``bbt`` and ``bbt_layer`` only).
        alpha, sigma0: BBT's α and σ₀.
        seed: seeds A.
    """

    def __init__(
        self, kind: str, layout: PromptLayout, dim: int | None, *, scales: torch.Tensor | None = None,
        alpha: float = 1.0, sigma0: float = 1.0, seed: int = 0, device: torch.device | str = "cpu",
    ):  # fmt: skip
        if kind not in PROJECTIONS:
            raise ConfigError(f"projection must be one of {PROJECTIONS}, got {kind!r}")
        big_d = layout.dim
        self.kind, self.layout = kind, layout
        self.matrix: torch.Tensor | None = None  # (D, d) or, for bbt_layer, (L, D_l, d)
        self.diagonal: torch.Tensor | None = None  # (D,): bbt without projection_dim
        g = torch.Generator().manual_seed(seed)
        if kind == "bbt_layer":
            if layout.kind != "deep":
                raise ConfigError("projection='bbt_layer' needs a deep prompt (prompt='deep'); use projection='bbt'")
            per_layer = big_d // layout.num_layers
            if dim is None or dim > per_layer:
                raise ConfigError(f"projection='bbt_layer' needs projection_dim = d per layer in [1, {per_layer}] "
                                  f"(BBTv2: 500), got {dim!r}")  # fmt: skip
            n_layers = layout.num_layers
            # σ̂ per (layer, key/value), laid out as one layer's coordinates (P, 2, H, hd)
            p, _, _, heads, hd = layout.shape
            s = scales.view(n_layers, 1, 2, 1, 1).expand(n_layers, p, 2, heads, hd).reshape(n_layers, -1, 1)
            a = torch.randn(n_layers, per_layer, dim, generator=g)
            self.matrix = (a * s * (alpha / (math.sqrt(dim) * sigma0))).to(device)  # (L, D_l, d)
            self.action_dim = n_layers * dim
            return
        if dim is not None and not 1 <= dim <= big_d:
            raise ConfigError(f"projection_dim must be an int in [1, D={big_d}], got {dim!r}")
        if kind == "gaussian":
            self.action_dim = dim or big_d
            if dim is not None and dim != big_d:
                self.matrix = (torch.randn(big_d, dim, generator=g) / math.sqrt(dim)).to(device)
            return
        s = coordinate_scales(layout, scales) * (alpha / sigma0)  # (D,)
        self.action_dim = dim or big_d
        if dim is None:
            self.diagonal = s.to(device)
        else:
            self.matrix = (torch.randn(big_d, dim, generator=g) * (s / math.sqrt(dim)).unsqueeze(1)).to(device)

    @property
    def is_identity(self) -> bool:
        return self.matrix is None and self.diagonal is None

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """``actions (K, action_dim)`` -> offsets ``(K, D)`` in θ's layout."""
        if self.diagonal is not None:
            return actions * self.diagonal
        if self.matrix is None:
            return actions
        if self.kind != "bbt_layer":
            return actions @ self.matrix.T
        k, lay = actions.shape[0], self.layout
        z = actions.view(k, lay.num_layers, -1)  # (K, L, d)
        per_layer = torch.einsum("lnd,kld->kln", self.matrix, z)  # (K, L, D_l) with D_l = (P, 2, H, hd)
        per_layer = per_layer.view(k, lay.num_layers, lay.num_tokens, -1).transpose(1, 2)  # (K, P, L, 2·H·hd)
        return per_layer.reshape(k, lay.dim)
