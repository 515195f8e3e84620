"""`execution.executor: ray`: the same results as the local executor, the store written by the driver only,
a failing run recorded while the others finish, a finished sweep skipped, and a clear error without Ray.

One local Ray (2 CPUs) serves the module; its workers run tests/ray_worker_hooks.py at start-up, which logs
what each worker does (runs computed, sqlite files opened) and registers a method that raises.
"""

import importlib.util
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lowrank_audit.config import MethodSpec, with_execution
from lowrank_audit.config.spec import ExecutionSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.executors import LocalExecutor, RayExecutor
from lowrank_audit.methods import METHODS
from lowrank_audit.store import Store
from lowrank_audit.store.sqlite import STORE_FILE
from lowrank_audit.sweep import run_sweep

ray = pytest.importorskip("ray")

import ray_worker_hooks  # noqa: E402  (tests/ is on sys.path; the workers get it through PYTHONPATH)

TIMING = {"train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb", "eval_seconds"}


def results(out):
    """Every non-timing metric, keyed so two stores can be compared row by row."""
    return {(m["run_id"], m["metric"], m["group_name"], m["split"], m["layer"]): (m["value"], m["ci_low"], m["ci_high"])
            for m in Store.in_dir(out).metrics() if m["metric"] not in TIMING}


def statuses(out):
    return {(r["method"], r["rank"]): r["status"] for r in Store.in_dir(out).runs()}


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory):
    """A local Ray for this module whose workers run ray_worker_hooks.setup and log to the returned file."""
    log = tmp_path_factory.mktemp("ray") / "workers.log"
    path = [str(Path(__file__).parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             runtime_env={"worker_process_setup_hook": "ray_worker_hooks.setup",
                          "env_vars": {"PYTHONPATH": os.pathsep.join(path), ray_worker_hooks.LOG_VARIABLE: str(log)}})
    yield log
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(smoke_spec):
    """Full fine-tuning, LoRA r=1 (scored against the full fine-tune's weights) and a method that raises."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(METHODS._items, ray_worker_hooks.Explodes.name, ray_worker_hooks.Explodes)
        methods = [smoke_spec.methods[0], smoke_spec.methods[1].model_copy(update={"sweep": {"rank": [1]}}),
                   MethodSpec(name=ray_worker_hooks.Explodes.name)]
        yield smoke_spec.model_copy(update={"methods": methods})


@pytest.fixture(scope="module")
def sweeps(spec, worker_log, tmp_path_factory):
    """The same spec and seed through both executors."""
    out = tmp_path_factory.mktemp("sweeps")
    local = run_sweep(spec, out / "local", progress=False)
    distributed = run_sweep(with_execution(spec, "ray"), out / "ray", progress=False)
    return out, local, distributed


def test_ray_gives_the_local_executors_results(sweeps):
    out, _, distributed = sweeps
    assert (distributed.planned, distributed.finished, len(distributed.failed)) == (4, 3, 1)
    assert statuses(out / "ray") == statuses(out / "local")
    a, b = results(out / "local"), results(out / "ray")
    assert a.keys() == b.keys()
    # Not all exact: a Ray worker runs torch with cpus_per_run (1) threads, this process with all cores, and
    # the SVDs behind weight_subspace_overlap sum in a thread-dependent order (about 1e-8 relative here).
    for key, row in a.items():
        assert b[key] == tuple(x if x is None else pytest.approx(x, rel=1e-6, abs=1e-9) for x in row), key
    assert (out / "ray" / "runs").is_dir() and sorted(p.name for p in (out / "ray" / "runs").iterdir()) == \
        sorted(p.name for p in (out / "local" / "runs").iterdir())


def test_a_run_measured_before_the_full_fine_tune_is_scored_against_it(sweeps, worker_log):
    out, _, _ = sweeps
    runs = {(r["method"], r["rank"]): r["run_id"] for r in Store.in_dir(out / "ray").runs()}
    assert ("waited", runs["full", None]) in {(kind, detail) for kind, _, detail in ray_worker_hooks.read_log(worker_log)}
    # the worker hook held the full fine-tune back until LoRA was measured; LoRA still has its distance to it
    assert any(key[0] == runs["lora", 1] and key[1] == "kl_to_full" for key in results(out / "ray"))


def test_only_the_driver_opens_the_store(sweeps, worker_log, tmp_path):
    out, _, _ = sweeps
    events = ray_worker_hooks.read_log(worker_log)
    ran_in = {detail: pid for kind, pid, detail in events if kind == "run"}
    assert set(ran_in) == {r["run_id"] for r in Store.in_dir(out / "ray").runs()}  # every run ran in a worker
    assert os.getpid() not in ran_in.values()
    assert not [e for e in events if e[0] == "sqlite" and e[2].endswith(STORE_FILE)]

    @ray.remote(num_cpus=1)
    def opens_a_store(folder):  # the check sees a worker that does open a store
        Store.in_dir(folder).close()

    ray.get(opens_a_store.remote(str(tmp_path)))
    assert ("sqlite", str(tmp_path / STORE_FILE)) in {(k, d) for k, _, d in ray_worker_hooks.read_log(worker_log)}


def test_a_failing_run_is_recorded_and_the_others_finish(sweeps):
    out, local, distributed = sweeps
    (run_id, error), = distributed.failed
    assert error.startswith("RuntimeError: boom in optimizer") and "Traceback" in error
    runs = {r["method"]: r for r in Store.in_dir(out / "ray").runs()}
    assert runs["explodes"]["run_id"] == run_id and runs["explodes"]["status"] == "failed"
    assert "boom in optimizer" in runs["explodes"]["error"]
    assert {m: r["status"] for m, r in runs.items() if m != "explodes"} == dict.fromkeys(["base", "full", "lora"], "finished")
    assert local.failed[0][1].splitlines()[0] == error.splitlines()[0]


def test_rerunning_a_finished_ray_sweep_skips_everything(sweeps, spec, worker_log):
    out, _, _ = sweeps
    finished = with_execution(spec.model_copy(update={"methods": spec.methods[:2]}), "ray")
    before = results(out / "ray"), Store.in_dir(out / "ray").runs()
    runs_before = len([e for e in ray_worker_hooks.read_log(worker_log) if e[0] == "run"])
    again = run_sweep(finished, out / "ray", progress=False)
    assert (again.planned, again.skipped, again.finished, again.failed) == (3, 3, 0, [])
    assert (results(out / "ray"), Store.in_dir(out / "ray").runs()) == before
    assert len([e for e in ray_worker_hooks.read_log(worker_log) if e[0] == "run"]) == runs_before


class Job:
    """A job of the executor tests below: a name, and a folder where its work leaves marks."""

    def __init__(self, name, folder):
        self.name, self.folder = name, folder


def work(job, shared, context):
    if job.name == "dies":
        os._exit(1)  # the worker process dies: Ray retries the task, then reports a RayError
    return f"{job.name} got {shared} in a worker without context {context}"


def test_ray_yields_a_job_whose_worker_died_as_an_error_and_the_others_results(worker_log, tmp_path):
    with RayExecutor(ExecutionSpec(executor="ray"), False) as executor:
        done = {job.name: result for job, result in
                executor.run(work, [(Job("dies", tmp_path), 0), (Job("lives", tmp_path), 1)], "ctx")}
    assert isinstance(done["dies"], ray.exceptions.RayError)
    assert done["lives"] == "lives got 1 in a worker without context None"


def noise(job, shared, context):
    """What a worker shows of a library's warning and of lowrank_audit's own, how loud transformers is, tqdm's setting."""
    import io
    import warnings

    import transformers

    import lowrank_audit

    shown = io.StringIO()
    warnings.showwarning("library noise", FutureWarning, transformers.__file__, 1, file=shown)
    warnings.showwarning("own warning", UserWarning, lowrank_audit.__file__, 1, file=shown)
    return shown.getvalue(), transformers.utils.logging.get_verbosity(), os.environ.get("TQDM_DISABLE")


@pytest.mark.parametrize("quiet_driver", [True, False])
def test_ray_workers_hide_the_libraries_noise_when_the_driver_does(worker_log, tmp_path, monkeypatch, quiet_driver):
    from lowrank_audit.executors import ray_tasks

    monkeypatch.setattr(ray_tasks, "is_quiet", lambda: quiet_driver)  # the driver ran without --verbose, or with it
    with RayExecutor(ExecutionSpec(executor="ray"), False) as executor:
        [(_, (shown, verbosity, tqdm_disable))] = list(executor.run(noise, [(Job("probe", tmp_path), None)], None))
    assert "own warning" in shown
    assert ("library noise" in shown) is not quiet_driver
    if quiet_driver:  # set before the worker imported transformers and tqdm
        assert verbosity == logging.ERROR and tqdm_disable == "1"


def test_the_local_executor_takes_each_job_only_once_the_one_before_is_done(tmp_path):
    events = []

    def jobs():  # as the sweep makes them: making a job marks its run as running in the store
        for name in ("first", "second"):
            events.append(f"made {name}")
            yield Job(name, tmp_path), name.upper()

    def local_work(job, shared, context):
        events.append(f"ran {job.name}")
        return shared, context

    done = [(job.name, result) for job, result in LocalExecutor(ExecutionSpec(), False).run(local_work, jobs(), "ctx")]
    assert done == [("first", ("FIRST", "ctx")), ("second", ("SECOND", "ctx"))]
    assert events == ["made first", "ran first", "made second", "ran second"]


def test_ray_is_reached_before_the_model_loads(smoke_spec, tmp_path, monkeypatch):
    from lowrank_audit import sweep

    def unreachable(self):
        raise AuditError("cannot connect to the Ray cluster at 'head:6379'")

    loads = []
    monkeypatch.setattr(RayExecutor, "__enter__", unreachable)
    monkeypatch.setattr(sweep, "load_model", lambda *args: loads.append(args))
    with pytest.raises(AuditError, match="cannot connect to the Ray cluster at 'head:6379'"):
        run_sweep(with_execution(smoke_spec, ray_address="head:6379"), tmp_path, progress=False)
    assert loads == [] and not (tmp_path / STORE_FILE).exists()


def test_missing_ray_is_a_clear_error(smoke_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the package
    with pytest.raises(AuditError, match=r"Ray is not installed\. Install it with: pip install 'lowrank-audit\[ray\]'"):
        run_sweep(with_execution(smoke_spec, "ray"), tmp_path, progress=False)
    assert not (tmp_path / STORE_FILE).exists()  # refused before the store or the model


def test_cli_executor_flag_reaches_the_sweep(tmp_path, monkeypatch, capsys):
    from lowrank_audit.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(sys, "argv", ["lowrank-audit", "run", "--preset", "smoke", "--executor", "ray", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.replace("\n", " ")
    assert exit_.value.code == 2 and "pip install 'lowrank-audit[ray]'" in err and "Traceback" not in err


@pytest.mark.parametrize("executor, address, message", [
    ("rayy", None, "execution.executor: Input should be 'local' or 'ray'"),
    ("local", "auto", "--ray-address needs the ray executor"),
])
def test_bad_execution_flags_are_user_errors(smoke_spec, executor, address, message):
    with pytest.raises(AuditError, match=message):
        with_execution(smoke_spec, executor, address)


def test_ray_address_alone_selects_ray(smoke_spec):
    execution = with_execution(smoke_spec, ray_address="ray://head:10001").execution
    assert (execution.executor, execution.ray_address) == ("ray", "ray://head:10001")


@pytest.mark.parametrize("scheme", ["", pytest.param("ray://", marks=pytest.mark.skipif(
    importlib.util.find_spec("grpc") is None, reason="a ray:// address needs Ray Client (pip install 'ray[client]')"))])
def test_an_unreachable_address_is_a_clear_error_soon(scheme):
    with socket.socket() as s:  # a port nothing listens on; 127.0.0.2, as Ray would turn 127.0.0.1 into this
        s.bind(("127.0.0.2", 0))  # machine's network address
        address = f"{scheme}127.0.0.2:{s.getsockname()[1]}"
    # In a process of its own: this module's Ray may be running in this one, and the timeout ends a hang. Ray's
    # waits per try are shortened (30 s for a GCS, 5 to 15 s for Ray Client); the number of tries is left as is.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {
        "RAY_py_gcs_connect_timeout_s": "5", "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "2",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2"}
    proc = subprocess.run([sys.executable, "-c", "from lowrank_audit.config.spec import ExecutionSpec\n"
                           "from lowrank_audit.errors import AuditError\nfrom lowrank_audit.executors import RayExecutor\n"
                           f"execution = ExecutionSpec(executor='ray', ray_address={address!r})\n"
                           "try:\n    RayExecutor(execution, False).__enter__()\n"
                           "except AuditError as e:\n    print(e)"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"cannot connect to the Ray cluster at {address!r} (execution.ray_address / "
                                  "--ray-address): "), proc.stdout
    assert "Start that cluster (ray start --head), give a running cluster's address" in proc.stdout
    assert proc.stdout.rstrip().endswith("or none to start Ray on this machine.")
