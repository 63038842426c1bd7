r"""Dependency groups of a ``transformers`` decoder, found from its module graph by perturbation probes.

What is generic (no table per class): in every decoder layer (the children of the model's
``ModuleList`` with ``num_hidden_layers`` entries) the projections (``nn.Linear`` and GPT-2's
transposed ``Conv1D``) are found, and one traced forward pass tells their roles:

* a **producer** reads the residual stream: its input *is* the layer's input or the output of a
  normalisation module of the layer (LayerNorm, RMSNorm: any module whose class name ends in
  ``Norm``); q/k/v, GPT-2's fused ``c_attn``, gate/up, ``fc1``/``c_fc``;
* a **consumer** writes back to the stream: every other projection with the hidden width as output
  (``o_proj``/``out_proj``/``c_proj``, ``down_proj``/``fc2``).

Then, in float64, each output channel ``c`` of a producer is perturbed (one batch element per
channel) and the *first* consumer after it in execution order whose input changes is recorded with
the set of its input channels that changed, :math:`S(c)`. Producer channels and consumer channels
are nodes of a union-find; ``c`` is joined to every channel of :math:`S(c)`. The connected
components are the minimal removable units: a query channel moves its whole head's output (the
softmax mixes all of a head's dimensions, RoPE rotates within a head), a key or value channel of a
grouped-query KV head moves every query head that shares it, so a KV head and its query heads fall
into one unit; the three slices of GPT-2's fused ``c_attn`` fall into their head's unit; SwiGLU's
gate and up rows join the ``down_proj`` column they feed. Units with more than one consumer
column are heads (``kind = "heads"``), single columns are MLP neurons.

What is per architecture: only the attention modules' integer attributes that the forward pass
reads (:data:`HEAD_ATTRIBUTES`: ``num_heads`` for OPT and GPT-2, ``split_size`` for GPT-2's fused
projection); LLaMA's attention reshapes with ``-1`` heads and keeps ``num_key_value_groups`` when
whole KV groups go. A layer whose projections do not fit the producer/consumer pattern (no
projection reading or writing the stream, a producer channel that reaches no consumer, a unit without a
consumer column, units of unequal size) is a named :class:`UnsupportedArchitectureError`; a model outside
the supported families is refused before probing (:func:`optprune.hf._archs.check_supported`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from optprune.errors import UnsupportedLayerError

__all__ = ["HEAD_ATTRIBUTES", "HFGroup", "Member", "UnsupportedArchitectureError", "decoder_layers", "hf_groups",
           "is_projection"]

#: attention attributes the forward pass reads, and what they become after pruning (per architecture)
HEAD_ATTRIBUTES = {"num_heads": "query_heads", "num_attention_heads": "query_heads",
                   "num_key_value_heads": "kv_heads", "split_size": "query_width"}


class UnsupportedArchitectureError(UnsupportedLayerError):
    """A model whose layers the probe cannot split into producer/consumer dependency groups."""

    def __init__(self, model: str, why: str) -> None:
        self.why = why
        super().__init__(model, why, ["LlamaForCausalLM", "GPT2LMHeadModel", "OPTForCausalLM",
                                      "decoders of residual blocks with Linear/Conv1D projections"])


def is_projection(module: nn.Module) -> bool:
    """``nn.Linear`` or ``transformers``' ``Conv1D`` (weight stored transposed: ``(in, out)``)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _dims(module: nn.Module) -> tuple[int, int]:
    """(in, out) features of a projection."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return int(module.weight.shape[0]), int(module.weight.shape[1])


@dataclass
class Member:
    """One tensor axis of a group: ``role`` ``out`` (producer rows) or ``in`` (consumer columns) of ``module``.

    ``units[u]`` lists the channels of unit ``u`` along that axis.
    """

    module: str
    role: str
    units: list[list[int]]


@dataclass
class HFGroup:
    """The removable units behind one consumer (a block's attention heads, or its MLP neurons).

    ``unit_params`` is the number of parameters one unit owns (its producer rows with their biases and
    its consumer columns); ``head_dim`` and ``query_heads_per_unit`` are set for heads groups.
    """

    name: str
    layer: int
    kind: str
    consumer: str
    members: list[Member]
    width: int
    unit_params: int
    attention: str | None = None
    head_dim: int | None = None
    query_heads_per_unit: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role == "out"]

    @property
    def consumer_member(self) -> Member:
        return next(m for m in self.members if m.role == "in")


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The path and ``ModuleList`` of the decoder layers (``num_hidden_layers`` children), named error if none."""
    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and n:
            return name, module
    raise UnsupportedArchitectureError(type(model).__name__, f"no ModuleList of num_hidden_layers={n} decoder layers")


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x: object) -> object:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _roles(model: nn.Module, layer_path: str, layer: nn.Module, ids: torch.Tensor, hidden: int) -> tuple:
    """Producers and consumers of one layer (module doc), and the execution order of its projections."""
    projections = {n: m for n, m in layer.named_modules() if n and is_projection(m)}
    norms = [m for m in layer.modules() if type(m).__name__.endswith("Norm")]
    seen: dict[str, torch.Tensor] = {}
    order: list[str] = []
    stream: list[torch.Tensor] = []
    def layer_kw_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("hidden_states")
        stream.append(x)

    handles = [layer.register_forward_pre_hook(layer_kw_hook, with_kwargs=True)]
    for n in norms:
        handles.append(n.register_forward_hook(lambda m, a, out: stream.append(out)))
    for name, proj in projections.items():
        def pre(module: nn.Module, args: tuple, name: str = name) -> None:
            seen[name] = args[0]
            order.append(name)

        handles.append(proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    producers, consumers = [], []
    for name in dict.fromkeys(order):
        x = seen[name]
        reads_stream = any(s is not None and (x is s or (x.shape == s.shape and torch.equal(x, s))) for s in stream)
        if reads_stream and _dims(projections[name])[0] == hidden:
            producers.append(name)
        elif _dims(projections[name])[1] == hidden:
            consumers.append(name)
    if not producers or not consumers:
        raise UnsupportedArchitectureError(
            type(model).__name__, f"layer {layer_path}: no projection pair reading/writing the residual stream "
            f"(projections: {sorted(projections)})")
    return projections, producers, consumers, list(dict.fromkeys(order))


def hf_groups(model: nn.Module, seq_len: int = 5, seed: int = 0) -> list[HFGroup]:
    """The dependency groups of every decoder layer of ``model`` (module doc), in layer and execution order.

    The probe runs on a float64 copy with ``seq_len`` random tokens; the model itself is not changed.
    """
    from optprune.hf._archs import check_supported

    check_supported(model)
    probe = copy.deepcopy(model).double().eval()
    hidden = int(getattr(probe.config, "hidden_size", None) or probe.config.n_embd)
    layers_path, layers = decoder_layers(probe)
    gen = torch.Generator().manual_seed(seed)
    vocab = int(probe.config.vocab_size)
    base_ids = torch.randint(0, vocab, (1, seq_len), generator=gen)
    groups: list[HFGroup] = []
    for li, layer in enumerate(layers):
        lpath = f"{layers_path}.{li}"
        projections, producers, consumers, order = _roles(probe, lpath, layer, base_ids, hidden)
        uf = _UnionFind()
        first_consumer: dict[str, str] = {}
        for pname in producers:
            _, width = _dims(projections[pname])
            ids = base_ids.expand(width, seq_len)
            delta = torch.randn(width, seq_len, generator=gen, dtype=torch.float64) + 2.0
            later = [c for c in order[order.index(pname) + 1:] if c in consumers]
            base = _capture(probe, projections, later, base_ids)
            captured = _capture(probe, projections, later, ids, perturb=(projections[pname], delta))
            target = next((c for c in later if c in captured and
                           bool(((captured[c] - base[c]).abs() > 1e-9).any())), None)
            if target is None:
                raise UnsupportedArchitectureError(
                    type(model).__name__, f"layer {lpath}: producer {pname!r} feeds no consumer projection")
            first_consumer[pname] = target
            changed = (captured[target] - base[target]).abs().amax(dim=1) > 1e-9  # (width, consumer in)
            for c in range(width):
                cols = torch.nonzero(changed[c]).reshape(-1).tolist()
                uf.find(("out", pname, c))
                for j in cols:
                    uf.union(("out", pname, c), ("in", target, j))
        for cname in dict.fromkeys(first_consumer.values()):
            groups.append(_group_of(model, lpath, li, cname, [p for p in producers if first_consumer[p] == cname],
                                    projections, uf))
    return groups


def _capture(probe: nn.Module, projections: dict, names: list[str], ids: torch.Tensor,
             perturb: tuple[nn.Module, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Inputs of projections ``names`` in one forward pass; with ``perturb = (module, delta)`` batch element ``b``
    has ``delta[b]`` added to output channel ``b`` of ``module``."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for cname in names:
        def grab(module: nn.Module, args: tuple, cname: str = cname) -> None:
            x = args[0].detach()
            captured.setdefault(cname, x.reshape(ids.shape[0], -1, x.shape[-1]).clone())

        handles.append(projections[cname].register_forward_pre_hook(grab))
    if perturb is not None:
        module, delta = perturb

        def add(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            flat = out.reshape(ids.shape[0], -1, out.shape[-1]).clone()  # OPT's MLP runs on (batch*tokens, width)
            idx = torch.arange(delta.shape[0])
            flat[idx, :, idx] += delta
            return flat.reshape(out.shape)

        handles.append(module.register_forward_hook(add))
    try:
        with torch.no_grad():
            probe(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return captured


def _group_of(model: nn.Module, lpath: str, li: int, cname: str, producers: list[str], projections: dict,
              uf: _UnionFind) -> HFGroup:
    """Units of consumer ``cname`` from the union-find components (named error on an irregular pattern)."""
    comps: dict[object, dict[str, list[int]]] = {}
    n_in = _dims(projections[cname])[0]
    for j in range(n_in):
        comps.setdefault(uf.find(("in", cname, j)), {}).setdefault(cname, []).append(j)
    for pname in producers:
        for c in range(_dims(projections[pname])[1]):
            root = uf.find(("out", pname, c))
            if root not in comps:
                raise UnsupportedArchitectureError(
                    type(model).__name__, f"layer {lpath}: channel {c} of {pname!r} reaches no channel of {cname!r}")
            comps[root].setdefault(pname, []).append(c)
    units = sorted(comps.values(), key=lambda u: u[cname][0] if cname in u else -1)
    if any(cname not in u for u in units):
        raise UnsupportedArchitectureError(type(model).__name__, f"layer {lpath}: a unit without a consumer column")
    sizes = {tuple(len(u.get(p, [])) for p in (*producers, cname)) for u in units}
    if len(sizes) != 1:
        raise UnsupportedArchitectureError(
            type(model).__name__, f"layer {lpath}: units behind {cname!r} have unequal sizes {sorted(sizes)}")
    (size,) = sizes
    members = [Member(f"{lpath}.{p}", "out", [sorted(u.get(p, [])) for u in units]) for p in producers]
    members.append(Member(f"{lpath}.{cname}", "in", [sorted(u[cname]) for u in units]))
    hidden = _dims(projections[cname])[1]
    params = 0
    for p, k in zip(producers, size[:-1]):
        params += k * (hidden + (1 if getattr(projections[p], "bias", None) is not None else 0))
    params += size[-1] * hidden
    kind = "heads" if size[-1] > 1 else "neurons"
    attention = head_dim = per_unit = None
    if kind == "heads":
        attention = f"{lpath}.{cname}".rsplit(".", 1)[0]
        attn = model.get_submodule(attention)
        head_dim = int(getattr(attn, "head_dim", 0) or size[-1])
        per_unit = size[-1] // head_dim
    return HFGroup(name=f"{lpath}.{cname}", layer=li, kind=kind, consumer=f"{lpath}.{cname}", members=members,
                   width=len(units), unit_params=params, attention=attention, head_dim=head_dim,
                   query_heads_per_unit=per_unit)
