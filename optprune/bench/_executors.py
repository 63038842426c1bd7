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
  Ray is an optional extra: ``pip install 'optprune[ray]'``. ``ray.init``
  waits for minutes on an address where no Ray cluster answers, inside native
  code that does not react to SIGTERM, so an address ``host:port`` (or
  ``ray://host:port``) is checked first (:func:`check_ray_address`): a TCP
  connect, then ``ray.init`` in a child process that is killed unless it
  connects within :data:`RAY_CONNECT_TIMEOUT_S` seconds (environment
  ``OPTPRUNE_RAY_CONNECT_TIMEOUT``). While tasks run, SIGTERM (like Ctrl-C)
  stops the run: queued tasks are cancelled and Ray is shut down. Networks and
  images travel with the tasks; VNN-LIB queries pass the property's path, so
  on a multi-machine cluster the files must be readable at that path on every node.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

from optprune.errors import InvalidParameterError, SolverNotAvailableError
from optprune.network import Network

__all__ = ["EXECUTORS", "RAY_CONNECT_TIMEOUT_S", "check_ray_address", "execute"]

EXECUTORS = ("local", "ray")
RAY_CONNECT_TIMEOUT_S = 30.0

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


def _connect_timeout() -> float:
    text = os.environ.get("OPTPRUNE_RAY_CONNECT_TIMEOUT")
    if text is None:
        return RAY_CONNECT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InvalidParameterError(f"OPTPRUNE_RAY_CONNECT_TIMEOUT must be a number of seconds > 0; got {text!r}")
    return value


def check_ray_address(address: str | None, timeout: float | None = None) -> None:
    """Fail fast when a ``host:port`` Ray address does not accept a TCP connection within ``timeout`` seconds.

    ``None`` (a local Ray instance) and ``"auto"`` (a cluster on this machine,
    which Ray finds or refuses by itself at once) are not checked.
    """
    if address is None or address in ("auto", "local"):
        return
    timeout = _connect_timeout() if timeout is None else timeout
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise InvalidParameterError(
            f"--address must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT'; got {address!r}"
        )
    host = host.strip("[]")
    unreachable = (f"--address {address}: no Ray cluster answered within {timeout:g} s (connect timed out); check "
                   "the address, that the head node runs (`ray start --head`) and that its port is reachable "
                   "(OPTPRUNE_RAY_CONNECT_TIMEOUT sets the wait)")
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            pass
    except TimeoutError:
        raise InvalidParameterError(unreachable) from None
    except OSError as exc:
        raise InvalidParameterError(
            f"--address {address}: cannot connect ({exc.strerror or exc}); check the address and that the head "
            "node runs (`ray start --head`)"
        ) from None
    # The port answers; is it a Ray cluster? ray.init in a child process that can be killed.
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_ray_probe, args=(address,), daemon=True)
    proc.start()
    try:
        deadline = started + timeout
        while proc.is_alive() and time.monotonic() < deadline:
            proc.join(0.2)  # short joins: SIGTERM / Ctrl-C are handled here, and the finally kills the probe
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
            timed_out = True
        else:
            timed_out = False
    if timed_out:
        raise InvalidParameterError(unreachable)
    if proc.exitcode != 0:
        raise InvalidParameterError(
            f"--address {address}: ray.init could not join a Ray cluster there (probe exit code {proc.exitcode}; "
            "its message is above); check the address and the Ray versions of client and cluster"
        )


def _ray_probe(address: str) -> None:
    """Child process of :func:`check_ray_address`: join the cluster and leave; exit code 0 on success."""
    import ray

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        ray.shutdown()
    except Exception as exc:  # noqa: BLE001 - reported through the exit code and stderr
        print(f"ray.init(address={address!r}) failed: {exc}", file=sys.stderr)
        sys.exit(3)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread (so ``finally`` cleans up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    pending: dict = {}
    with _sigterm_interrupts():
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
            for task, vid, ref in jobs:
                pending[remote.remote(task, refs[vid], refs[ref] if ref else None)] = task
            while pending:
                # a bounded wait lets Python run its signal handlers (SIGTERM, Ctrl-C) between polls
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for obj in done:
                    task = pending.pop(obj)
                    yield task, ray.get(obj)
        finally:
            for obj in list(pending):
                with contextlib.suppress(Exception):
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
        check_ray_address(address)
        return _ray(jobs, nets, workers, address)
    return _local(jobs, nets, workers)
