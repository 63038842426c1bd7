"""Before/after-pruning MIP benchmarks: ``optprune bench CONFIG --out DIR``.

For every (network, pruning, instance, backend) a benchmark records the
network's accuracy and size, the MIP's size (unstable neurons, binaries,
constraints), the time spent in bounds, model building and the MIP, and the
verdict with objective and bound, one JSON line per result, written as it
arrives and resumable after any kill. It then writes a summary (Markdown, CSV)
and plots (cactus, before/after scatter, accuracy vs time). ``--surrogate``
solves the MIPs of pruned copies and scores their incumbents on the dense
network (Pham et al. 2025). The config format is in ``instances/README.md``.
"""

from optprune.bench._config import (
    DECISIONS,
    MODES,
    QUERY_KINDS,
    TARGETS,
    BenchConfig,
    FinetuneSpec,
    NetworkSpec,
    PruningSpec,
    QuerySpec,
    SurrogateSpec,
    load_config,
    parse_config,
)
from optprune.bench._executors import EXECUTORS
from optprune.bench._networks import Variant, prepare_variants
from optprune.bench._runner import BenchResult, build_surrogate_tasks, build_tasks, run_bench
from optprune.bench._store import RecordStore, read_records
from optprune.bench._summary import markdown_table, summarize, surrogate_summary
from optprune.bench._surrogate import polish_on_dense, with_l1_ball
from optprune.bench._tasks import margin_verdict, run_task

__all__ = [
    "DECISIONS",
    "EXECUTORS",
    "MODES",
    "QUERY_KINDS",
    "TARGETS",
    "BenchConfig",
    "BenchResult",
    "FinetuneSpec",
    "NetworkSpec",
    "PruningSpec",
    "QuerySpec",
    "RecordStore",
    "SurrogateSpec",
    "Variant",
    "build_surrogate_tasks",
    "build_tasks",
    "load_config",
    "margin_verdict",
    "markdown_table",
    "parse_config",
    "polish_on_dense",
    "prepare_variants",
    "read_records",
    "run_bench",
    "run_task",
    "summarize",
    "surrogate_summary",
    "with_l1_ball",
]
