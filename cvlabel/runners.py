"""Where shards run: in this process, in joblib worker processes, or on a Dask cluster; and the
one rule for how many processes a command uses.

Both runners offer the same call, `map(function, calls, on_done)` over shards. The shard function
is the same everywhere.

Dask is an optional extra (`pip install 'cvlabel[dask]'`), imported only by `dask_runner`. With
a scheduler address the tasks go to that existing cluster; without one a LocalCluster of one
single-threaded worker process per job runs here. Workers open the clips and the model by the
paths the client gives them and write their shard files straight into the output folder (temp
name, then rename), so every worker must see those paths: a shared filesystem. A task whose
worker dies is rescheduled by Dask; a task that raises is retried SHARD_RETRIES times.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from joblib import Parallel, delayed

from .errors import CvlabelError

# Below this many rows to predict, `--jobs 0` runs in-process: each worker process first imports
# torch (~3 s here), which costs more than a second core saves on a small run. Measured, `cvlabel
# infer` from a fresh process, in-process vs two workers: 500 rows 6.7 vs 9.2 s, 1,000 rows 9.6
# vs 9.7 s, 2,000 rows 15.1 vs 12.1 s.
SERIAL_BELOW_ROWS = 1000


def resolve_jobs(requested: int, rows: int | None = None, tasks: int | None = None, cores: int | None = None) -> int:
    """Processes to use for `--jobs requested`: the number given, or for 0 one per core, except
    in-process when fewer than SERIAL_BELOW_ROWS `rows` are to do; never more than `tasks`
    (rows and tasks when the caller knows them)."""
    if requested < 0:
        raise CvlabelError(f"--jobs must be 0 (one per core) or more, got {requested}")
    if requested == 0:
        requested = 1 if rows is not None and rows < SERIAL_BELOW_ROWS else (cores or os.cpu_count() or 1)
    return max(1, min(requested, tasks)) if tasks is not None else requested


PARENT_POLL_S = 1.0  # how often a worker checks that the process that started it is alive
_watching = False


def exit_with_parent(parent: int | None = None) -> None:
    """In a worker process: exit as soon as `parent` (the process that started the pool; by default
    the current parent) dies, kill -9 included, so no worker (~0.7 GB each) outlives an interrupted
    command. Starts one daemon thread per process; exits at once if the parent is already gone."""
    global _watching
    if _watching:
        return
    _watching = True
    parent = parent or os.getppid()
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:  # re-parented: the parent is gone
                os._exit(1)

    threading.Thread(target=watch, name="cvlabel-exit-with-parent", daemon=True).start()


# glibc gives a freed heap top back to the system once it passes a threshold that follows the
# largest recent allocation (~1-2 MB here), so the ~50 MB of audio a worker holds per window of
# clips was returned and faulted in again every window (~20 page faults a clip, 2-4% of a worker's
# time). A worker keeps up to this much freed memory for the next window instead.
KEEP_FREED_BYTES = 128 << 20
MMAP_ABOVE_BYTES = 16 << 20  # allocations this large still get their own mapping (and give it back)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_tuned = False


def keep_freed_memory() -> None:
    """In a worker process: have glibc's malloc keep freed memory (KEEP_FREED_BYTES) for reuse rather
    than return it and fault it in again. Once per process; nothing where malloc is not glibc's."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE_BYTES)
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)


class LocalRunner:
    """Calls in this process (jobs 1) or in joblib worker processes."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def map(self, function: Callable[..., int], calls: Iterable[tuple], on_done: Callable[[int], Any]) -> None:
        """function(*args, worker=...) for every args in `calls`; on_done(result) as each finishes.

        `worker` is 0 in-process, else the pid of this process, which the workers watch (exit_with_parent)."""
        if self.jobs == 1:
            for args in calls:
                on_done(function(*args, worker=0))
            return
        tasks = (delayed(function)(*args, worker=os.getpid()) for args in calls)
        for result in Parallel(n_jobs=self.jobs, return_as="generator_unordered")(tasks):
            on_done(result)


SHARD_RETRIES = 2  # extra attempts of a shard that raised (a clip never raises: it becomes an error row)
IN_FLIGHT_PER_THREAD = 4  # shards submitted ahead per worker thread: keeps workers busy, the client small
CONNECT_TIMEOUT_S = 30  # seconds to reach a scheduler before saying so
# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which ran torch's STFT at about
# half speed here (system CPU x6); None leaves glibc's default.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


class DaskRunner:
    """Calls as Dask tasks on one client: the same interface as LocalRunner."""

    def __init__(self, client: Any):
        self.client = client

    def map(self, function: Callable[..., int], calls: Iterable[tuple], on_done: Callable[[int], Any]) -> None:
        """function(*args, worker=True) for every args in `calls`; on_done(result) as each finishes.

        Only IN_FLIGHT_PER_THREAD shards per worker thread are submitted at a time, so the client
        never holds a whole release's rows.
        """
        from distributed import as_completed

        pending = iter(calls)
        threads = max(1, sum(self.client.nthreads().values()))
        first = [self._submit(function, *args, worker=True) for args in islice(pending, IN_FLIGHT_PER_THREAD * threads)]
        running = as_completed(first)
        for future in running:
            on_done(self._result(future))
            for args in islice(pending, 1):
                running.add(self._submit(function, *args, worker=True))

    def _submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.client.submit(function, *args, retries=SHARD_RETRIES, pure=False, **kwargs)

    @staticmethod
    def _result(future: Any) -> Any:
        try:
            return future.result()
        except CvlabelError:
            raise  # cvlabel's own message (a broken checkpoint, say) says it all
        except Exception as exc:  # failed on every try: say why, and the likely cause
            raise CvlabelError(
                f"a task failed on the Dask cluster after {SHARD_RETRIES + 1} tries ({type(exc).__name__}: "
                f"{str(exc)[:300]}); can every worker read the clips and the model and write to --out at the "
                "same paths?"
            ) from None


@contextmanager
def dask_runner(scheduler: str, jobs: int) -> Iterator[DaskRunner]:
    """A DaskRunner on the cluster at `scheduler` ("tcp://host:port"), or on a LocalCluster of
    resolve_jobs(jobs) single-threaded processes started here for "" (closed on exit).

    Raises CvlabelError when Dask is missing or the scheduler cannot be reached. Finished shards
    stay on disk whatever happens: a re-run resumes.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise CvlabelError(
            "--backend dask needs Dask: pip install 'cvlabel[dask]' (in a clone of cvlabel: pip install -e '.[dask]')"
        ) from None

    # Dask logs a dozen INFO lines per start and stop, which would bury the progress bar
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with dask.config.set(WORKER_ENVIRON):
        cluster = None
        try:
            if scheduler:
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            else:
                cluster = LocalCluster(
                    n_workers=resolve_jobs(jobs),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
                client = Client(cluster)
        except (OSError, TimeoutError) as exc:
            raise CvlabelError(
                f"cannot reach the Dask scheduler at {scheduler or 'a new LocalCluster'}: {exc}"
            ) from None
        try:
            yield DaskRunner(client)
        finally:
            client.close()
            if cluster is not None:
                # a worker slow to exit (torch's threads) is killed after a few seconds, with a warning line
                # ("Worker process still alive after 4.0 seconds, killing") that says nothing to the user: every
                # shard it wrote is already whole on disk
                nanny = logging.getLogger("distributed.nanny")
                level = nanny.level
                nanny.setLevel(logging.ERROR)
                try:
                    cluster.close()
                finally:
                    nanny.setLevel(level)
