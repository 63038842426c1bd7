"""A character-level decoder-only transformer whose heads, MLP neurons and hidden width are prunable.

Token + position embeddings, ``n_layers`` pre-norm blocks

    x <- x + Attn(LN_1(x)),    x <- x + W_2 GELU(W_1 LN_2(x))

and a final LayerNorm with an output head tied to the token embedding (Radford
et al. 2019, GPT-2). Attention is :class:`CausalSelfAttention`, a subclass of the
engine's :class:`optprune.structure.MultiHeadSelfAttention` with a causal mask,
so :func:`optprune.structure.dependency_groups` (through :func:`lm_groups`)
finds one head group per block (rows of q/k/v, columns of ``out_proj``) and one
neuron group per MLP (rows of ``fc1``, columns of ``fc2``), and
:func:`optprune.pruning.apply_decision` cuts them.

What the engine does not cover: the hidden (residual) dimension. The residual
additions tie all blocks' outputs to the embedding, which is the model input of
the traced trunk, and every LayerNorm mixes channels, so the engine freezes it.
:func:`prune_hidden` removes hidden dimensions itself (columns of both
embeddings, every LayerNorm entry, input columns of q/k/v/fc1 and the output
head, output rows of ``out_proj``/``fc2``). A LayerNorm over fewer dimensions
normalises with the statistics of the kept dimensions only, so a hidden mask
``z`` (:func:`unit_masks`, Compresso's gates) also replaces every LayerNorm by
its masked form

    mu = sum_i z_i x_i / sum_i z_i,   var = sum_i z_i (x_i - mu)^2 / sum_i z_i,
    LN_z(x) = z * ((x - mu) / sqrt(var + eps) * gamma + beta),

which for a 0/1 mask is exactly the LayerNorm of the cut model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from optprune._checkpoint import POSITIVE_INT, POSITIVE_INTS, build_model, check_config, read_checkpoint
from optprune._files import atomic_file
from optprune.errors import FileFormatError, InvalidParameterError, UnsupportedLayerError
from optprune.lm._data import VOCAB
from optprune.pruning import PruningDecision, apply_decision
from optprune.structure import Group, MultiHeadSelfAttention, dependency_groups

__all__ = [
    "CausalSelfAttention",
    "LMConfig",
    "export_onnx",
    "TinyLM",
    "layer_widths",
    "lm_groups",
    "load_lm",
    "masked_layernorm_hook",
    "prune_hidden",
    "prune_lm",
    "save_lm",
    "unit_masks",
]

FORMAT = "optprune.lm/1"


@dataclass
class LMConfig:
    """Architecture: vocabulary, context, widths. ``heads``/``ffs`` give per-layer widths after pruning."""

    vocab_size: int
    block_size: int = 80
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    head_dim: int = 16
    d_ff: int = 256
    heads: list[int] = field(default_factory=list)
    ffs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "d_model", "n_layers", "n_heads", "head_dim", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(f"LMConfig: {name} must be >= 1; got {getattr(self, name)}")
        self.heads = list(self.heads) or [self.n_heads] * self.n_layers
        self.ffs = list(self.ffs) or [self.d_ff] * self.n_layers
        if len(self.heads) != self.n_layers or len(self.ffs) != self.n_layers:
            raise InvalidParameterError(
                f"LMConfig: heads and ffs need {self.n_layers} entries; got {len(self.heads)} and {len(self.ffs)}"
            )


class CausalSelfAttention(MultiHeadSelfAttention):
    """:class:`MultiHeadSelfAttention` with a causal mask: token ``t`` attends to tokens ``<= t``."""

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """``cache`` (a dict, filled in place) holds past keys and values for incremental decoding."""
        n, t, _ = x.shape
        heads = self.q_proj.out_features // self.head_dim

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(n, t, heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # new queries sit at the end: causal within the new block, all past keys visible
        past = k.shape[2] - t
        if past == 0:
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif t == 1:
            ctx = F.scaled_dot_product_attention(q, k, v)
        else:
            allowed = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out_proj(ctx.transpose(1, 2).reshape(n, t, heads * self.head_dim))


class MLP(nn.Module):
    """``fc2(GELU(fc1(x)))``; the ``fc1`` rows / ``fc2`` columns are the prunable neurons."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, d_ff: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, max(n_heads, 1), head_dim=head_dim)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + (self.attn(self.ln1(x)) if cache is None else self.attn(self.ln1(x), cache))
        return x + self.mlp(self.ln2(x))


class _Trunk(nn.Module):
    """Blocks, final norm and head of a :class:`TinyLM` (shared modules, same names): what the engine traces."""

    def __init__(self, lm: TinyLM) -> None:
        super().__init__()
        self.blocks = lm.blocks
        self.ln_f = lm.ln_f
        self.head = lm.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class TinyLM(nn.Module):
    """Decoder-only character transformer; ``forward(ids) -> logits`` of shape (batch, tokens, vocab)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.block_size, c.d_model)
        self.blocks = nn.ModuleList(Block(c.d_model, h, c.head_dim, f) for h, f in zip(c.heads, c.ffs))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def embed(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token + position embeddings of positions ``start..``, shape (batch, tokens, d_model)."""
        t = ids.shape[1]
        if start + t > self.config.block_size:
            raise InvalidParameterError(
                f"sequence of {start + t} tokens; the model's block_size is {self.config.block_size}"
            )
        return self.tok_emb(ids) + self.pos_emb(torch.arange(start, start + t, device=ids.device))

    def forward(self, ids: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        """Logits (batch, tokens, vocab). With ``caches`` (one dict per block) ``ids`` continue the cached tokens."""
        if caches is None:
            return self.trunk()(self.embed(ids))
        start = caches[0]["k"].shape[2] if "k" in caches[0] else 0
        x = self.embed(ids, start)
        for block, cache in zip(self.blocks, caches):
            x = block(x, cache)
        return self.head(self.ln_f(x))

    def trunk(self) -> nn.Module:
        """The part after the embeddings as a module of its own (same parameters), for the engine and scorers."""
        return _Trunk(self)


def layer_widths(model: TinyLM) -> dict[str, list[int] | int]:
    """Kept heads and MLP neurons per layer and the hidden width."""
    return {
        "heads": [b.attn.q_proj.out_features // b.attn.head_dim for b in model.blocks],
        "neurons": [b.mlp.fc1.out_features for b in model.blocks],
        "hidden": model.tok_emb.embedding_dim,
    }


def _check_lm(model: nn.Module) -> TinyLM:
    if not isinstance(model, TinyLM):
        raise UnsupportedLayerError(type(model).__name__, type(model).__name__, ["TinyLM (optprune.lm)"])
    for i, block in enumerate(model.blocks):
        if not isinstance(getattr(block, "attn", None), MultiHeadSelfAttention):
            raise UnsupportedLayerError(
                f"blocks.{i}.attn", type(getattr(block, "attn", None)).__name__,
                ["CausalSelfAttention", "MultiHeadSelfAttention"],
            )
    return model


def lm_groups(model: TinyLM) -> list[Group]:
    """The engine's dependency groups of the model's trunk: prunable heads and MLP neurons per block.

    Traced by :func:`optprune.structure.dependency_groups` on :meth:`TinyLM.trunk`
    with input shape ``(block_size, d_model)``; module names are the model's own
    (``blocks.0.attn.heads``, ``blocks.0.mlp.fc1``). The hidden dimension comes
    out frozen (residual tie to the input, LayerNorm): see :func:`prune_hidden`.
    """
    model = _check_lm(model)
    groups, _ = dependency_groups(model.trunk(), (model.config.block_size, model.config.d_model))
    return groups


def prune_lm(model: TinyLM, kept: dict[str, Sequence[int]], groups: list[Group] | None = None) -> TinyLM:
    """A physically smaller copy keeping ``kept[group]`` units (heads and neurons) through the engine.

    The decision is a :class:`optprune.pruning.PruningDecision` applied by
    :func:`optprune.pruning.apply_decision`; the config is updated to the new widths.
    """
    groups = lm_groups(model) if groups is None else groups
    widths = {g.name: g.width for g in groups if g.prunable}
    decision = PruningDecision(kept, widths, (model.config.block_size, model.config.d_model))
    new = apply_decision(model, decision, groups=groups)
    cfg = copy.deepcopy(model.config)
    cfg.heads = layer_widths(new)["heads"]
    cfg.ffs = layer_widths(new)["neurons"]
    new.config = cfg
    return new


def prune_hidden(model: TinyLM, keep: Sequence[int] | torch.Tensor) -> TinyLM:
    """A copy keeping hidden (residual) dimensions ``keep``: every tensor that reads or writes the stream."""
    model = _check_lm(model)
    d = model.config.d_model
    idx = torch.as_tensor(list(keep) if not isinstance(keep, torch.Tensor) else keep, dtype=torch.long).unique()
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= d:
        raise InvalidParameterError(f"prune_hidden: keep must be a non-empty subset of 0..{d - 1}; got {keep!r}")
    new = copy.deepcopy(model)

    def cut(module: nn.Module, name: str, axis: int) -> None:
        t = getattr(module, name)
        if t is None:
            return
        setattr(module, name, nn.Parameter(t.detach().index_select(axis, idx).clone(), requires_grad=t.requires_grad))

    cut(new.tok_emb, "weight", 1)
    cut(new.pos_emb, "weight", 1)
    norms = [new.ln_f] + [m for b in new.blocks for m in (b.ln1, b.ln2)]
    for ln in norms:
        cut(ln, "weight", 0)
        cut(ln, "bias", 0)
        ln.normalized_shape = (idx.numel(),)
    for b in new.blocks:
        for lin in (b.attn.q_proj, b.attn.k_proj, b.attn.v_proj, b.mlp.fc1):
            cut(lin, "weight", 1)
            lin.in_features = idx.numel()
        for lin in (b.attn.out_proj, b.mlp.fc2):
            cut(lin, "weight", 0)
            cut(lin, "bias", 0)
            lin.out_features = idx.numel()
        b.attn.embed_dim = idx.numel()
    new.tok_emb.embedding_dim = new.pos_emb.embedding_dim = idx.numel()
    new.head.weight = new.tok_emb.weight
    new.head.in_features = idx.numel()
    new.config = copy.deepcopy(model.config)
    new.config.d_model = idx.numel()
    return new


@contextmanager
def unit_masks(
    model: TinyLM,
    heads: Sequence[torch.Tensor | None] | None = None,
    neurons: Sequence[torch.Tensor | None] | None = None,
    hidden: torch.Tensor | None = None,
) -> Iterator[TinyLM]:
    """Run ``model`` with heads, neurons and hidden dimensions scaled by masks, without copying it.

    ``heads[l]`` (one value per head of layer ``l``) scales the head's columns at
    the input of ``out_proj``; ``neurons[l]`` the columns of ``fc2``; ``hidden``
    the embedding output and every block's attention and MLP outputs (so masked
    dimensions of the residual stream stay zero). Masks may carry gradients
    (Compresso's gates) and may be changed in place between forward passes.
    """
    model = _check_lm(model)
    handles = []

    def scale_input(mask: torch.Tensor, repeat: int):
        def hook(module: nn.Module, args: tuple) -> tuple:
            return (args[0] * mask.repeat_interleave(repeat).to(args[0]), *args[1:])

        return hook

    def scale_output(mask: torch.Tensor):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            return out * mask.to(out)

        return hook

    get_hidden = (lambda: hidden)

    try:
        for i, block in enumerate(model.blocks):
            if heads is not None and heads[i] is not None:
                hook = scale_input(heads[i], block.attn.head_dim)
                handles.append(block.attn.out_proj.register_forward_pre_hook(hook))
            if neurons is not None and neurons[i] is not None:
                handles.append(block.mlp.fc2.register_forward_pre_hook(scale_input(neurons[i], 1)))
            if hidden is not None:
                handles.append(block.attn.register_forward_hook(scale_output(hidden)))
                handles.append(block.mlp.register_forward_hook(scale_output(hidden)))
        if hidden is not None:
            handles.append(model.tok_emb.register_forward_hook(scale_output(hidden)))
            handles.append(model.pos_emb.register_forward_hook(scale_output(hidden)))
            for ln in _layernorms(model):
                handles.append(ln.register_forward_hook(masked_layernorm_hook(get_hidden)))
        yield model
    finally:
        for h in handles:
            h.remove()


def _layernorms(model: TinyLM) -> list[nn.LayerNorm]:
    return [model.ln_f] + [m for b in model.blocks for m in (b.ln1, b.ln2)]


def masked_layernorm_hook(get_mask):
    """Forward hook turning a LayerNorm into its masked form ``LN_z`` (module doc); ``get_mask()`` gives ``z``.

    ``get_mask`` is called on every forward pass (Compresso resamples its gates
    each step); when it returns ``None`` the LayerNorm is left as it is.
    """

    def hook(module: nn.LayerNorm, args: tuple, out: torch.Tensor) -> torch.Tensor:
        z = get_mask()
        if z is None:
            return out
        x = args[0]
        z = z.to(x)
        total = z.sum().clamp_min(1e-6)
        mu = (x * z).sum(-1, keepdim=True) / total
        var = (z * (x - mu) ** 2).sum(-1, keepdim=True) / total
        y = (x - mu) / torch.sqrt(var + module.eps)
        if module.weight is not None:
            y = y * module.weight
        if module.bias is not None:
            y = y + module.bias
        return y * z

    return hook


def save_lm(model: TinyLM, path: str | Path, metadata: dict | None = None) -> Path:
    """Write ``{format, config, state_dict, metadata}`` with ``torch.save`` (a pruned model keeps its widths).

    Written atomically (:func:`optprune._files.atomic_file`): a kill mid-write leaves the old file.
    """
    model = _check_lm(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save({"format": FORMAT, "config": asdict(model.config), "state_dict": model.state_dict(),
                    "metadata": dict(metadata or {})}, tmp)
    return path


#: the keys of a saved :class:`LMConfig` and what each may hold
CONFIG_CONSTRAINTS = {**{k: POSITIVE_INT for k in ("vocab_size", "block_size", "d_model", "n_layers", "n_heads",
                                                    "head_dim", "d_ff")}, "heads": POSITIVE_INTS, "ffs": POSITIVE_INTS}
LM_TAKES = "a language model written by optprune lm train or lm prune (optprune.lm.save_lm)"


def load_lm(path: str | Path) -> TinyLM:
    """Read a model written by :func:`save_lm` (weights only: ``torch.load(weights_only=True)``).

    Checked by :mod:`optprune._checkpoint`: format tag, config keys and values,
    state-dict names and shapes against the config, finite weights. The
    vocabulary must be the task's (:data:`optprune.lm.VOCAB`).
    """
    path = Path(path)
    data = read_checkpoint(path, FORMAT, LM_TAKES)
    config = check_config(path, data.get("config"), CONFIG_CONSTRAINTS, required=("vocab_size",))
    if config["vocab_size"] != len(VOCAB):
        raise FileFormatError(f"{path}: config vocab_size is {config['vocab_size']}; the character vocabulary "
                              f"has {len(VOCAB)} tokens")
    return build_model(path, lambda c: TinyLM(LMConfig(**c)), config, data)


def export_onnx(model: TinyLM, path: str | Path) -> Path:
    """Write ``ids (batch, tokens) -> logits (batch, tokens, vocab)`` as ONNX (opset 17, dynamic batch and length).

    Uses torch's TorchScript-based exporter; the causal attention becomes
    ONNX's matmul/softmax with a triangular mask. Pruned models (fewer heads,
    neurons, hidden dimensions) export the same way.
    """
    import warnings

    model = _check_lm(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.zeros(1, 8, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), atomic_file(path) as tmp:
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (ids,), str(tmp), input_names=["ids"], output_names=["logits"],
                              dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}},
                              opset_version=17, dynamo=False)
    finally:
        model.train(was_training)
    return path
