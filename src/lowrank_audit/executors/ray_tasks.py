"""The `ray` executor: one Ray task per run, submitted at once; results come back to the driver, which alone writes."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

from tqdm.auto import tqdm

from ..config.spec import ExecutionSpec
from ..errors import AuditError
from ..logs import show_lines
from ..noise import is_quiet, quiet_env, quiet_libraries
from .base import C, Executor, J, Jobs, R, S, Work

RAY_INSTALL = "pip install 'lowrank-audit[ray]'"

logger = logging.getLogger(__name__)

GCS_TRIES = "RAY_gcs_server_port_wait_time_s"
"""Ray's budget of tries to reach a cluster's GCS (one per unit, at least one), read by ray.init as it connects.

Unset, ray.init gives an unreachable host:port 20 tries of about 40 s each, minutes that look like a hang; the
executor's ray.init makes it one try unless the user set it. (A ray:// address goes through Ray Client instead,
which gives up by itself after 3 tries, about 30 s.)
"""


@contextmanager
def _one_gcs_try() -> Iterator[None]:
    """GCS_TRIES at 1 while ray.init connects, then unset again: a Ray started here later must not get it
    (starting a GCS waits that many seconds for its port)."""
    if GCS_TRIES in os.environ:  # the user's own budget
        yield
        return
    os.environ[GCS_TRIES] = "1"
    try:
        yield
    finally:
        del os.environ[GCS_TRIES]


def _in_worker(work: Work, job: J, shared: S, quiet: bool) -> R:
    """The body of every Ray task: the work, without a context (the worker loads its own base model), its lines printed
    (Ray forwards them to the driver); the libraries' noise hidden first when the driver hides it (the command line
    without --verbose)."""
    if quiet:
        quiet_libraries()
    with show_lines():
        return work(job, shared, None)


class RayExecutor(Executor):
    """One Ray task per run with the configured CPUs and GPUs; results come back to the driver, which alone writes."""

    name = "ray"
    remote = True

    def __init__(self, execution: ExecutionSpec, progress: bool) -> None:
        super().__init__(execution, progress)
        try:
            import ray
        except ImportError:
            raise AuditError(
                f"execution.executor is 'ray' but Ray is not installed. Install it with: {RAY_INSTALL} "
                "(or use the local executor: drop --executor ray / set execution.executor: local)."
            ) from None
        self.ray = ray
        self._started = False

    def __enter__(self) -> "RayExecutor":
        """Use a Ray already initialised in this process; else connect to the configured address; else start Ray here."""
        ray = self.ray
        if not ray.is_initialized():
            address = self.execution.ray_address or os.environ.get("RAY_ADDRESS")
            try:
                if address:
                    with _one_gcs_try():
                        ray.init(address=address, logging_level=logging.ERROR)
                else:
                    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR)
            except (ConnectionError, ValueError) as e:
                source, none = (("execution.ray_address / --ray-address", "none") if self.execution.ray_address
                                else ("RAY_ADDRESS", "unset RAY_ADDRESS"))
                raise AuditError(
                    f"cannot connect to the Ray cluster at {address!r} ({source}): {str(e).rstrip('.')}. "
                    "Start that cluster (ray start --head), give a running cluster's address (e.g. 'ray://head:10001' "
                    f"or 'auto'), or {none} to start Ray on this machine."
                ) from None
            self._started = True
            have = ray.cluster_resources()
            logger.info(f"Ray: {'connected to ' + address if address else 'started a local instance'} "
                        f"({have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs)")
            if not address:
                self._check_fits(have)
        self._quiet = is_quiet()
        # A quiet driver's workers start with the libraries' quiet settings: a worker imports the libraries before the
        # task's body runs (to unpickle its arguments)
        env = {"runtime_env": {"env_vars": quiet_env()}} if self._quiet else {}
        self._task = ray.remote(num_cpus=self.execution.cpus_per_run, num_gpus=self.execution.gpus_per_run,
                                **env)(_in_worker)
        return self

    def _check_fits(self, have: dict[str, float]) -> None:
        """A run that asks for more than this machine has would wait forever; say so instead.

        Only for the instance started here: a cluster one connects to may add nodes on demand.
        """
        for key, need, option in (("CPU", self.execution.cpus_per_run, "cpus_per_run"),
                                  ("GPU", self.execution.gpus_per_run, "gpus_per_run")):
            if need > have.get(key, 0):
                self.__exit__()
                raise AuditError(
                    f"execution.{option} is {need:g} but this machine's Ray has {have.get(key, 0):g} {key}s; "
                    f"lower execution.{option} or connect to a cluster that has them (execution.ray_address)."
                )

    def __exit__(self, *exc: object) -> None:
        """Shut down only what this executor started; a cluster it connected to keeps running (only this driver leaves)."""
        if self._started:
            self.ray.shutdown()
            self._started = False

    def run(self, work: Work, jobs: Jobs, context: C) -> Iterator[tuple[J, R | Exception]]:
        """Submit every job at once, then yield results in the order they finish (ray.wait).

        No task waits inside for another's result (`ray.get` in a task, which Ray's docs call an anti-pattern): a
        blocked task keeps its worker, its memory and its GPUs while it waits."""
        ray = self.ray
        sent: dict[int, tuple[Any, Any]] = {}  # id(shared) -> (shared, its object ref); holding `shared` keeps its id unique
        pending: dict[Any, J] = {}
        try:
            for job, shared in jobs:
                if id(shared) not in sent:
                    sent[id(shared)] = (shared, ray.put(shared))
                pending[self._task.remote(work, job, sent[id(shared)][1], self._quiet)] = job
            sent.clear()  # the tasks hold what they need; the object store frees each result once nothing refers to it
            with tqdm(total=len(pending), desc="runs", unit="run", disable=not self.progress) as bar:
                while pending:
                    (ready,), _ = ray.wait(list(pending), num_returns=1)
                    job = pending.pop(ready)
                    try:
                        result: R | Exception = ray.get(ready)
                    except ray.exceptions.RayError as e:  # the worker died or the task could not run: the run fails
                        result = e
                    bar.update()
                    yield job, result
        finally:
            for ref in pending:  # the driver stops early (an error, Ctrl-C): leave no runs behind on a cluster
                ray.cancel(ref)
