r"""Complete verification by branch and bound on optimised linear bounds (β-CROWN style, CPU).

Decides one VNN-LIB case (an input box and a disjunction of output
conjunctions ``C y + d >= 0``): ``sat`` if some point of the box meets a
conjunction, ``unsat`` if none can.

Algorithm (Wang et al. 2021, "Beta-CROWN"; Bunel et al. 2020, "Branch and
bound for piecewise linear neural network verification"):

1. Root: CROWN bounds of every layer (:func:`optprune.verification.bounds.linear_bounds`),
   tightened by α-CROWN layer by layer
   (:func:`optprune.verification.alpha_crown.alpha_intermediate_bounds`); one subdomain
   per conjunction, whose value is the α-optimised upper bound of its slack.
   A subdomain whose (sound, float64, padded) upper bound is below 0 is closed.
2. A projected-gradient attack (:func:`optprune.verification.attack.pgd_attack`) on the
   conjunctions still open; every candidate point goes through ``confirm``.
3. Loop: take the ``batch`` open subdomains with the largest bound (worst
   first; but the deepest first once the open subdomains fill more than ``1 - DEPTH_FIRST_SHARE`` of the
   memory bound: depth first, the search goes on there instead of giving up), split each in two on

   * a ReLU neuron (``z >= 0`` / ``z <= 0``) chosen by filtered smart
     branching (De Palma et al. 2021; ``BaBSettings.fsb_k``): the ``fsb_k``
     best neurons of each layer by the BaBSR intercept score
     ``max(mu_j, 0) (-l_j u_j / (u_j - l_j))`` (Bunel et al. 2020; ``mu_j`` the
     back-substitution coefficient of ``relu(z_j)``) are each split once with
     the parent's slopes and the one whose worse child has the smallest bound is
     taken (``fsb_k = 0``: the best BaBSR score alone); or
   * for networks with at most ``INPUT_SPLIT_MAX`` inputs, an input
     coordinate: each input is bisected on trial and the one whose worse half
     has the smallest CROWN bound is taken, among the inputs at most
     ``INPUT_SPLIT_MAX_ASPECT`` times thinner than the widest, and the widest
     itself when no trial gains more than rounding noise
     (:func:`_split_inputs`: without both rules the search could stall);

   optionally (``BaBSettings.intermediate``; always for input splits) recompute
   the children's intermediate bounds above the split (CROWN, or β-CROWN's optimised slopes and
   multipliers; intersected with the parent's, which the children inherit),
   close empty children (a lower bound above an upper bound), and optimise the
   children's slopes ``alpha`` and split multipliers ``beta`` jointly,
   warm-started from the parent. The maximising vertex of each open
   child's bound is tried as a counterexample.
4. A subdomain with every ReLU fixed is a polytope on which the network is
   affine: one LP over the input (through the solver protocol, HiGHS by
   default) gives its exact maximum; its point is
   tried as a counterexample, and its duals become the ``beta`` of a sound
   float64 bound (weak duality), so even leaves are closed by the same bound
   evaluation, never by the LP's word.
5. With a ``helper`` (the MIP process of a cooperative race,
   :mod:`optprune.verification.coop`), once per round: conjunctions the helper
   proved are dropped, every subtree below a subdomain it closed is dropped
   (children inherit their ancestor's ``tag``), conjunctions this search has
   closed are published, and when the helper is idle one open subdomain is
   handed to it (``BaBSettings.handoff``: ``top``, the largest bound; ``deep``,
   the most splits; never one it gave up on, though its children may be). A
   handed subdomain stays in this search's pool until it is closed by either,
   but is split only when nothing else is open, and so are the subdomains of
   the conjunction the helper's whole-conjunction MIP works on: the two share
   the work instead of repeating it. The helper's answers are proofs of their own
   (:mod:`optprune.verification.subdomain_mip`).

6. Given two or more threads and no helper, the loop of step 3 runs in forked processes, one per thread
   (:mod:`optprune.verification.bab_workers`, ``BaBSettings.parallel``): the open subdomains are dealt out
   as pieces and every piece must be closed for ``unsat``.

Every closing bound is evaluated in float64 with outward padding
(:func:`optprune.verification.alpha_crown.pad_bound`). The result is ``unsat`` only when
every subdomain of every conjunction is closed; ``sat`` only from a point that
``confirm`` accepts; ``unknown`` on time out or when more than
``max_domains`` subdomains or ``max_memory`` GiB are open (memory bounds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from optprune.errors import InvalidParameterError
from optprune.milp import MILP, Sense
from optprune.network import Network
from optprune.solvers import SolveOptions, Status, get_backend
from optprune.verification.alpha_crown import alpha_intermediate_bounds, optimise_spec, split_intermediate_bounds
from optprune.verification.attack import pgd_attack
from optprune.verification.bounds import Bounds, linear_bounds
from optprune.verification.counterexample import case_confirm
from optprune.verification.crown import (
    DTYPE,
    TorchNetwork,
    default_alpha,
    intermediate_bounds,
    pad_bound,
    spec_bound,
    torch_threads,
    with_linear_output,
)
from optprune.verification.subdomain_mip import Subdomain
from optprune.verification.verdicts import check_bounds_contain
from optprune.verification.vnnlib import VNNLibCase

if TYPE_CHECKING:
    from optprune.verification.coop import Helper

__all__ = ["BaBResult", "BaBSettings", "bab_verify_case", "INPUT_SPLIT_MAX", "SPLITS"]

LEAF_LP_SOLVER = "highs"  # the backend of the leaves' LPs (any backend that reports row duals)
INPUT_SPLIT_MAX = 10  # networks with at most this many inputs are split on inputs under split="auto"
INPUT_SPLIT_MIN_GAIN = 1e-6  # input splitting: a smaller look-ahead gain (relative) is noise; split the widest input
INPUT_SPLIT_MAX_ASPECT = 64.0  # input splitting: an input this much thinner (relative) than the widest is not split
SPLITS = ("auto", "relu", "input")
HANDOFFS = ("top", "deep")
PARALLEL = ("threads", "workers")
INTERMEDIATE = ("root", "crown", "beta")
DEPTH_FIRST_SHARE = 0.25  # the last quarter of the memory bound is searched depth first (module doc, step 3)

Confirm = Callable[[np.ndarray], tuple[bool, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BaBSettings:
    """One default configuration (no per-instance tuning); every field is validated.

    ``batch``: subdomains split per step (2 ``batch`` children bounded together);
    ``max_domains``: open subdomains allowed before giving up, and ``max_memory``: GiB that the open
    subdomains may hold (memory bounds; the second is what binds on wide nets: with ReLU splits and no
    recomputed bounds a subdomain stores its splits, slopes and multipliers only (:class:`_Root`): 29 KB on
    oval21 base, 56-61 KB on wide and deep, 9 KB on mnistfc 256x4; four times as many with its bounds
    and box);
    ``root_iters`` / ``iters``: projected-Adam steps at the root / per child;
    ``intermediate``: the children's intermediate bounds after a split: ``root``, the root's (but for the split
    neurons); ``crown``, recomputed by CROWN for the layers above the split (on mnistfc 256x2 it halves the
    subdomains per second and closed fewer instances); ``beta``, optimised there per child as in β-CROWN
    (:func:`optprune.verification.alpha_crown.split_intermediate_bounds`, ``iters`` steps). ``root`` stays the
    default by measurement (``benchmarks/bab_depth.py --settings workers workers_beta``, results
    ``bab_intermediate_beta_*_60s``): ``beta`` bounds 0.01x the subdomains per second on mnistfc 256x4 (9.3
    against 914 a second) and 0.5 against 227 on oval21 wide img9214, and decides nothing more;
    ``fsb_k``: filtered smart branching over the ``fsb_k`` best BaBSR candidates per layer (0: BaBSR alone).
    The default 3 is what measured better (``benchmarks/bab_branching.py``, results
    ``bab_branching_256x4_30s`` and ``bab_branching_256x2_120s``): on mnistfc
    256x4 at 30 s it closes prop_13_0.03 in 331 subdomains where BaBSR is still
    open after 3999, and decides nothing less by branching, at 0.64x BaBSR's
    subdomains per CPU second; on the five 256x2 instances that need branching
    both decide 5/5 (prop_1_0.03: 4759 subdomains against 3199).
    ``parallel``: how a search given two or more threads (and no helper) uses them: ``threads``, torch's
    intra-op threads in one search; ``workers``, one forked process per thread, each with one torch thread,
    the open subdomains dealt out between them as pieces (:mod:`optprune.verification.bab_workers`). The
    default ``workers`` is what measured better (``benchmarks/bab_depth.py --settings threads workers``, results
    ``bab_pieces_*_60s``, same run, 2 cores): subdomains per second 1.65x on the two mnistfc 256x4 instances
    measured, 1.42x on oval21 base img7779, 1.24x on wide img6762, 0.83x on deep img386 (its larger
    convolutions use torch's threads well).
    """

    split: str = "auto"
    batch: int = 64
    max_domains: int = 200_000
    max_memory: float = 3.0
    root_iters: int = 30
    iters: int = 15
    intermediate: str = "root"
    attack: bool = True
    fsb_k: int = 3
    handoff: str = "top"
    parallel: str = "workers"

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise InvalidParameterError(f"BaBSettings.split must be one of {SPLITS}, got {self.split!r}")
        if self.parallel not in PARALLEL:
            raise InvalidParameterError(f"BaBSettings.parallel must be one of {PARALLEL}, got {self.parallel!r}")
        if self.intermediate not in INTERMEDIATE:
            raise InvalidParameterError(
                f"BaBSettings.intermediate must be one of {INTERMEDIATE}, got {self.intermediate!r}")
        if self.handoff not in HANDOFFS:
            raise InvalidParameterError(f"BaBSettings.handoff must be one of {HANDOFFS}, got {self.handoff!r}")
        for name in ("batch", "max_domains"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameterError(f"BaBSettings.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.max_memory, (int, float)) and math.isfinite(self.max_memory) and self.max_memory > 0):
            raise InvalidParameterError(f"BaBSettings.max_memory must be a number of GiB > 0, got {self.max_memory!r}")
        for name in ("root_iters", "iters", "fsb_k"):
            if int(getattr(self, name)) < 0:
                raise InvalidParameterError(f"BaBSettings.{name} must be an integer >= 0, got {getattr(self, name)!r}")


@dataclass
class BaBResult:
    """Verdict of :func:`bab_verify_case` with the size of the search."""

    verdict: str
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    decided_by: str = ""  # bounds (closed at the root), attack, bab
    domains: int = 0  # subdomains bounded (the root ones included)
    max_open: int = 0
    rounds: int = 0
    shrink_rounds: int = 0  # of those, rounds near the memory bound that split the deepest subdomains first
    lp_leaves: int = 0
    handed: int = 0  # subdomains handed to a helper MIP
    helper_closed: int = 0  # of those, closed by it (their whole subtrees dropped here)
    helper_conjunctions: int = 0  # conjunctions the helper proved on its own
    open_bound: float | None = None  # at a time limit: the largest bound still open (progress towards a proof)
    closed_conjunctions: list = field(default_factory=list)  # with no open subdomain left (root ones included)
    root_upper: list = field(default_factory=list)  # per conjunction, the α-CROWN upper bound of its slack
    n_unstable: int = 0
    split: str = "relu"
    message: str = ""
    # bab: the loop; of it, bab_branch (scores, FSB), bab_bound (α/β optimisation), bab_share (a helper MIP's board);
    # with forked workers (``BaBSettings.parallel``) the loop stages are summed over the workers
    stages: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "bab": 0.0, "bab_branch": 0.0,
                                                  "bab_bound": 0.0, "bab_share": 0.0})
    time_s: float = 0.0
    workers: int = 1  # processes that searched (BaBSettings.parallel)
    loop_wall_s: float = 0.0  # wall-clock seconds of the loop (``stages["bab"]`` with one process)

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict, "decided_by": self.decided_by, "domains": self.domains,
            "max_open": self.max_open, "rounds": self.rounds, "lp_leaves": self.lp_leaves,
            "handed": self.handed, "helper_closed": self.helper_closed,
            "helper_conjunctions": self.helper_conjunctions,
            "open_bound": None if self.open_bound is None else round(self.open_bound, 6),
            "closed_conjunctions": self.closed_conjunctions,
            "root_upper": [round(float(u), 6) for u in self.root_upper], "unstable_neurons": self.n_unstable,
            "split": self.split, "message": self.message,
            "stages": {k: round(v, 4) for k, v in self.stages.items()}, "time_s": round(self.time_s, 4),
            "workers": self.workers, "loop_wall_s": round(self.loop_wall_s, 4),
        }


@dataclass
class _Domains:
    """A batch of subdomains as stacked tensors (one row per subdomain)."""

    spec: torch.Tensor  # (N,) conjunction index
    lowers: list  # per hidden layer (N, n_j) float64
    uppers: list
    splits: list  # per hidden layer (N, n_j) int8
    alpha: list  # per hidden layer (N, m, n_j) float32 or None
    beta: list
    x_lo: torch.Tensor  # (N, n_in)
    x_hi: torch.Tensor
    value: torch.Tensor  # (N,) sound upper bound of the conjunction's slack
    tag: torch.Tensor  # (N,) int64: id of the ancestor handed to a helper MIP (module doc, step 5), else -1

    def __len__(self) -> int:
        return int(self.spec.shape[0])

    def take(self, idx: torch.Tensor) -> _Domains:
        def sel(v):
            if isinstance(v, list):
                return [None if t is None else t[idx] for t in v]
            return v[idx]

        return _Domains(**{f.name: sel(getattr(self, f.name)) for f in fields(self)})

    @staticmethod
    def cat(parts: list[_Domains]) -> _Domains:
        parts = [p for p in parts if len(p)]

        def join(vs):
            if isinstance(vs[0], list):
                return [None if vs[0][j] is None else torch.cat([v[j] for v in vs]) for j in range(len(vs[0]))]
            return torch.cat(vs)

        return _Domains(**{f.name: join([getattr(p, f.name) for p in parts]) for f in fields(_Domains)})


_ROOT_FIELDS = ("lowers", "uppers", "x_lo", "x_hi")


@dataclass(frozen=True)
class _Root:
    """What every subdomain of a ReLU-split search shares when intermediate bounds are not recomputed.

    Its input box is the property's, and its intermediate bounds are the root's but for the neurons it
    splits (lower bound 0 on the active side, upper bound 0 on the inactive: :func:`_split_relu`), so
    the pool need not store them: rebuilt from the splits when taken out, they are the same tensors. On
    oval21 base this is about three quarters of a subdomain's bytes (the input box alone 49 KB of 127 KB),
    so about four times as many open subdomains fit in the memory bound.
    """

    lowers: list  # per hidden layer (1, n_j) float64
    uppers: list
    x_lo: torch.Tensor  # (1, n_in)
    x_hi: torch.Tensor

    def rebuild(self, dom: _Domains) -> _Domains:
        n = len(dom)
        zero = torch.zeros((), dtype=DTYPE)
        dom.lowers = [torch.where(sp_ > 0, zero, lo.expand(n, -1)) for sp_, lo in zip(dom.splits, self.lowers)]
        dom.uppers = [torch.where(sp_ < 0, zero, hi.expand(n, -1)) for sp_, hi in zip(dom.splits, self.uppers)]
        dom.x_lo, dom.x_hi = self.x_lo.expand(n, -1), self.x_hi.expand(n, -1)  # read-only views: never written
        return dom


class _Pool:
    """The open subdomains, kept in the slots of tensors allocated once (module doc, step 3).

    A round takes its ``batch`` parents out by index and writes the children into free slots, so a round
    copies only what it touches. Re-stacking the pool instead (take the rest, then concatenate the
    children) copies every open subdomain twice a round: with thousands open on oval21 that was about a
    quarter of the round. The slots are allocated once for the memory bound (``torch.empty``: the operating
    system backs a page only when it is first written), since growing by copying faulted in gigabytes at a
    time on the wide nets (a round of 20 s past the time limit). With a :class:`_Root`, the fields it
    rebuilds are not stored (``data`` holds None and empty boxes there) and :meth:`pop` and :meth:`open`
    rebuild them.
    """

    def __init__(self, first: _Domains, capacity: int, root: _Root | None = None) -> None:
        self.capacity = max(int(capacity), len(first))
        self.root = root
        self.data = _Domains(**{f.name: self._alloc(getattr(first, f.name), f.name) for f in fields(_Domains)})
        self.alive = torch.zeros(self.capacity, dtype=torch.bool)
        self.n = 0
        self.push(first)

    def _alloc(self, v, name: str = ""):
        if self.root is not None and name in _ROOT_FIELDS:
            return [None] * len(v) if isinstance(v, list) else torch.empty((self.capacity, 0), dtype=v.dtype)
        if isinstance(v, list):
            return [None if t is None else self._alloc(t) for t in v]
        return torch.empty((self.capacity, *v.shape[1:]), dtype=v.dtype)

    @staticmethod
    def row_bytes(dom: _Domains, compact: bool = False) -> int:
        """Bytes of one subdomain, counting split multipliers like the slopes where ``dom`` has none yet;
        ``compact``: without the fields a :class:`_Root` rebuilds."""
        per = 0
        for f in fields(_Domains):
            if compact and f.name in _ROOT_FIELDS:
                continue
            v = getattr(dom, f.name)
            for t in v if isinstance(v, list) else [v]:
                if t is not None:
                    per += t.element_size() * t[0].numel()
        per += sum(a.element_size() * a[0].numel()
                   for a, b_ in zip(dom.alpha, dom.beta) if a is not None and b_ is None)
        return per

    def __len__(self) -> int:
        return self.n

    def open_bytes(self) -> int:
        """Bytes that the open subdomains hold."""
        return self.row_bytes(self.data) * self.n

    def key(self) -> torch.Tensor:
        """Each slot's bound, ``-inf`` for a free slot (never chosen while an open one is left)."""
        return torch.where(self.alive, self.data.value, torch.full_like(self.data.value, -math.inf))

    def open(self) -> _Domains:
        """The open subdomains as one batch (a copy)."""
        return self._full(self.data.take(torch.nonzero(self.alive).flatten()))

    def pop(self, slots: torch.Tensor) -> _Domains:
        """Take the subdomains of ``slots`` (open ones) out of the pool."""
        out = self._full(self.data.take(slots))
        self.alive[slots] = False
        self.n -= int(slots.numel())
        return out

    def _full(self, dom: _Domains) -> _Domains:
        return dom if self.root is None else self.root.rebuild(dom)

    def push(self, kids: _Domains) -> None:
        """Write ``kids`` into free slots (the caller keeps room: see the memory bound in the loop)."""
        if len(kids) == 0:
            return
        free = torch.nonzero(~self.alive).flatten()
        if free.numel() < len(kids):
            raise RuntimeError(f"BaB pool full: {len(kids)} subdomains for {free.numel()} free slots")
        slots = free[: len(kids)]
        for f in fields(_Domains):
            if self.root is not None and f.name in _ROOT_FIELDS:
                continue  # rebuilt from the splits when taken out
            dst, src = getattr(self.data, f.name), getattr(kids, f.name)
            if not isinstance(dst, list):
                dst[slots] = src
                continue
            for j, (d_, s_) in enumerate(zip(dst, src)):
                if d_ is None and s_ is None:
                    continue
                if d_ is None:  # the slots so far had none: their implicit value, made explicit
                    d_ = dst[j] = torch.empty((self.capacity, *s_.shape[1:]), dtype=s_.dtype)
                    live = torch.nonzero(self.alive).flatten()
                    if live.numel():
                        d_[live] = self._implicit(f.name, j, self._full(self.data.take(live)), s_.shape[1:],
                                                  s_.dtype)
                d_[slots] = s_ if s_ is not None else self._implicit(f.name, j, kids, d_.shape[1:], d_.dtype)
        self.alive[slots] = True
        self.n += len(kids)

    @staticmethod
    def _implicit(name: str, j: int, dom: _Domains, shape, dtype) -> torch.Tensor:
        """What ``None`` stands for: zero split multipliers, CROWN's adaptive slopes (as optimise_spec starts)."""
        if name == "beta":
            return torch.zeros((len(dom), *shape), dtype=dtype)
        return default_alpha(dom.lowers[j], dom.uppers[j]).unsqueeze(1).expand(-1, shape[0], -1).to(dtype).clone()


class _Spec:
    """Conjunction rows padded to a common count ``m`` (a repeated row leaves the minimum unchanged)."""

    def __init__(self, case: VNNLibCase) -> None:
        m = max(int(np.asarray(c.C).shape[0]) for c in case.disjuncts)
        Cs, ds = [], []
        for conj in case.disjuncts:
            C = np.atleast_2d(np.asarray(conj.C, dtype=np.float64))
            d = np.asarray(conj.d, dtype=np.float64).reshape(-1)
            pad = m - C.shape[0]
            Cs.append(np.vstack([C, np.repeat(C[:1], pad, axis=0)]))
            ds.append(np.concatenate([d, np.repeat(d[:1], pad)]))
        self.m = m
        self.C = torch.as_tensor(np.stack(Cs), dtype=DTYPE)
        self.d = torch.as_tensor(np.stack(ds), dtype=DTYPE)
        self.disjuncts = case.disjuncts
        self.box_width = torch.as_tensor(np.asarray(case.upper, np.float64) - np.asarray(case.lower, np.float64))


def bab_verify_case(
    net: Network,
    case: VNNLibCase,
    *,
    deadline: float,
    confirm: Confirm | None = None,
    bounds: Bounds | None = None,
    settings: BaBSettings = BaBSettings(),
    helper: Helper | None = None,
    threads: int = 1,
) -> BaBResult:
    """Decide ``case`` on ``net`` by branch and bound (module doc) before ``deadline`` (``time.perf_counter``).

    ``confirm(x) -> (ok, x_clipped, y)`` re-checks a candidate counterexample
    (default: clipped to the box, float64 forward pass of ``net``); ``bounds``
    are sound per-layer bounds over the box to start from (default: CROWN);
    ``helper`` a MIP working on subdomains beside this search (module doc, step 5); ``threads``: torch's
    threads for the batched products (1 beside another engine: one core each).
    """
    start = time.perf_counter()
    confirm = confirm or case_confirm(net, None, case)
    net, bounds = with_linear_output(net, bounds)
    workers = int(threads) if settings.parallel == "workers" and helper is None else 1
    with torch_threads(threads):
        return _bab(net, case, deadline, confirm, bounds, settings, start, helper, workers)


def _bab(net, case, deadline, confirm, bounds, s: BaBSettings, start, helper: Helper | None = None,
         workers: int = 1) -> BaBResult:
    tn = TorchNetwork.from_network(net)
    spec = _Spec(case)
    P = spec.C.shape[0]
    res = BaBResult(verdict="unknown")
    use_input = s.split == "input" or (s.split == "auto" and net.input_size <= INPUT_SPLIT_MAX)
    res.split = "input" if use_input else "relu"

    # ---- root bounds
    t = time.perf_counter()
    x_lo = torch.as_tensor(np.asarray(case.lower, dtype=np.float64)).reshape(1, -1)
    x_hi = torch.as_tensor(np.asarray(case.upper, dtype=np.float64)).reshape(1, -1)
    b = bounds if bounds is not None else linear_bounds(net, case.lower, case.upper)
    if s.root_iters > 0:
        b = alpha_intermediate_bounds(tn, x_lo, x_hi, b, iters=s.root_iters, deadline=deadline)
    K = tn.n_layers
    res.n_unstable = int(sum(((lo < 0) & (hi > 0)).sum() for (lo, hi), r in zip(b[:-1], tn.relu[:-1]) if r))
    roots = _Domains(
        spec=torch.arange(P),
        lowers=[torch.as_tensor(lo, dtype=DTYPE).unsqueeze(0).repeat(P, 1) for lo, _ in b[:-1]],
        uppers=[torch.as_tensor(hi, dtype=DTYPE).unsqueeze(0).repeat(P, 1) for _, hi in b[:-1]],
        splits=[torch.zeros(P, n, dtype=torch.int8) for n in tn.hidden_widths],
        alpha=[None] * (K - 1), beta=[None] * (K - 1),
        x_lo=x_lo.repeat(P, 1), x_hi=x_hi.repeat(P, 1), value=torch.zeros(P, dtype=DTYPE),
        tag=torch.full((P,), -1, dtype=torch.long),
    )
    roots, sb = _bound(tn, spec, roots, s.root_iters, use_beta=False, deadline=deadline)
    res.stages["bounds"] += time.perf_counter() - t
    res.domains = P
    res.root_upper = roots.value.tolist()
    still = ~(roots.value < 0)  # NaN stays open: only a bound that is truly below 0 closes anything
    open_ = roots.take(torch.nonzero(still).flatten())
    if len(open_) == 0:
        return _done(res, "unsat", "bounds", start)
    share = _Share(helper, P, net, b, case, s.handoff) if helper is not None else None
    if share is not None:
        share.publish(open_, set())

    # ---- cheap candidates, then the attack
    hit = _try_vertices(net, spec, open_, sb.lam0[still], confirm)
    if hit is not None:
        return _sat(res, hit, "bab", start)
    if s.attack:
        t = time.perf_counter()
        conjs = [spec.disjuncts[int(i)] for i in open_.spec]
        att = pgd_attack(net, case.lower, case.upper, conjs, start=(case.lower + case.upper) / 2,
                         time_limit=max(0.5, min(10.0, 0.05 * (deadline - time.perf_counter()))))
        res.stages["attack"] += time.perf_counter() - t
        if att.found:
            ok, x, y = confirm(att.x)
            if ok:
                return _sat(res, (x, y), "attack", start)

    if workers > 1 and share is None and not use_input:
        from optprune.verification.bab_workers import search_in_workers

        out = search_in_workers(_search, _Presplit, workers, tn, net, spec, roots, open_, res, deadline, confirm, s,
                                start)
        if out is not None:
            res, verdict, by, point = out
            return _sat(res, point, by, start) if point is not None else _done(res, verdict, by, start)
    return _search(tn, net, spec, roots, open_, res, deadline, confirm, s, start, share, use_input)


@dataclass
class _Presplit:
    """Stop the loop once ``until`` subdomains are open and hand them over (``pool``, with ``stuck``)."""

    until: int
    pool: _Domains | None = None
    stuck: set = field(default_factory=set)


def _search(tn: TorchNetwork, net: Network, spec: _Spec, roots: _Domains, open_: _Domains, res: BaBResult,
            deadline: float, confirm: Confirm, s: BaBSettings, start: float, share: _Share | None = None,
            use_input: bool = False, presplit: _Presplit | None = None) -> BaBResult:
    """The branch-and-bound loop (module doc, steps 3-5) on the open root subdomains ``open_``.

    ``roots`` holds every conjunction's root subdomain (its bounds are what a split-only subdomain
    rebuilds from); a conjunction counts as closed at the end when none of its subdomains is left open.
    With ``presplit``, the loop stops (verdict ``unknown``) as soon as ``presplit.until`` subdomains are
    open and leaves them in ``presplit.pool``, unless it decides the case first."""
    P = spec.C.shape[0]
    t = time.perf_counter()
    root = None
    if not use_input and s.intermediate == "root":
        root = _Root([lo[:1] for lo in roots.lowers], [hi[:1] for hi in roots.uppers], roots.x_lo[:1], roots.x_hi[:1])
    row = _Pool.row_bytes(open_, compact=root is not None)
    limit = min(s.max_domains, int(s.max_memory * 2**30) // row)  # open subdomains allowed
    capacity = limit + 2 * s.batch  # a round pops k <= batch parents and pushes at most 2k children
    near_full = int(limit * (1.0 - DEPTH_FIRST_SHARE))  # past this many open subdomains: depth first
    pool = _Pool(open_, capacity, root)
    stuck: set[int] = set()  # conjunctions with a fully split subdomain that no LP multiplier could close
    while len(pool):
        if presplit is not None and len(pool) >= presplit.until:
            presplit.pool, presplit.stuck = pool.open(), stuck
            _loop_time(res, t)
            return res
        if share is not None:
            t_share = time.perf_counter()
            pool = _Pool(share.exchange(pool.open(), stuck, res), capacity, root)  # a copy a round (coop only)
            res.stages["bab_share"] += time.perf_counter() - t_share
            if len(pool) == 0:
                break
        if time.perf_counter() > deadline:
            res.open_bound = float(pool.key().max())
            res.message = f"time limit with {len(pool)} open subdomains (largest bound {res.open_bound:.4g})"
            break
        if len(pool) > limit:
            res.message = (f"{len(pool)} open subdomains holding {pool.open_bytes() / 2**30:.2f} GiB: past the memory "
                           f"bound (max_domains={s.max_domains}, max_memory={s.max_memory:g} GiB)")
            break
        res.rounds += 1
        key, n_free = pool.key(), len(pool)
        if len(pool) > near_full:  # near the memory bound: depth first (module doc, step 3)
            key = torch.where(pool.alive, _depth_first_key(pool.data), key)
            res.shrink_rounds += 1
        if share is not None:  # what the helper works on is split last: the two share the work, not repeat it
            busy = share.busy(pool.data) & pool.alive
            n_free = n_free - int(busy.sum())
            key = torch.where(busy, key - 1e9, key)
        k = min(s.batch, n_free if n_free > 0 else len(pool))
        parents = pool.pop(torch.topk(key, k).indices)
        t_branch = time.perf_counter()
        if use_input:
            children, split_layer = _split_inputs(tn, spec, parents), None
        else:
            children, leaves, split_layer = _split_relu(tn, spec, parents, s.fsb_k)
        res.stages["bab_branch"] += time.perf_counter() - t_branch
        children.tag = torch.where(children.tag == _GAVE_UP, -1, children.tag)  # children may be handed again
        if not use_input:
            if len(leaves):
                hit, open_specs = _close_leaves(tn, net, spec, leaves, confirm, res)
                if hit is not None:
                    _loop_time(res, t)
                    return _sat(res, hit, "bab", start)
                stuck |= open_specs
            if len(children) == 0:
                continue
        children, empty = _recompute(tn, children, split_layer, "crown" if use_input else s.intermediate,
                                     iters=s.iters, deadline=deadline)
        children = children.take(torch.nonzero(~empty).flatten())
        if len(children) == 0:
            continue
        t_bound = time.perf_counter()
        children, sb = _bound(tn, spec, children, s.iters, use_beta=not use_input, deadline=deadline)
        res.stages["bab_bound"] += time.perf_counter() - t_bound
        res.domains += len(children)
        still = ~(children.value < 0)  # NaN stays open
        if bool(still.any()):
            hit = _try_vertices(net, spec, children.take(torch.nonzero(still).flatten()), sb.lam0[still], confirm)
            if hit is not None:
                _loop_time(res, t)
                return _sat(res, hit, "bab", start)
        pool.push(children.take(torch.nonzero(still).flatten()))
        res.max_open = max(res.max_open, len(pool))
    _loop_time(res, t)
    left = set(pool.data.spec[pool.alive].tolist()) | stuck  # not pool.open(): a copy of GBs on wide nets
    res.closed_conjunctions = [i for i in range(P) if i not in left]
    if len(pool) == 0 and not res.message:
        if not stuck:
            return _done(res, "unsat", "bab+mip" if share is not None and share.used else "bab", start)
        res.message = (f"fully split subdomains of conjunction(s) {sorted(stuck)} could not be closed by their LP "
                       "(numerical trouble)")
    return _done(res, "unknown", "", start)


_GAVE_UP = -2  # the tag of a subdomain the helper answered ``open``: not handed again (its children may be)


class _Share:
    """This search's side of a helper MIP (module doc, step 5): what it closed, what it may take."""

    def __init__(self, helper: Helper, P: int, net: Network, bounds, case: VNNLibCase, mode: str) -> None:
        # The helper's big-M constants are these root bounds (tightened per subdomain): checked on a real point.
        check_bounds_contain(net, bounds, (np.asarray(case.lower) + np.asarray(case.upper)) / 2.0)
        self.helper, self.P, self.mode = helper, P, mode
        self.published: set[int] = set()
        self.next_tag = 0
        self.used = False  # an answer of the helper closed something this search needed

    def publish(self, pool: _Domains, stuck: set[int]) -> None:
        """Tell the helper of every conjunction with no open subdomain left (and no stuck leaf)."""
        counts = torch.bincount(pool.spec, minlength=self.P).tolist() if len(pool) else [0] * self.P
        for i in range(self.P):
            if counts[i] == 0 and i not in stuck and i not in self.published:
                self.helper.close(i)
                self.published.add(i)

    def busy(self, pool: _Domains) -> torch.Tensor:
        """Subdomains the helper works on: handed and not answered, or of the conjunction its MIP solves whole."""
        mask = pool.tag >= 0
        working = self.helper.working()
        return mask | (pool.spec == working) if working >= 0 else mask

    def exchange(self, pool: _Domains, stuck: set[int], res: BaBResult) -> _Domains:
        """Drop what the helper closed, re-open what it gave up, publish, and hand it a subdomain if it is idle."""
        drop = torch.zeros(len(pool), dtype=torch.bool)
        for tag, verdict in self.helper.answers():
            here = pool.tag == tag
            if verdict == "closed":
                drop |= here
                res.helper_closed += 1
                self.used = self.used or bool(here.any())
            else:
                pool.tag[here] = _GAVE_UP
        theirs = set(self.helper.closed()) - self.published
        if theirs:
            drop |= torch.isin(pool.spec, torch.as_tensor(sorted(theirs), dtype=pool.spec.dtype))
            stuck -= theirs  # a conjunction the helper proved is closed whatever its stuck leaves
            res.helper_conjunctions += len(theirs)
            self.used = True
            self.published |= theirs
        if bool(drop.any()):
            pool = pool.take(torch.nonzero(~drop).flatten())
        self.publish(pool, stuck)
        if len(pool) and self.helper.idle():
            free = torch.nonzero((pool.tag == -1) & ~self.busy(pool)).flatten()
            if len(free):
                if self.mode == "deep":
                    depth = sum((sp_[free] != 0).sum(1) for sp_ in pool.splits).to(DTYPE)
                    key = depth + 1e-6 * torch.sigmoid(pool.value[free])
                else:
                    key = pool.value[free]
                i = int(free[int(torch.argmax(key.nan_to_num(nan=math.inf)))])
                tag = self.next_tag
                self.next_tag += 1
                self.helper.send(tag, Subdomain(
                    spec=int(pool.spec[i]), lowers=[v[i].numpy().copy() for v in pool.lowers],
                    uppers=[v[i].numpy().copy() for v in pool.uppers],
                    splits=[v[i].numpy().copy() for v in pool.splits],
                    x_lo=pool.x_lo[i].numpy().copy(), x_hi=pool.x_hi[i].numpy().copy()))
                pool.tag[i] = tag
                res.handed += 1
        return pool


def _depth_first_key(dom: _Domains) -> torch.Tensor:
    """Most splits first, then the smallest bound: a depth-first order, in which the open subdomains number
    at most about ``batch`` times the depth of the tree (so the memory bound is kept where best-first
    would pass it), and whose smallest bounds are the nearest to closing."""
    depth = sum((sp_ != 0).sum(dim=1, dtype=torch.int32) for sp_ in dom.splits).to(DTYPE)
    return depth - 0.5 * torch.sigmoid(dom.value)


def _loop_time(res: BaBResult, t: float) -> None:
    res.stages["bab"] += time.perf_counter() - t
    res.loop_wall_s = res.stages["bab"]


def _done(res: BaBResult, verdict: str, by: str, start: float) -> BaBResult:
    res.verdict, res.decided_by = verdict, by
    res.time_s = time.perf_counter() - start
    return res


def _sat(res: BaBResult, hit, by: str, start: float) -> BaBResult:
    res.counterexample, res.output = hit
    return _done(res, "sat", by, start)


def _bound(tn: TorchNetwork, spec: _Spec, dom: _Domains, iters: int, use_beta: bool, deadline: float | None = None):
    """Optimise ``alpha``/``beta`` of ``dom`` and set its sound value (min over the conjunction's rows).

    ``deadline`` stops the steps early (a round never runs far past the time limit); the bound is still sound."""
    C, d = spec.C[dom.spec], spec.d[dom.spec]
    alpha = [None if a is None else a.to(DTYPE) for a in dom.alpha]
    beta = [None if b_ is None else b_.to(DTYPE) for b_ in dom.beta]
    ub, alpha, beta, sb = optimise_spec(tn, dom.x_lo, dom.x_hi, dom.lowers, dom.uppers, dom.splits, C, d,
                                        alpha, beta, iters=iters, use_beta=use_beta, deadline=deadline)
    dom.alpha = [None if a is None else a.to(torch.float32) for a in alpha]
    dom.beta = [None if b_ is None else b_.to(torch.float32) for b_ in beta]
    dom.value = ub.min(dim=1).values
    return dom, sb


def _try_vertices(net: Network, spec: _Spec, dom: _Domains, lam0: torch.Tensor, confirm: Confirm):
    """Try the box vertex that maximises each row's linear bound as a counterexample (cheap primal heuristic)."""
    if len(dom) == 0:
        return None
    x = torch.where(lam0 > 0, dom.x_hi.unsqueeze(1), dom.x_lo.unsqueeze(1)).reshape(-1, dom.x_lo.shape[1]).numpy()
    centre = ((dom.x_lo + dom.x_hi) / 2).numpy()
    x = np.vstack([x, centre])
    owner = np.concatenate([np.repeat(dom.spec.numpy(), lam0.shape[1]), dom.spec.numpy()])
    y = net.forward(x)
    for i in np.flatnonzero(_holds(spec, owner, y)):
        ok, xc, yc = confirm(x[i])
        if ok:
            return xc, yc
    return None


def _holds(spec: _Spec, owner: np.ndarray, y: np.ndarray) -> np.ndarray:
    vals = np.einsum("bmo,bo->bm", spec.C[owner].numpy(), y) + spec.d[owner].numpy()
    return (vals >= 0).all(axis=1)


def _scores(tn: TorchNetwork, spec: _Spec, dom: _Domains) -> list[torch.Tensor]:
    """BaBSR intercept score per hidden neuron (B, n_j); ``-inf`` where the neuron cannot be split."""
    C, d = spec.C[dom.spec], spec.d[dom.spec]
    with torch.no_grad():
        sb = spec_bound(tn, dom.x_lo, dom.x_hi, dom.lowers, dom.uppers, dom.splits, C, d,
                        [None if a is None else a.to(DTYPE) for a in dom.alpha],
                        [None if b_ is None else b_.to(DTYPE) for b_ in dom.beta])
    out = []
    for j, (lo, hi, sp_) in enumerate(zip(dom.lowers, dom.uppers, dom.splits)):
        unst = (lo < 0) & (hi > 0) & (sp_ == 0)
        if not tn.relu[j] or sb.mu[j] is None:
            out.append(torch.full_like(lo, -math.inf))
            continue
        mu = sb.mu[j].sum(1)
        denom = torch.where(unst, hi - lo, torch.ones_like(hi))
        icpt = -lo * hi / denom
        score = mu.clamp(min=0.0) * icpt + 1e-4 * mu.abs() * torch.minimum(hi, -lo).clamp(min=0.0)
        out.append(torch.where(unst, score, torch.full_like(score, -math.inf)))
    return out


def _split_relu(tn: TorchNetwork, spec: _Spec, parents: _Domains,
                fsb_k: int = 0) -> tuple[_Domains, _Domains, torch.Tensor]:
    """Two children per parent split on its best-scored neuron; parents with no unstable neuron left are leaves.

    Returns ``(children, leaves, split layer of each child)``; the first half
    of the children is the active side (``z >= 0``), the second the inactive.
    """
    scores = _scores(tn, spec, parents)
    widths = [s_.shape[1] for s_ in scores]
    flat = torch.cat(scores, dim=1)
    best, arg = flat.max(dim=1)
    leaf = torch.isinf(best)
    leaves = parents.take(torch.nonzero(leaf).flatten())
    go = torch.nonzero(~leaf).flatten()
    p = parents.take(go)
    offsets = np.cumsum([0] + widths)
    if fsb_k > 0 and len(p):
        arg = _filtered_smart_branching(tn, spec, p, scores, go, offsets, fsb_k)
    else:
        arg = arg[go]
    layer = torch.as_tensor(np.searchsorted(offsets, arg.numpy(), side="right") - 1, dtype=torch.long)
    neuron = arg - torch.as_tensor(offsets, dtype=torch.long)[layer]
    kids = _Domains.cat([p, p]) if len(p) else p  # torch.cat copies: the children own their tensors
    n = len(p)
    rows = torch.arange(2 * n)
    lay2, neu2 = layer.repeat(2), neuron.repeat(2)
    sign = torch.cat([torch.ones(n, dtype=torch.int8), -torch.ones(n, dtype=torch.int8)])
    for j in range(len(widths)):
        sel = lay2 == j
        if not bool(sel.any()):
            continue
        r, c, sg = rows[sel], neu2[sel], sign[sel]
        kids.splits[j][r, c] = sg
        act = sg > 0
        kids.lowers[j][r[act], c[act]] = 0.0
        kids.uppers[j][r[~act], c[~act]] = 0.0
    return kids, leaves, lay2


def _filtered_smart_branching(tn, spec, p: _Domains, scores, go, offsets, k: int) -> torch.Tensor:
    """Filtered smart branching (De Palma et al. 2021): among the ``k`` best BaBSR candidates of each layer, the
    split whose worse child has the smallest bound, both children bounded with the parent's slopes (float32,
    no optimisation: a heuristic only). Returns flat neuron indices (B,)."""
    cand = []
    for j, sc in enumerate(scores):
        sc = sc[go]
        kk = min(k, sc.shape[1])
        val, idx = torch.topk(sc, kk, dim=1)
        cand.append(torch.where(torch.isinf(val), torch.full_like(idx, -1), idx + int(offsets[j])))
    cand = torch.cat(cand, dim=1)  # (B, Kc), -1 where no candidate
    B, Kc = cand.shape
    valid = cand >= 0
    flat_idx = cand.clamp(min=0).reshape(-1)
    layer = torch.as_tensor(np.searchsorted(offsets, flat_idx.numpy(), side="right") - 1, dtype=torch.long)
    neuron = flat_idx - torch.as_tensor(offsets, dtype=torch.long)[layer]
    rep = torch.arange(B).repeat_interleave(Kc)
    rep2 = torch.cat([rep, rep])  # every candidate twice: active side, then inactive side
    f32 = torch.float32

    def trial(ts: list) -> list:  # the parents' tensors, one row per trial child, in float32 (one copy)
        return [None if t is None else t[rep2].to(f32) if t.is_floating_point() else t[rep2] for t in ts]

    lowers, uppers, splits = trial(p.lowers), trial(p.uppers), trial(p.splits)
    n = B * Kc
    rows = torch.arange(2 * n)
    lay2, neu2 = layer.repeat(2), neuron.repeat(2)
    sign = torch.cat([torch.ones(n, dtype=torch.int8), -torch.ones(n, dtype=torch.int8)])
    for j in range(len(scores)):
        sel = lay2 == j
        if bool(sel.any()):
            r, c, sg = rows[sel], neu2[sel], sign[sel]
            splits[j][r, c] = sg
            lowers[j][r[sg > 0], c[sg > 0]] = 0.0
            uppers[j][r[sg < 0], c[sg < 0]] = 0.0
    owner = p.spec[rep2]
    with torch.no_grad():
        sb = spec_bound(tn, p.x_lo[rep2].to(f32), p.x_hi[rep2].to(f32), lowers, uppers, splits,
                        spec.C[owner].to(f32), spec.d[owner].to(f32), trial(p.alpha), trial(p.beta), magnitude=False)
    u = sb.upper.min(dim=1).values.reshape(2, B, Kc).max(dim=0).values
    u = torch.where(valid, u, torch.full_like(u, math.inf))
    return cand[torch.arange(B), u.argmin(dim=1)]


def _split_inputs(tn: TorchNetwork, spec: _Spec, parents: _Domains) -> _Domains:
    """Two children per parent, bisecting the input whose split gives the best worse child.

    Every input of positive width is tried (this mode is for at most
    ``INPUT_SPLIT_MAX`` inputs): both halves get CROWN intermediate bounds and
    a spec bound with the parent's slopes, and the input minimising the larger
    of the two children's bounds is chosen (ties: the widest). A heuristic
    only; the children are bounded soundly afterwards.

    One split may not improve the bound when the loose part of the relaxation
    needs two (a maximum inside one input's range: either half still holds
    it). The one-step look-ahead then only sees rounding noise and keeps
    bisecting an input that is already thin, forever. So the gain of the best
    split is measured against the parent bounded the same way (same slopes,
    recomputed intermediate bounds); below :data:`INPUT_SPLIT_MIN_GAIN`
    relative to the bound's scale, the widest input is split instead. Small
    real gains can also go on forever (each halving of a thin input gaining
    half the last), so an input more than :data:`INPUT_SPLIT_MAX_ASPECT` times
    thinner than the widest (widths relative to the property's box) is not a
    candidate: every box then shrinks to a point and its CROWN bound to the
    network's value, so the search ends.
    """
    B, n_in = parents.x_lo.shape
    width = (parents.x_hi - parents.x_lo) / spec.box_width.clamp(min=1e-300)  # relative to the property's box
    rows = torch.arange(B)
    rep_ = rows.repeat_interleave(n_in)
    dims = torch.arange(n_in).repeat(B)
    trial = _Domains.cat([parents.take(rep_), parents.take(rep_), parents.take(rows)])  # halves, then the parents
    mid = (parents.x_lo[rep_, dims] + parents.x_hi[rep_, dims]) / 2
    half = B * n_in
    trial.x_hi[torch.arange(half), dims] = mid
    trial.x_lo[torch.arange(half, 2 * half), dims] = mid
    trial, empty = _recompute(tn, trial, None, "crown")
    C, d = spec.C[trial.spec], spec.d[trial.spec]
    with torch.no_grad():
        sb = spec_bound(tn, trial.x_lo, trial.x_hi, trial.lowers, trial.uppers, None, C, d,
                        [None if a is None else a.to(DTYPE) for a in trial.alpha], None)
    u = torch.where(empty, torch.full((len(trial),), -math.inf, dtype=DTYPE), sb.upper.min(dim=1).values)
    base = u[2 * half:]  # each parent, bounded as its trial children were
    worse = u[:2 * half].reshape(2, B, n_in).max(dim=0).values
    widest = width.max(dim=1, keepdim=True).values
    candidate = (width > 0) & (width * INPUT_SPLIT_MAX_ASPECT >= widest)
    worse = torch.where(candidate, worse - 1e-9 * width / widest.clamp(min=1e-300), torch.full_like(worse, math.inf))
    worse = worse.nan_to_num(nan=math.inf)
    best, dim = worse.min(dim=1)
    gain = base - best
    stalled = ~(gain > INPUT_SPLIT_MIN_GAIN * (1.0 + base.abs()))  # NaN or -inf base: no measurable gain either
    dim = torch.where(stalled, width.argmax(dim=1), dim)
    mid = (parents.x_lo[rows, dim] + parents.x_hi[rows, dim]) / 2
    left, right = parents.take(rows), parents.take(rows)
    left.x_hi, right.x_lo = left.x_hi.clone(), right.x_lo.clone()
    left.x_hi[rows, dim] = mid
    right.x_lo[rows, dim] = mid
    return _Domains.cat([left, right])


def _recompute(tn: TorchNetwork, kids: _Domains, split_layer: torch.Tensor | None, mode: str, iters: int = 0,
               deadline: float | None = None):
    """Children's intermediate bounds recomputed (``mode``: ``BaBSettings.intermediate``) and intersected with the
    parent's; flags of empty children.

    ``split_layer`` None (input splitting): every layer is recomputed on the
    child's box; else from the first layer after the earliest split of the batch.
    """
    full = split_layer is None
    start = 0 if full or not len(kids) else int(split_layer.min()) + 1
    if mode != "root" and len(kids) and start < tn.n_layers - 1:
        if mode == "beta" and not full:
            kids.lowers, kids.uppers = split_intermediate_bounds(tn, kids.x_lo, kids.x_hi, kids.lowers, kids.uppers,
                                                                 kids.splits, start=start, iters=iters,
                                                                 deadline=deadline)
        else:
            kids.lowers, kids.uppers = intermediate_bounds(tn, kids.x_lo, kids.x_hi, kids.lowers, kids.uppers,
                                                           None if full else kids.splits, start=start)
    empty = torch.zeros(len(kids), dtype=torch.bool)
    for j, (lo, hi) in enumerate(zip(kids.lowers, kids.uppers)):
        empty |= (lo > hi).any(dim=1)
        if not full:
            sp_ = kids.splits[j]
            empty |= ((sp_ > 0) & (hi < 0)).any(dim=1) | ((sp_ < 0) & (lo > 0)).any(dim=1)
    return kids, empty


# ---------------------------------------------------------------------------- leaves: every ReLU fixed


def _affine_pattern(tn: TorchNetwork, dom: _Domains, i: int):
    """Along subdomain ``i``'s fixed pattern: ``z_j = G_j x + g_j`` per layer, as float64 NumPy arrays."""
    n_in = dom.x_lo.shape[1]
    A, a = np.eye(n_in), np.zeros(n_in)
    pre = []
    for j in range(tn.n_layers):
        W, bias = tn.weights[j].numpy(), tn.biases[j].numpy()
        G, g = W @ A, W @ a + bias
        pre.append((G, g))
        if j < tn.n_layers - 1 and tn.relu[j]:
            on = ((dom.lowers[j][i] >= 0) | (dom.splits[j][i] > 0)).numpy().astype(float)
            A, a = on[:, None] * G, on * g
        else:
            A, a = G, g
    return pre


def _close_leaves(tn, net, spec: _Spec, leaves: _Domains, confirm: Confirm, res: BaBResult):
    """Close fully split subdomains by LP duals turned into ``beta`` (module doc, step 4).

    Returns ``(counterexample (x, y) or None, the conjunctions of the leaves left open)``.
    """
    unresolved = []
    for i in range(len(leaves)):
        res.lp_leaves += 1
        pre = _affine_pattern(tn, leaves, i)
        lo, hi = leaves.x_lo[i].numpy(), leaves.x_hi[i].numpy()
        rows, rhs, where = [], [], []
        for j in range(tn.n_layers - 1):
            sp_ = leaves.splits[j][i].numpy().astype(float)
            idx = np.flatnonzero(sp_)
            if idx.size:
                G, g = pre[j]
                rows.append(-sp_[idx, None] * G[idx])
                rhs.append(sp_[idx] * g[idx])
                where += [(j, int(k)) for k in idx]
        G_out, g_out = pre[-1]
        A_ub = np.vstack(rows) if rows else np.zeros((0, lo.size))
        b_ub = np.concatenate(rhs) if rhs else np.zeros(0)
        C, d = spec.C[leaves.spec[i]].numpy(), spec.d[leaves.spec[i]].numpy()
        closed = False
        for r in range(C.shape[0]):
            obj = C[r] @ G_out
            lp = _solve_lp(-obj, A_ub, b_ub, lo, hi)
            if lp.status == Status.OPTIMAL and lp.x is not None and lp.row_dual is not None:
                x = lp.x
                y = net.forward(x)
                if spec.disjuncts[int(leaves.spec[i])].holds(y):
                    ok, xc, yc = confirm(x)
                    if ok:
                        return (xc, yc), set()
                candidates = [np.maximum(-lp.row_dual, 0.0)]  # multipliers of A x <= b (<= 0 in a minimisation)
            elif lp.status == Status.INFEASIBLE and A_ub.shape[0]:
                candidates = _farkas_betas(A_ub, b_ub, lo, hi, obj, float(C[r] @ g_out + d[r]))
            else:
                candidates = []
            for beta_vec in candidates:
                if _leaf_bound(tn, leaves, i, r, m=C.shape[0], where=where, beta_vec=beta_vec, spec=spec) < 0:
                    closed = True
                    break
            if closed:
                break
        if not closed:
            unresolved.append(i)
    return None, {int(leaves.spec[i]) for i in unresolved}


def _solve_lp(cost, A_ub, b_ub, lo, hi, solver: str = LEAF_LP_SOLVER):
    """``min cost @ x`` s.t. ``A_ub x <= b_ub``, ``lo <= x <= hi`` through the solver protocol (x and row duals)."""
    model = MILP(np.asarray(cost, dtype=np.float64), sp.csr_matrix(A_ub), np.full(A_ub.shape[0], -np.inf),
                 np.asarray(b_ub, dtype=np.float64), np.asarray(lo, dtype=np.float64),
                 np.asarray(hi, dtype=np.float64), None, Sense.MINIMIZE)
    return get_backend(solver).solve(model, SolveOptions(time_limit=30.0))


def _farkas_betas(A_ub, b_ub, lo, hi, obj, const) -> list[np.ndarray]:
    """Multipliers proving an empty leaf: phase-1 LP ``min t`` s.t. ``A x - t <= b``; scaled duals, growing."""
    n = A_ub.shape[1]
    A = np.hstack([A_ub, -np.ones((A_ub.shape[0], 1))])
    c = np.zeros(n + 1)
    c[-1] = 1.0
    lp = _solve_lp(c, A, b_ub, np.append(lo, -np.inf), np.append(hi, np.inf))
    if lp.status != Status.OPTIMAL or lp.row_dual is None or not lp.objective > 0:
        return []
    nu = np.maximum(-lp.row_dual, 0.0)
    top = const + float(np.maximum(obj, 0) @ hi + np.minimum(obj, 0) @ lo)
    gamma = max(top, 0.0) / lp.objective + 1.0
    return [nu * gamma * f for f in (1.0, 4.0, 64.0)]


def _leaf_bound(tn, leaves: _Domains, i: int, r: int, m: int, where, beta_vec, spec: _Spec) -> float:
    """Sound float64 bound of row ``r`` of leaf ``i`` with the given split multipliers."""
    one = leaves.take(torch.as_tensor([i]))
    beta = [torch.zeros(1, m, n, dtype=DTYPE) for n in tn.hidden_widths]
    for (j, k), v in zip(where, beta_vec):
        beta[j][0, r, k] = float(v)
    C, d = spec.C[one.spec], spec.d[one.spec]
    with torch.no_grad():
        sb = spec_bound(tn, one.x_lo, one.x_hi, one.lowers, one.uppers, one.splits, C, d,
                        [None if a is None else a.to(DTYPE) for a in one.alpha], beta)
    return float(pad_bound(sb)[0, r])
