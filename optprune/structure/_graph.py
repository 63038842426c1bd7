"""Dependency groups: which structures must be removed together.

The model is traced with ``torch.fx``; every tensor's channel axis (features of a
Linear, channels of a Conv2d, the inner width of q/k/v) is described as a
concatenation of *segments* ``(space, factor)``: ``width(space)`` units, each
repeated ``factor`` times contiguously (a ``Flatten`` after a convolution turns
each channel into ``H*W`` consecutive features). Operations act on these spaces:

* ``Linear`` / ``Conv2d`` consume the input spaces (columns of W, the ``in``
  members) and create a new space (rows of W and b, the ``out`` member);
* ``BatchNorm`` and depthwise convolutions keep the space and add per-channel
  parameters (``channel`` members); element-wise activations, dropout and
  pooling keep it untouched;
* an element-wise addition or multiplication of two tensors (a residual
  connection) ties their spaces into one (union-find), as does calling a module
  twice;
* a concatenation along the channel axis concatenates the segment lists;
* the model's inputs and outputs, and operations that mix channels
  (``LayerNorm``, ``Softmax``, grouped convolutions) freeze the spaces they touch.

A *dependency group* is one class of tied spaces: removing unit ``j`` of a group
removes row ``j`` of every ``out`` member, column block ``j`` of every ``in``
member and entry ``j`` of every ``channel`` member. Attention heads of
:class:`MultiHeadSelfAttention` are one group per block (rows of q/k/v and
columns of the output projection in blocks of ``head_dim``). This follows the
dependency graph of Torch-Pruning (Fang et al. 2023, "DepGraph: Towards Any
Structural Pruning", CVPR), restricted to the layer types listed in
:data:`SUPPORTED`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import networkx as nx
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from optprune._unionfind import UnionFind
from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.structure._attention import MultiHeadSelfAttention

__all__ = ["Member", "Group", "dependency_groups", "infer_input_shape", "SUPPORTED"]

Role = Literal["out", "in", "channel"]

ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
)
POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
BATCHNORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
MIXING_MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.Softmax, nn.LogSoftmax)
ELEMENTWISE_FUNCTIONS = {
    torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu, F.leaky_relu, F.dropout, torch.sigmoid,
    F.elu, F.softplus, operator.neg, torch.neg, torch.abs,
}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "detach", "float", "neg", "abs"}
BINARY_FUNCTIONS = {operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, operator.iadd}
BINARY_METHODS = {"add", "sub", "mul", "add_", "mul_"}
FLATTEN_FUNCTIONS = {torch.flatten}
FLATTEN_METHODS = {"flatten", "view", "reshape"}
REDUCE_METHODS = {"mean", "sum", "amax"}
SHAPE_METHODS = {"size", "dim"}

SUPPORTED: tuple[str, ...] = (
    "Linear", "Conv2d (groups=1 or depthwise)", "BatchNorm1d", "BatchNorm2d", "MultiHeadSelfAttention",
    "Flatten / flatten / view(n, -1) / reshape(n, -1)", "element-wise activations and dropout",
    "max/avg pooling", "add / sub / mul (residual)", "cat", "mean / sum over non-channel axes",
    "LayerNorm, GroupNorm, Softmax (freeze the channels they mix)",
)


@dataclass(frozen=True)
class Member:
    """One slice of one module that a group's units own.

    Unit ``j`` owns indices ``offset + j*factor .. offset + (j+1)*factor - 1`` along
    the module's output axis (``out``), input axis (``in``) or per-channel axis
    (``channel``) of its parameters.
    """

    module: str
    role: Role
    offset: int = 0
    factor: int = 1

    def indices(self, units: torch.Tensor | list[int]) -> torch.Tensor:
        """Parameter indices owned by the given units, in unit order."""
        u = torch.as_tensor(units, dtype=torch.long).reshape(-1, 1)
        return (self.offset + u * self.factor + torch.arange(self.factor).reshape(1, -1)).reshape(-1)


@dataclass(frozen=True)
class Group:
    """Structures removed together: ``width`` units, each owning a slice of every member."""

    name: str
    width: int
    members: tuple[Member, ...]
    kind: str
    prunable: bool
    reason: str = ""

    def modules(self, role: Role | None = None) -> list[str]:
        return [m.module for m in self.members if role is None or m.role == role]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "width": self.width, "kind": self.kind, "prunable": self.prunable,
            "reason": self.reason,
            "members": [[m.module, m.role, m.offset, m.factor] for m in self.members],
        }


class _Tracer(fx.Tracer):
    """Standard tracer that also keeps the prunable attention block as one leaf."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, MultiHeadSelfAttention):
            return True
        return super().is_leaf_module(m, qualname)


def infer_input_shape(model: nn.Module) -> tuple[int, ...]:
    """Input shape without batch axis when the first parameterised module is a Linear.

    Convolutional models need an explicit ``input_shape`` (their spatial size is not
    stored in the weights).
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, MultiHeadSelfAttention)):
            raise InvalidParameterError(
                f"input_shape is required for a model whose first layer {name!r} is a "
                f"{type(module).__name__}; pass e.g. input_shape=(1, 8, 8); received None"
            )
    raise InvalidParameterError("input_shape could not be inferred: the model has no Linear or Conv2d layer")


class _Spaces:
    """Channel spaces, each with a width, members and a frozen flag, tied with :class:`UnionFind`."""

    def __init__(self) -> None:
        self.sets = UnionFind()
        self.width: list[int] = []
        self.frozen: list[str] = []
        self.members: list[list[Member]] = []
        self.kind: list[str] = []
        self.label: list[str] = []

    def __len__(self) -> int:
        return len(self.sets)

    def new(self, width: int, kind: str, frozen: str = "", label: str = "") -> int:
        self.label.append(label or f"space{len(self.sets)}")
        self.width.append(int(width))
        self.frozen.append(frozen)
        self.members.append([])
        self.kind.append(kind)
        return self.sets.add()

    def find(self, i: int) -> int:
        return self.sets.find(i)

    def union(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb and self.width[ra] != self.width[rb]:
            raise UnsupportedLayerError(
                where, f"tie of widths {self.width[ra]} and {self.width[rb]}", ["equal widths"]
            )
        merged = self.sets.union(ra, rb)  # the earlier space stays root: forward order
        if merged is None:
            return
        lo, hi = merged
        self.members[lo].extend(self.members[hi])
        self.frozen[lo] = self.frozen[lo] or self.frozen[hi]

    def freeze(self, i: int, reason: str) -> None:
        r = self.find(i)
        if not self.frozen[r]:
            self.frozen[r] = reason

    def add(self, i: int, member: Member) -> None:
        self.members[self.find(i)].append(member)


@dataclass(frozen=True)
class _Layout:
    """Channel axis of a tensor: segments ``(space, factor)`` along axis ``axis`` (>= 0) of ``ndim``."""

    segments: tuple[tuple[int, int], ...]
    axis: int
    ndim: int


def _normalise_dims(dims: object, ndim: int) -> list[int] | None:
    if dims is None:
        return None
    if isinstance(dims, int):
        dims = [dims]
    if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
        return None
    return sorted(d % ndim for d in dims)


class _Analysis:
    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        self.model = model
        self.gm = gm
        self.modules = dict(model.named_modules())
        self.spaces = _Spaces()
        self.layout: dict[str, _Layout | None] = {}
        self.out_space: dict[str, int] = {}  # module -> its output space (a reused module ties outputs)
        self.in_space: dict[str, _Layout] = {}
        self.head_space: dict[str, int] = {}

    # ----------------------------------------------------------------- helpers
    def size(self, layout: _Layout) -> int:
        return sum(self.spaces.width[s] * f for s, f in layout.segments)

    def shape(self, node: object) -> tuple[int, ...] | None:
        if not isinstance(node, fx.Node):
            return None
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            return None
        return tuple(int(d) for d in meta.shape)

    def fresh(self, node: fx.Node, kind: str, frozen: str = "", label: str = "") -> _Layout | None:
        """A new space for ``node``'s channel axis: dim 1 of NCHW tensors, the last dim otherwise."""
        shape = self.shape(node)
        if shape is None or len(shape) < 2:
            return None
        axis = 1 if len(shape) >= 4 else len(shape) - 1
        return _Layout(((self.spaces.new(shape[axis], kind, frozen, label or node.name), 1),), axis, len(shape))

    def freeze_layout(self, layout: _Layout | None, reason: str) -> None:
        if layout is not None:
            for s, _ in layout.segments:
                self.spaces.freeze(s, reason)

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if self.layout.get(a.name) is not None]

    def first_input(self, node: fx.Node) -> _Layout | None:
        args = [a for a in node.args if isinstance(a, fx.Node)]
        return self.layout.get(args[0].name) if args else None

    def unify(self, a: _Layout, b: _Layout, where: str) -> bool:
        if len(a.segments) != len(b.segments) or any(
            self.spaces.width[sa] != self.spaces.width[sb] or fa != fb
            for (sa, fa), (sb, fb) in zip(a.segments, b.segments)
        ):
            return False
        for (sa, _), (sb, _) in zip(a.segments, b.segments):
            self.spaces.union(sa, sb, where)
        return True

    def consume(self, name: str, layout: _Layout, expected: int) -> None:
        """Record ``name``'s input columns as ``in`` members of the segments of ``layout``."""
        if self.size(layout) != expected:
            raise UnsupportedLayerError(
                name, f"input of {self.size(layout)} channels for a layer taking {expected}", ["matching widths"]
            )
        if name in self.in_space:  # module called twice: its columns tie the two inputs
            if not self.unify(self.in_space[name], layout, name):
                self.freeze_layout(self.in_space[name], f"module {name!r} called on differently laid-out inputs")
                self.freeze_layout(layout, f"module {name!r} called on differently laid-out inputs")
            return
        self.in_space[name] = layout
        offset = 0
        for s, f in layout.segments:
            self.spaces.add(s, Member(name, "in", offset, f))
            offset += self.spaces.width[s] * f

    def produce(self, name: str, node: fx.Node, width: int, kind: str, axis: int) -> _Layout:
        shape = self.shape(node)
        ndim = len(shape) if shape else 2
        if name not in self.out_space:
            s = self.spaces.new(width, kind, label=name)
            self.spaces.add(s, Member(name, "out"))
            self.out_space[name] = s
        return _Layout(((self.out_space[name], 1),), axis % ndim, ndim)

    def channelwise(self, name: str, x: _Layout) -> _Layout:
        if any(f != 1 for _, f in x.segments):
            self.freeze_layout(x, f"{name!r} has per-feature parameters on flattened channels")
            return x
        offset = 0
        for s, _ in x.segments:
            self.spaces.add(s, Member(name, "channel", offset, 1))
            offset += self.spaces.width[s]
        return x

    # ----------------------------------------------------------------- nodes
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.layout[node.name] = self.visit(node)

    def visit(self, node: fx.Node) -> _Layout | None:
        if node.op == "placeholder":
            frozen = f"tied to the model input {node.name!r}"
            return self.fresh(node, "input", frozen=frozen, label=f"input:{node.name}")
        if node.op == "output":
            for arg in self.tensor_args(node):
                self.freeze_layout(self.layout[arg.name], "tied to the model output")
            return None
        if node.op == "get_attr":
            return None
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op == "call_function":
            return self.visit_function(node)
        if node.op == "call_method":
            return self.visit_method(node)
        raise UnsupportedLayerError(node.name, node.op, SUPPORTED)

    def visit_module(self, node: fx.Node) -> _Layout | None:
        name = str(node.target)
        module = self.modules[name]
        kind = type(module).__name__
        x = self.first_input(node)
        if isinstance(module, (nn.Linear, MultiHeadSelfAttention)) and (x is None or x.axis != x.ndim - 1):
            raise UnsupportedLayerError(name, f"{kind} on a tensor whose last axis is not its features", SUPPORTED)
        if isinstance(module, nn.Linear):
            self.consume(name, x, module.in_features)
            return self.produce(name, node, module.out_features, "neurons", -1)
        if isinstance(module, nn.Conv2d):
            if x is None or x.axis != 1 or x.ndim != 4:
                raise UnsupportedLayerError(name, "Conv2d on a tensor without NCHW layout", SUPPORTED)
            if module.groups == 1:
                self.consume(name, x, module.in_channels)
                return self.produce(name, node, module.out_channels, "channels", 1)
            if module.groups == module.in_channels == module.out_channels:
                return self.channelwise(name, x)
            self.freeze_layout(x, f"grouped convolution {name!r} (groups={module.groups})")
            return self.fresh(node, "channels", frozen=f"output of grouped convolution {name!r}")
        if isinstance(module, BATCHNORM_MODULES):
            if x is None or x.axis != 1:
                raise UnsupportedLayerError(name, f"{kind} on a tensor whose axis 1 is not its channels", SUPPORTED)
            return self.channelwise(name, x)
        if isinstance(module, MultiHeadSelfAttention):
            for proj in ("q_proj", "k_proj", "v_proj"):
                self.consume(f"{name}.{proj}", x, module.q_proj.in_features)
            if name not in self.head_space:
                heads = module.q_proj.out_features // module.head_dim
                h = self.spaces.new(heads, "heads", label=f"{name}.heads")
                for proj in ("q_proj", "k_proj", "v_proj"):
                    self.spaces.add(h, Member(f"{name}.{proj}", "out", 0, module.head_dim))
                self.spaces.add(h, Member(f"{name}.out_proj", "in", 0, module.head_dim))
                self.head_space[name] = h
            return self.produce(f"{name}.out_proj", node, module.out_proj.out_features, "neurons", -1)
        if isinstance(module, ELEMENTWISE_MODULES):
            return x
        if isinstance(module, POOL_MODULES):
            if x is not None and x.axis != 1:
                raise UnsupportedLayerError(name, f"{kind} on a channels-last tensor", SUPPORTED)
            return x
        if isinstance(module, nn.Flatten):
            return self.flatten(node, x)
        if isinstance(module, MIXING_MODULES):
            self.freeze_layout(x, f"{kind} {name!r} mixes channels")
            return self.fresh(node, "neurons", frozen=f"output of {kind} {name!r}")
        raise UnsupportedLayerError(name, kind, SUPPORTED)

    def flatten(self, node: fx.Node, x: _Layout | None) -> _Layout | None:
        if x is None:
            return None
        in_shape, out_shape = self.shape(node.args[0]), self.shape(node)
        if in_shape is None or out_shape is None:
            raise UnsupportedLayerError(node.name, "reshape without known shapes", SUPPORTED)
        if in_shape == out_shape:
            return x
        if len(out_shape) == 2 and out_shape[0] == in_shape[0] and x.axis == 1:
            # channels-first: each channel becomes prod(spatial) consecutive features
            spatial = 1
            for d in in_shape[2:]:
                spatial *= d
            return _Layout(tuple((s, f * spatial) for s, f in x.segments), 1, 2)
        self.freeze_layout(x, f"reshape {node.name!r} from {in_shape} to {out_shape} interleaves channels")
        return self.fresh(node, "neurons", frozen=f"output of reshape {node.name!r}")

    def binary(self, node: fx.Node) -> _Layout | None:
        tensors = self.tensor_args(node)
        out_shape = self.shape(node)
        full: list[_Layout] = []
        for t in tensors:
            lay, shp = self.layout[t.name], self.shape(t)
            if shp == out_shape:
                full.append(lay)
            elif shp is None or out_shape is None or len(shp) != len(out_shape) or shp[lay.axis] != 1:
                self.freeze_layout(lay, f"broadcast in {node.name!r}")
        if not full:
            return self.fresh(node, "neurons", frozen=f"broadcast output of {node.name!r}") if tensors else None
        base = full[0]
        for other in full[1:]:
            if not self.unify(base, other, node.name):
                self.freeze_layout(base, f"mismatched layouts in {node.name!r}")
                self.freeze_layout(other, f"mismatched layouts in {node.name!r}")
        return base

    def visit_function(self, node: fx.Node) -> _Layout | None:
        target = node.target
        label = getattr(target, "__name__", str(target))
        if target in BINARY_FUNCTIONS:
            return self.binary(node)
        if target in ELEMENTWISE_FUNCTIONS:
            return self.first_input(node)
        if target in FLATTEN_FUNCTIONS:
            return self.flatten(node, self.first_input(node))
        if target is torch.cat:
            return self.cat(node)
        if target in (operator.getitem, getattr) and self.shape(node) is None:
            return None  # indexing a shape or a tuple
        raise UnsupportedLayerError(node.name, f"function {label}", SUPPORTED)

    def visit_method(self, node: fx.Node) -> _Layout | None:
        method = str(node.target)
        x = self.first_input(node)
        if method in SHAPE_METHODS:
            return None
        if method in ELEMENTWISE_METHODS:
            return x
        if method in BINARY_METHODS:
            return self.binary(node)
        if method in FLATTEN_METHODS:
            return self.flatten(node, x)
        if method in REDUCE_METHODS and x is not None:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
            reduced = _normalise_dims(dims, x.ndim)
            if reduced is not None and x.axis not in reduced and 0 not in reduced:
                if keep:
                    return x
                axis = x.axis - sum(1 for d in reduced if d < x.axis)
                return _Layout(x.segments, axis, x.ndim - len(reduced))
            self.freeze_layout(x, f"reduction {node.name!r} over the channel or batch axis")
            return self.fresh(node, "neurons", frozen=f"output of reduction {node.name!r}")
        raise UnsupportedLayerError(node.name, f"method .{method}()", SUPPORTED)

    def cat(self, node: fx.Node) -> _Layout | None:
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        layouts = [self.layout.get(p.name) if isinstance(p, fx.Node) else None for p in parts]
        if not layouts or any(lay is None for lay in layouts):
            raise UnsupportedLayerError(node.name, "cat of non-tensors", SUPPORTED)
        first = layouts[0]
        if all(lay.axis == first.axis and lay.ndim == first.ndim for lay in layouts) and dim % first.ndim == first.axis:
            return _Layout(tuple(seg for lay in layouts for seg in lay.segments), first.axis, first.ndim)
        for other in layouts[1:]:
            if not self.unify(first, other, node.name):
                self.freeze_layout(first, f"mismatched layouts in {node.name!r}")
                self.freeze_layout(other, f"mismatched layouts in {node.name!r}")
        return first


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # torch.fx raises a variety of errors on dynamic control flow
        raise UnsupportedLayerError(
            type(model).__name__, f"model that torch.fx cannot trace ({exc})", ["fx-traceable models"]
        ) from exc
    return fx.GraphModule(model, graph)


def dependency_groups(
    model: nn.Module, input_shape: tuple[int, ...] | list[int] | None = None
) -> tuple[list[Group], nx.DiGraph]:
    """Dependency groups of ``model`` in forward order, and its data-flow graph.

    ``input_shape`` is one input without the batch axis (inferred for models that
    start with a Linear). Returns ``(groups, graph)``: ``graph`` has one node per
    traced operation (named by the module's qualified name for module calls, by
    the fx node name otherwise; attributes ``op``, ``target``, ``type``, ``shape``) and one edge
    per tensor passed on, labelled with the groups its channel axis belongs to;
    ``graph.graph["groups"]`` maps group names to :class:`Group` objects and
    ``graph.graph["input_shape"]`` records the shape used.
    """
    shape = tuple(int(d) for d in (input_shape if input_shape is not None else infer_input_shape(model)))
    gm = _trace(model)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros((2, *shape), dtype=dtype))
    except Exception as exc:
        raise InvalidParameterError(
            f"input_shape {shape} does not fit the model: running it raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)

    analysis = _Analysis(model, gm)
    analysis.run()
    spaces = analysis.spaces

    groups: list[Group] = []
    root_name: dict[int, str] = {}
    used: set[str] = set()
    for i in range(len(spaces)):
        if spaces.find(i) != i:
            continue
        members = tuple(spaces.members[i])
        outs = [m.module for m in members if m.role == "out"]
        if spaces.kind[i] == "heads" and outs:
            name = outs[0].rsplit(".", 1)[0] + ".heads"
        elif outs:
            name = outs[0]
        else:
            name = spaces.label[i]
        if name in used:
            name = f"{name}#{i}"
        used.add(name)
        root_name[i] = name
        reason = spaces.frozen[i] or ("" if outs else "no layer produces these channels")
        groups.append(
            Group(name, spaces.width[i], members, spaces.kind[i], prunable=not reason, reason=reason)
        )

    graph = nx.DiGraph(input_shape=list(shape), groups={g.name: g for g in groups})
    key: dict[str, str] = {}  # fx node -> graph node: a module's qualified name on its first call
    for node in gm.graph.nodes:
        module = analysis.modules.get(str(node.target)) if node.op == "call_module" else None
        label = str(node.target) if module is not None and str(node.target) not in graph else node.name
        key[node.name] = label
        graph.add_node(
            label, op=node.op, target=str(node.target),
            type=type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target)),
            shape=analysis.shape(node),
        )
        for arg in node.all_input_nodes:
            layout = analysis.layout.get(arg.name)
            names = [root_name[spaces.find(s)] for s, _ in layout.segments] if layout else []
            graph.add_edge(key[arg.name], label, groups=names)
    return groups, graph
