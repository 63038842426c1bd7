"""Where tasks run: a local process pool (default) or a Ray cluster.

Both take jobs ``(task, network id, reference id)`` plus the networks by id,
and yield ``(task, record)`` as tasks finish, in completion order. The same
worker function (:func:`optprune.bench._tasks.run_task`) runs either way, so
a config gives the same records (timings aside) on both.

* ``local``: :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method; each worker uses one BLAS/torch thread and, on Linux,
  asks the kernel to kill it when the parent dies (``PR_SET_PDEATHSIG``), so a
  killed run leaves no solver running on.
* ``ray``: ``ray.init(address=...)`` (``None`` starts a local Ray instance with
  ``workers`` CPUs; ``"auto"`` or ``"ray://host:10001"`` joins a cluster);
  every network is put in the object store once; tasks request one CPU each.
  Ray is an optional extra: ``pip install 'optprune[ray]'``. Networks and
  images travel with the tasks; VNN-LIB queries pass the property's path, so
  on a multi-machine cluster the files must be readable at that path on every node.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator, Mapping, Sequence

from optprune.errors import InvalidParameterError, SolverNotAvailableError
from optprune.network import Network

__all__ = ["EXECUTORS", "execute"]

EXECUTORS = ("local", "ray")

Job = tuple[dict, str, str | None]


def _init_worker() -> None:
    """Die with the parent (Linux), one thread per worker."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover
            pass
    from optprune.bench._tasks import single_thread

    single_thread()


def _local(jobs: Sequence[Job], nets: Mapping[str, Network], workers: int) -> Iterator[tuple[dict, dict]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from optprune.bench._tasks import run_task

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    try:
        queue = list(jobs)
        pending = {}
        # Keep at most 2 jobs per worker queued: networks are pickled per submission.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                task, vid, ref = queue.pop(0)
                fut = pool.submit(run_task, task, nets[vid], nets[ref] if ref else None)
                pending[fut] = task
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                yield task, fut.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _ray(jobs: Sequence[Job], nets: Mapping[str, Network], workers: int, address: str | None) -> Iterator[tuple[dict, dict]]:
    try:
        import ray
    except ImportError:
        raise SolverNotAvailableError(
            "--executor ray needs the Python package 'ray', which is not installed; "
            "install it with: pip install 'optprune[ray]'"
        ) from None
    from optprune.bench._tasks import run_task

    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = workers
        ray.init(address=address, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        used = {vid for _, vid, _ in jobs} | {ref for _, _, ref in jobs if ref}
        refs = {vid: ray.put(nets[vid]) for vid in sorted(used)}
        pending = {}
        for task, vid, ref in jobs:
            pending[remote.remote(task, refs[vid], refs[ref] if ref else None)] = task
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for obj in done:
                task = pending.pop(obj)
                yield task, ray.get(obj)
    finally:
        for obj in list(locals().get("pending", {})):
            ray.cancel(obj, force=True)
        if started:
            ray.shutdown()


def execute(
    jobs: Sequence[Job],
    nets: Mapping[str, Network],
    *,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
) -> Iterator[tuple[dict, dict]]:
    """Run ``jobs`` and yield ``(task, record)`` as each finishes (module doc)."""
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"executor must be one of {EXECUTORS}; got {executor!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidParameterError(f"workers must be an integer >= 1; got {workers!r}")
    if address is not None and executor != "ray":
        raise InvalidParameterError(f"--address is for --executor ray; got executor {executor!r}")
    if not jobs:
        return iter(())
    if executor == "ray":
        return _ray(jobs, nets, workers, address)
    return _local(jobs, nets, workers)
