"""`cvlabel infer --backend dask`: infer's own shard function, one Dask task per shard.

Dask is an optional extra (`pip install 'cvlabel[dask]'`), imported only here. With a scheduler
address the tasks go to that existing cluster; without one a LocalCluster of one single-threaded
worker process per job runs on this machine. Workers open the clips and the model by the paths
the client gives them and write their shard files straight into the output folder (temp name,
then rename), so every worker must see those paths: a shared filesystem. A task whose worker
dies is rescheduled by Dask; a task that raises is retried SHARD_RETRIES times.
"""
from __future__ import annotations

import logging
import os
from itertools import islice
from typing import Any, Callable, Iterable

from .errors import CvlabelError

SHARD_RETRIES = 2  # extra attempts of a shard that raised (a clip never raises: it becomes an error row)
IN_FLIGHT_PER_THREAD = 4  # shards submitted ahead per worker thread: keeps workers busy, the client small
CONNECT_TIMEOUT_S = 30  # seconds to reach a scheduler before saying so
# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which ran torch's STFT at about
# half speed here (system CPU x6); None leaves glibc's default.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def run_shards(function: Callable[..., int], calls: Iterable[tuple], scheduler: str, workers: int,
               on_done: Callable[[int], Any]) -> None:
    """Run function(*args) for every args in `calls` on Dask; on_done(result) as each finishes.

    scheduler: "tcp://host:port" of a running cluster, or "" for a LocalCluster of `workers`
    processes. Only IN_FLIGHT_PER_THREAD shards per worker thread are submitted at a time, so the
    client never holds a whole release's rows. Raises CvlabelError when Dask is missing, the
    scheduler cannot be reached, or a shard still fails after its retries (the finished shards
    stay on disk: a re-run resumes).
    """
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise CvlabelError("--backend dask needs Dask: pip install 'cvlabel[dask]'") from None

    # Dask logs a dozen INFO lines per start and stop, which would bury the progress bar
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with dask.config.set(WORKER_ENVIRON):
        cluster = None
        try:
            if scheduler:
                client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            else:
                cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
                client = Client(cluster)
        except (OSError, TimeoutError) as exc:
            raise CvlabelError(f"cannot reach the Dask scheduler at {scheduler or 'a new LocalCluster'}: {exc}") from None
        try:
            pending = iter(calls)

            def submit(args: tuple):
                return client.submit(function, *args, retries=SHARD_RETRIES, pure=False)

            threads = max(1, sum(client.nthreads().values()))
            running = as_completed([submit(args) for args in islice(pending, IN_FLIGHT_PER_THREAD * threads)])
            for future in running:
                try:
                    on_done(future.result())
                except Exception as exc:  # a shard that failed on every try: say which and why
                    raise CvlabelError(
                        f"a shard failed on the Dask cluster after {SHARD_RETRIES + 1} tries "
                        f"({type(exc).__name__}: {str(exc)[:300]}); can every worker read the clips and the "
                        "model and write to --out at the same paths?") from None
                for args in islice(pending, 1):
                    running.add(submit(args))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def local_workers(jobs: int) -> int:
    """LocalCluster size for --jobs: the number given, or one per core for 0."""
    return jobs if jobs > 0 else (os.cpu_count() or 1)
