"""Task runners the flows can run on: a thread pool in this process, or a Dask cluster.

With Dask each task run (one case's stage) executes in a worker process; tasks receive paths
and content hashes, never arrays, so nothing large crosses the network. A worker that dies
mid-task (killed, out of memory) loses only that task: the scheduler hands it to another worker,
and a task that keeps killing workers fails, leaving its case failed and the rest of the batch
going on.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from prefect.task_runners import ThreadPoolTaskRunner

__all__ = ["RunnerKind", "make_task_runner"]

RunnerKind = Literal["thread", "dask"]


def make_task_runner(
    kind: RunnerKind,
    *,
    address: str | None = None,
    workers: int = 2,
    threads_per_worker: int | None = None,
    memory_per_worker: str = "4GiB",
    max_threads: int = 1,
) -> Any:
    """A Prefect task runner.

    Parameters
    ----------
    kind : {'thread', 'dask'}
    address : str, optional
        Scheduler of a running dask.distributed cluster (``tcp://host:8786``); without it a
        LocalCluster of ``workers`` processes is started for the flow run and closed after.
    workers : int
        LocalCluster worker processes.
    threads_per_worker : int, optional
        Numerical threads (PyTorch/OpenMP) of each LocalCluster worker; default: the CPU count
        shared out among the workers, so workers do not oversubscribe the cores.
    memory_per_worker : str
        LocalCluster memory limit per worker; a worker above it is restarted by its nanny and
        its task run is rescheduled.
    max_threads : int
        Task runs in parallel on the thread runner.
    """
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=max_threads)
    if kind != "dask":
        raise ValueError(f"unknown runner {kind!r}; use thread or dask")
    from prefect_dask import DaskTaskRunner

    if address is not None:
        return DaskTaskRunner(address=address)
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    numerical = {
        name: str(threads)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
    }
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,  # one task run (one case stage) at a time per worker
            "processes": True,
            "memory_limit": memory_per_worker,
            "dashboard_address": None,
            "env": numerical,
        },
    )
