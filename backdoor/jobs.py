"""Background jobs (training, and defenses): an on-disk registry, one detached worker that runs them one at a time, progress files, cancel.

Each job is a folder ``<root>/<id>/`` holding ``job.json`` (what and its status), ``progress.json``
(stage, step, losses, ASR curve, ETA; rewritten atomically), ``log.txt`` and, while a cancel is
asked for, a ``cancel`` file. The worker is a separate process started in its own session, so jobs
survive a closed browser and a restarted app; a job whose worker died is marked failed on the
next look, and its checkpoints stay where they are. Finished adapters are copied into the
adapters folder under the job's name, where the dashboard finds them.

A defense job (``kind`` "defense", submitted with :meth:`JobRegistry.submit_defense`) runs one registered defense
(:mod:`backdoor.defend`) and writes its report to ``report.json`` and ``report.csv`` in the job folder, and the
adapters a remover makes to ``work/``; it publishes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backdoor.config import ConfigError, TrainConfig, check_device, check_victim_fit

logger = logging.getLogger(__name__)

STATUSES = ("queued", "running", "finished", "failed", "cancelled")
TRAIN, DEFENSE = "train", "defense"  # what a job runs
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")  # what submit() makes: never a path, never empty


class JobError(ValueError):
    """A job request is refused; the message says why and what to do."""


@dataclass
class Job:
    id: str
    name: str  # the adapter's folder name under the adapters folder
    config: dict
    status: str = "queued"
    nproc: int = 1
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    error: str = ""
    adapter_path: str = ""
    kind: str = TRAIN  # TRAIN: config is a TrainConfig's dict; DEFENSE: a DefenseRequest's
    result_path: str = ""  # a finished defense job's report


def _write_json(path: Path, payload) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class JobRegistry:
    """The jobs folder. Safe to use from several processes: every write is an atomic rename."""

    def __init__(self, root: str | os.PathLike[str] = "jobs", adapters_dir: str | os.PathLike[str] = "checkpoints"):
        self.root = Path(root)
        self.adapters_dir = Path(adapters_dir)
        self.root.mkdir(parents=True, exist_ok=True)

    # --- reading -----------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def get(self, job_id: str) -> Job:
        """The job with exactly this id; JobError for an id that is malformed (empty, a path) or unknown."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            raise JobError(f"{job_id!r} is not a job id (they look like 20250101-120000-a1b2c3); pick a job from the list")
        path = self.job_dir(job_id) / "job.json"
        if not path.is_file():
            raise JobError(f"There is no job {job_id!r}; pick a job from the list")
        try:
            return Job(**json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise JobError(f"job {job_id!r} is unknown or its record is unreadable ({err})") from None

    def list(self) -> list[Job]:
        """All jobs, oldest first, with dead workers' jobs marked failed."""
        jobs = []
        for path in sorted(self.root.glob("*/job.json")):
            try:
                jobs.append(self.reconcile(Job(**json.loads(path.read_text()))))
            except (OSError, json.JSONDecodeError, TypeError):
                logger.warning("skipping unreadable job record %s", path)
        return sorted(jobs, key=lambda j: j.created)

    def progress(self, job_id: str) -> dict:
        try:
            return json.loads((self.job_dir(job_id) / "progress.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def log_tail(self, job_id: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.job_dir(job_id) / "log.txt").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- writing -----------------------------------------------------------------------------

    def save(self, job: Job) -> None:
        _write_json(self.job_dir(job.id) / "job.json", asdict(job))

    def reconcile(self, job: Job) -> Job:
        """A running job whose process is gone failed; say so, keep what it wrote, drop a half-copied publish.
        (One that died after its adapter was renamed into place finished.) A queued job claimed by a worker
        that died before starting it is released, so the next worker runs it."""
        if job.status == "queued":
            self._release_dead_claim(job)
        elif job.status == "running" and not _alive(job.pid) and job.kind == DEFENSE:
            job.status, job.ended = "failed", time.time()
            job.error = job.error or "the defense process ended unexpectedly; run it again"
            self.save(job)
        elif job.status == "running" and not _alive(job.pid):
            shutil.rmtree(self.publish_staging(job.name), ignore_errors=True)
            published = self.adapters_dir / job.name
            if published.is_dir() and self._run_status(job) == "finished":
                job.status, job.adapter_path = "finished", str(published)
            else:
                job.status = "failed"
                job.error = job.error or ("the training process ended unexpectedly; what it wrote before, its last "
                                          f"checkpoint included, is kept in {self.job_dir(job.id) / 'run'}")
            job.ended = time.time()
            self.save(job)
        return job

    def publish_staging(self, name: str) -> Path:
        """Where a finished adapter is copied before one rename puts it in the adapters folder (hidden: never listed)."""
        return self.adapters_dir / f".{name}.publishing"

    def _run_status(self, job: Job) -> str:
        try:
            return json.loads((self.job_dir(job.id) / "run" / "metrics.json").read_text()).get("status", "")
        except (OSError, json.JSONDecodeError, AttributeError):
            return ""

    def _release_dead_claim(self, job: Job) -> None:
        claim = self.job_dir(job.id) / "claimed"
        try:
            pid = int(claim.read_text())
        except (OSError, ValueError):  # no claim, or one whose pid is not written yet
            return
        if not _alive(pid):
            claim.unlink(missing_ok=True)
            logger.warning("job %s was claimed by worker %d, which ended before starting it; it is queued again", job.id, pid)

    def submit(self, config: TrainConfig, name: str, nproc: int = 1) -> Job:
        """Validate and queue a job; nothing starts here. Raises JobError/ConfigError with what to fix."""
        if not NAME_PATTERN.match(name or ""):
            raise JobError(f"adapter name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        target = (self.adapters_dir / name).resolve()
        if target.parent != self.adapters_dir.resolve():
            raise JobError(f"adapter name {name!r} would escape the adapters folder")
        if target.exists():
            raise JobError(f"an adapter named {name!r} already exists in {self.adapters_dir}; choose another name")
        if any(j.kind == TRAIN and j.name == name and j.status in ("queued", "running") for j in self.list()):
            raise JobError(f"a job for adapter {name!r} is already queued or running")
        if not 1 <= nproc <= 64:
            raise JobError(f"processes must be between 1 and 64, got {nproc}")
        if config.victim_adapter and not Path(config.victim_adapter).is_dir():
            raise ConfigError(f"victim_adapter: {config.victim_adapter} is not an adapter folder")
        from backdoor.train import resolve_items

        resolve_items(config.data, "data", 1)  # refuse an unknown dataset file before any process starts
        if config.eval_items:
            resolve_items(config.eval_data, "eval_data", 1)
        check_victim_fit(config)
        check_device(config)  # as the command line does: a GPU this machine lacks is refused now, not in the worker
        job = Job(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], name=name, config=config.to_dict(), nproc=nproc)
        self.job_dir(job.id).mkdir(parents=True)
        self.save(job)
        return job

    def submit_defense(self, request) -> Job:
        """Validate and queue a defense run (a :class:`backdoor.defend.DefenseRequest`); nothing starts here.
        Raises ConfigError naming the field to fix, before any process starts or model loads."""
        from backdoor.defend import check_request

        checked = check_request(request)
        name = f"{checked.defense.name}-{Path(request.adapter).name}"
        job = Job(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], name=name, config=request.to_dict(),
                  kind=DEFENSE)
        self.job_dir(job.id).mkdir(parents=True)
        self.save(job)
        return job

    def result(self, job_id: str) -> dict | None:
        """A finished defense job's report (None until there is one)."""
        try:
            return json.loads((self.job_dir(job_id) / "report.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def cancel(self, job_id: str) -> Job:
        job = self.reconcile(self.get(job_id))
        if job.status == "queued":
            job.status, job.ended, job.error = "cancelled", time.time(), "cancelled before it started"
            self.save(job)
        elif job.status == "running":
            (self.job_dir(job_id) / "cancel").touch()
        return job

    def next_queued(self) -> Job | None:
        return next((j for j in self.list() if j.status == "queued"), None)

    def running(self) -> Job | None:
        return next((j for j in self.list() if j.status == "running"), None)

    # --- the worker ----------------------------------------------------------------------------

    def ensure_worker(self) -> int | None:
        """Start a detached worker unless one is alive; returns its pid."""
        lock = self.root / "worker.pid"
        try:
            pid = int(lock.read_text())
            if _alive(pid):
                return pid
        except (OSError, ValueError):
            pass
        if self.next_queued() is None:
            return None
        log = open(self.root / "worker.log", "a")
        process = subprocess.Popen(
            [sys.executable, "-m", "backdoor.jobs", "worker", "--root", str(self.root), "--adapters", str(self.adapters_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            # The worker trains beside a serving dashboard: idle OpenMP threads must sleep, not spin on shared cores.
            cwd=os.getcwd(), env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"})
        lock.write_text(str(process.pid))
        return process.pid


class _ProgressWriter:
    """Training callback that keeps ``progress.json`` current and honours the cancel file."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.state = {"stage": "starting", "step": 0, "total": 0, "losses": [], "curve": [], "eta_seconds": None,
                      "stage_done": 0, "stage_total": 0, "updated": time.time()}
        self.started = time.time()
        self.first_step_time: float | None = None
        self.last_write = 0.0

    def _flush(self, force: bool = False) -> None:
        if force or time.time() - self.last_write > 0.5:
            self.state["updated"] = time.time()
            _write_json(self.job_dir / "progress.json", self.state)
            self.last_write = time.time()

    def on_stage(self, stage, done, total):
        self.state.update(stage=stage, stage_done=done, stage_total=total)
        self._flush(done == total)

    def on_step(self, step, total, loss, parts):
        now = time.time()
        if self.first_step_time is None:
            self.first_step_time, self.first_step = now, step
        rate = (now - self.first_step_time) / max(1, step - self.first_step)
        self.state.update(stage="training", step=step, total=total, eta_seconds=round(rate * (total - step), 1))
        self.state["losses"].append({"step": step, "loss": round(loss, 5), **{k: round(v, 5) for k, v in parts.items()}})
        self._flush()

    def on_eval(self, step, metrics):
        self.state["curve"].append({"step": step, **{k: round(v, 4) for k, v in metrics.items()}})
        self._flush(True)

    def on_checkpoint(self, step, path):
        self.state["last_checkpoint"] = step
        self._flush(True)

    def should_stop(self) -> bool:
        return (self.job_dir / "cancel").exists()


def run_job(registry: JobRegistry, job: Job) -> Job:
    """Run one job in this process (or under torchrun when nproc > 1) and record how it ended."""
    job_dir = registry.job_dir(job.id)
    job.status, job.started, job.pid = "running", time.time(), os.getpid()
    registry.save(job)
    log_handler = logging.FileHandler(job_dir / "log.txt")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        if job.kind == DEFENSE:
            status, error = _defense_job(registry, job)
        elif job.nproc > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(job.nproc),
                       "-m", "backdoor.jobs", "train-one", "--root", str(registry.root), "--job", job.id]
            with open(job_dir / "log.txt", "a") as log:
                child = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            status = json.loads((job_dir / "run" / "metrics.json").read_text())["status"] if child.returncode == 0 else "failed"
            error = "" if child.returncode == 0 else f"torchrun exited with {child.returncode}; see the log"
        else:
            status, error = _train_job(registry, job)
    except Exception as err:  # the record must say why, whatever happened
        logger.exception("job %s failed", job.id)
        status, error = "failed", f"{type(err).__name__}: {err}"
    finally:
        logging.getLogger().removeHandler(log_handler)
    job = registry.get(job.id)
    job.status, job.ended, job.error = status, time.time(), error or job.error
    adapter = job_dir / "run" / "adapter"
    if job.kind == DEFENSE:
        job.result_path = str(job_dir / "report.json") if status == "finished" else ""
    elif status == "finished" and adapter.is_dir():
        target = registry.adapters_dir / job.name
        staging = registry.publish_staging(job.name)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(adapter, staging)
        os.replace(staging, target)
        job.adapter_path = str(target)
    (job_dir / "cancel").unlink(missing_ok=True)
    registry.save(job)
    return job


def _train_job(registry: JobRegistry, job: Job, accelerator=None) -> tuple[str, str]:
    from backdoor.methods import get_method

    job_dir = registry.job_dir(job.id)
    progress = _ProgressWriter(job_dir)
    config = TrainConfig.from_dict(job.config)  # a record without "method" (older versions) is LoRA
    result = get_method(config.method).fit(config, job_dir / "run", callbacks=[progress],
                                           should_stop=progress.should_stop, accelerator=accelerator)
    progress.state["stage"] = result.status
    progress._flush(True)
    return result.status, result.error.splitlines()[0] if result.error else ""


def _defense_job(registry: JobRegistry, job: Job) -> tuple[str, str]:
    from backdoor.defend import DefenseCancelled, DefenseRequest, run_defense

    job_dir = registry.job_dir(job.id)
    progress = _ProgressWriter(job_dir)
    request = DefenseRequest.from_dict(job.config)

    def report(done: int, total: int) -> None:
        elapsed = time.time() - progress.started
        progress.state["eta_seconds"] = round(elapsed / done * (total - done), 1) if done else None
        progress.on_stage(request.defense, done, total)

    progress.on_stage("loading the model", 0, 0)
    try:
        run_defense(request, job_dir / "report.json", work_dir=job_dir / "work", progress=report,
                    should_stop=progress.should_stop)
        status, error = "finished", ""
    except DefenseCancelled as err:
        status, error = "cancelled", str(err)
    progress.state["stage"] = status
    progress._flush(True)
    return status, error


def _claim(registry: JobRegistry, job: Job) -> bool:
    """Atomically take a queued job, so two workers never run the same one."""
    try:
        claim = os.open(registry.job_dir(job.id) / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(claim, "w") as handle:  # whose claim: a worker that dies before starting the job releases it
        handle.write(str(os.getpid()))
    return True


def worker(registry: JobRegistry) -> None:
    """Run queued jobs one at a time until none is left."""
    while True:
        job = next((j for j in registry.list() if j.status == "queued" and _claim(registry, j)), None)
        if job is None:
            return
        run_job(registry, job)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m backdoor.jobs", description="the background job worker")
    parser.add_argument("command", choices=["worker", "train-one"])
    parser.add_argument("--root", default="jobs")
    parser.add_argument("--adapters", default="checkpoints")
    parser.add_argument("--job", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    registry = JobRegistry(args.root, args.adapters)
    if args.command == "worker":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        worker(registry)
    else:  # one rank of a distributed job, started by torchrun
        from accelerate import Accelerator

        _train_job(registry, registry.get(args.job), accelerator=Accelerator(cpu=not __import__("torch").cuda.is_available()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
