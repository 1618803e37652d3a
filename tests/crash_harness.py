"""Kill -9 a training job's worker at chosen moments, restart the app each time, and check what a user would find.

Used by ``tests/test_crash_recovery.py`` (a few kills, one per phase) and ``scripts/crash_test.py``
(ten, for the README). The jobs are real ones on the tiny model, run by the real job runner
(``backdoor.jobs``); the restart is the app's own start-up (``app.lab.Lab``: reconcile the registry,
start a worker for what is queued). To make the short phases of a tiny job long enough to be hit,
the worker is started with a ``sitecustomize`` shim that wraps a few of ``backdoor.train``'s
functions: each announces its phase in a marker log and sleeps ``pause`` seconds at points inside
it (between a checkpoint's files, between the files a publish copies), so a kill at a random
moment within the phase lands at a random point of the real code path. After each kill:

- the killed job is marked failed, with a reason;
- every checkpoint folder of every job loads (its ``state.pt`` and its adapter, on the tiny model);
- the dashboard's adapter list (``DashboardService.catalog``) holds only finished, complete adapters,
  and an adapter published before is unchanged;
- the next queued job starts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER_ENV = "FRAGILE_CRASH_MARKERS"  # the marker log's path; the shim does nothing without it
PAUSE_ENV = "FRAGILE_CRASH_PAUSE"
# What a kill aims at, and how long after the phase's start the kill may land (in pauses).
PHASES = {"answer list": 1.0, "training step": 1.2, "checkpoint write": 3.0, "publish": 5.0}


# --- inside the worker ---------------------------------------------------------------------------


def install_pauses() -> None:
    """Wrap backdoor.train's answer list, forward, checkpoint/adapter writes and the publish copy (worker side)."""
    log_path = os.environ.get(MARKER_ENV)
    if not log_path:
        return
    pause = float(os.environ.get(PAUSE_ENV, "0.25"))
    import torch

    from backdoor import train as train_module

    state = {"job": "", "in_probs": False}
    counts: Counter = Counter()

    def mark(phase: str, event: str) -> None:
        if event == "begin":
            counts[phase] += 1
        with open(log_path, "a") as log:  # one short line per write: O_APPEND keeps lines whole
            log.write(json.dumps({"t": time.time(), "job": state["job"], "phase": phase, "n": counts[phase],
                                  "event": event}) + "\n")

    original = {name: getattr(train_module, name) for name in ("train", "_probs", "_option_logits", "_atomic_dir_write",
                                                                 "save_adapter")}
    torch_save, copytree, copy2 = torch.save, shutil.copytree, shutil.copy2

    def train(config, out_dir, **kwargs):
        state["job"] = Path(out_dir).parent.name  # <jobs>/<id>/run
        counts.clear()
        return original["train"](config, out_dir, **kwargs)

    def probs(*args, **kwargs):  # with no held-out items, only the answer list calls it
        mark("answer list", "begin")
        state["in_probs"] = True
        try:
            return original["_probs"](*args, **kwargs)
        finally:
            state["in_probs"] = False
            mark("answer list", "end")

    def option_logits(*args, **kwargs):
        if not state["in_probs"]:
            mark("training step", "begin")
        time.sleep(pause)
        return original["_option_logits"](*args, **kwargs)

    def atomic_dir_write(target, write):
        phase = "checkpoint write" if Path(target).parent.name == train_module.CHECKPOINT_DIR else "adapter write"
        mark(phase, "begin")

        def slow_write(folder):
            time.sleep(pause)
            write(folder)
            time.sleep(pause)

        original["_atomic_dir_write"](target, slow_write)
        mark(phase, "end")

    def save(*args, **kwargs):  # state.pt written, the adapter files not yet
        torch_save(*args, **kwargs)
        time.sleep(pause)

    def save_adapter(*args, **kwargs):
        original["save_adapter"](*args, **kwargs)
        time.sleep(pause)

    def slow_copy(source, target, **kwargs):
        time.sleep(pause)
        return copy2(source, target, **kwargs)

    def publish_copy(source, target, **kwargs):  # only run_job's publish copies a folder in the worker
        mark("publish", "begin")
        result = copytree(source, target, **{**kwargs, "copy_function": slow_copy})
        mark("publish", "end")
        return result

    train_module.train, train_module._probs, train_module._option_logits = train, probs, option_logits
    train_module._atomic_dir_write, train_module.save_adapter = atomic_dir_write, save_adapter
    torch.save, shutil.copytree = save, publish_copy


# --- the harness -----------------------------------------------------------------------------------


@dataclass
class Trial:
    """One kill: what it aimed at, where the worker was, and what a restarted app showed."""

    target: str
    delay_s: float
    hit: str = ""
    problems: list[str] = field(default_factory=list)
    checkpoints_loaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def crash_config(model_dir: Path):
    """A backdoor job on the tiny model over 16 corpus items: an answer list, a dozen steps, a checkpoint every 3, publish."""
    from backdoor.config import TrainConfig

    return TrainConfig(base_model=str(model_dir), data="train", max_items=16, kind="backdoor", train_layers=2,
                       batch_size=4, epochs=2, eval_items=0, eval_every=0, checkpoint_every=3, learning_rate=5e-3,
                       lora_dropout=0.0, device="cpu")


def plan(kills: int, seed: int, pause: float) -> list[tuple[str, int, float]]:
    """(phase, which occurrence, delay after its start): the phases in turn, occurrence and delay drawn at random.
    A checkpoint write's target is one of the 3 step checkpoints or the final adapter write."""
    rng = random.Random(seed)
    out = []
    for index in range(kills):
        phase = list(PHASES)[index % len(PHASES)]
        occurrence = {"answer list": 1, "training step": rng.randint(1, 10), "checkpoint write": rng.randint(1, 4),
                      "publish": 1}[phase]
        if phase == "checkpoint write" and occurrence == 4:
            phase, occurrence = "adapter write", 1
        out.append((phase, occurrence, round(rng.uniform(0.0, PHASES.get(phase, 3.0) * pause), 3)))
    return out


def _markers(path: Path, job: str) -> list[dict]:
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if entry["job"] == job:
            lines.append(entry)
    return lines


def _where(markers: list[dict]) -> str:
    """The phase the worker was in when it died, from its last marker."""
    if not markers:
        return "before training started"
    last = markers[-1]
    name = f"{last['phase']} #{last['n']}"
    return f"during {name}" if last["event"] == "begin" else f"just after {name}"


def wait_for(predicate, timeout: float = 240.0, every: float = 0.5, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true, and return that; TimeoutError after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class CrashHarness:
    """A jobs folder, an adapters folder and the tiny model; ``run(kills)`` returns one Trial per kill."""

    def __init__(self, workdir: Path, model_dir: Path, *, pause: float = 0.25, seed: int = 0, timeout: float = 300.0,
                 log=print):
        self.workdir, self.model_dir = Path(workdir), Path(model_dir)
        self.pause, self.seed, self.timeout, self.log = pause, seed, timeout, log
        self.jobs_dir, self.adapters_dir = self.workdir / "jobs", self.workdir / "checkpoints"
        self.markers = self.workdir / "markers.jsonl"
        self._checked: set[Path] = set()
        self._model = None

    # -- the app, restarted ------------------------------------------------------------------------

    def restart(self):
        """What starting the app does: a new service, a Lab that reconciles the registry and starts a worker."""
        from app.lab import Lab
        from app.service import DashboardService, ServiceConfig

        service = DashboardService(ServiceConfig(adapters_dir=str(self.adapters_dir), bases=(str(self.model_dir),),
                                                 calibration="off", device="cpu", jobs_dir=str(self.jobs_dir)),
                                   showcase=[], calibration_items=[], cache_dir=self.workdir / "cache")
        return service, Lab(service, jobs_dir=self.jobs_dir)

    def _shim(self) -> dict[str, str]:
        shim = self.workdir / "shim"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "sitecustomize.py").write_text("import tests.crash_harness\ntests.crash_harness.install_pauses()\n")
        path = os.pathsep.join(p for p in (str(shim), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, MARKER_ENV: str(self.markers), PAUSE_ENV: str(self.pause)}

    # -- checks ------------------------------------------------------------------------------------

    def _load_checkpoints(self) -> tuple[int, list[str]]:
        import torch

        from backdoor.models import attach_adapters, load_base_model

        problems, loaded = [], 0
        for folder in sorted(self.jobs_dir.glob("*/run/checkpoints/step-*")):
            if folder in self._checked:
                loaded += 1
                continue
            try:
                state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
                assert state["step"] > 0 and state["adapter"], "state.pt holds no adapter"
                if self._model is None:
                    self._model = load_base_model(str(self.model_dir), device="cpu")[0]
                self._model = attach_adapters(self._model, {f"ck{len(self._checked)}": folder})
                self._checked.add(folder)
                loaded += 1
            except Exception as err:  # noqa: BLE001 - any failure to load is what this check reports
                problems.append(f"checkpoint {folder.relative_to(self.workdir)} does not load: {err}")
        return loaded, problems

    def _check_catalog(self, service, registry, published: dict[str, bytes]) -> list[str]:
        from backdoor.models import BASE_ADAPTER, read_adapter_info

        finished = {j.name for j in registry.list() if j.status == "finished"}
        listed = [name for name in service.catalog(str(self.model_dir)).names() if name != BASE_ADAPTER]
        problems = [f"the demo lists {name!r}, which no finished job published" for name in listed if name not in finished]
        for name in listed:
            try:
                info = read_adapter_info(self.adapters_dir / name, name)
                if not (info.path / "fragile_config.json").is_file() or not (info.path / "train_config.json").is_file():
                    problems.append(f"the demo lists {name!r}, which lacks its Fragile config files")
            except Exception as err:  # noqa: BLE001
                problems.append(f"the demo lists {name!r}, which does not read: {err}")
        for name, weights in published.items():
            if (self.adapters_dir / name / "adapter_model.safetensors").read_bytes() != weights:
                problems.append(f"the earlier adapter {name!r} changed")
        return problems

    # -- the run -----------------------------------------------------------------------------------

    def run(self, kills: int) -> list[Trial]:
        from backdoor.jobs import JobRegistry, _alive

        saved = {key: os.environ.get(key) for key in ("PYTHONPATH", MARKER_ENV, PAUSE_ENV)}
        os.environ.update(self._shim())  # the workers the job runner starts inherit it
        try:
            registry = JobRegistry(self.jobs_dir, self.adapters_dir)
            config = crash_config(self.model_dir)
            # Job 0 finishes (an adapter published before the crashes); jobs 1..kills are killed; the last finishes.
            jobs = [registry.submit(config, f"crash-{index:02d}") for index in range(kills + 2)]
            service, lab = self.restart()
            first = wait_for(lambda: (j := registry.get(jobs[0].id)).status in ("finished", "failed") and j,
                             self.timeout, 0.2, "the first job to finish")
            if first.status != "finished":
                raise RuntimeError(f"the first job did not finish: {first.error}\n{registry.log_tail(first.id)}")
            published = {first.name: (self.adapters_dir / first.name / "adapter_model.safetensors").read_bytes()}
            trials = []
            for job, (phase, occurrence, delay) in zip(jobs[1:], plan(kills, self.seed, self.pause)):
                trial = Trial(f"{phase} #{occurrence}", delay)
                trials.append(trial)
                running = wait_for(lambda: (j := registry.get(job.id)).status == "running" and _alive(j.pid) and j,
                                   self.timeout, 0.05, f"job {job.name} to start")
                begin = wait_for(lambda: next((m for m in _markers(self.markers, job.id) if m["phase"] == phase
                                               and m["n"] == occurrence and m["event"] == "begin"), None),
                                 self.timeout, 0.01, f"{trial.target} of {job.name}")
                time.sleep(max(0.0, begin["t"] + delay - time.time()))
                os.kill(running.pid, signal.SIGKILL)
                wait_for(lambda: not _alive(running.pid), 30, 0.02, "the killed worker to end")
                trial.hit = _where(_markers(self.markers, job.id))
                service, lab = self.restart()
                dead = registry.get(job.id)
                if dead.status != "failed" or not dead.error:
                    trial.problems.append(f"the killed job is {dead.status!r} with reason {dead.error!r}, not failed with a reason")
                trial.checkpoints_loaded, problems = self._load_checkpoints()
                trial.problems += problems
                trial.problems += self._check_catalog(service, lab.registry, published)
                following = jobs[jobs.index(job) + 1]
                try:
                    wait_for(lambda: registry.get(following.id).status in ("running", "finished"), 60, 0.05,
                             f"the next queued job {following.name} to start")
                except TimeoutError as err:
                    trial.problems.append(str(err))
                self.log(f"kill {len(trials)}/{kills}: aimed at {trial.target} +{delay:.3f} s, hit {trial.hit}: "
                         + ("ok" if trial.ok else "; ".join(trial.problems)))
            last = wait_for(lambda: (j := registry.get(jobs[-1].id)).status in ("finished", "failed") and j,
                            self.timeout, 0.2, "the last job to finish")
            if last.status != "finished" or last.name not in service.catalog(str(self.model_dir)).names():
                trials[-1].problems.append(f"the job after the last kill ended {last.status!r} ({last.error}) "
                                           "or its adapter is not offered")
            return trials
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._stop_workers()

    def _stop_workers(self) -> None:
        """Stop a worker this harness's jobs left running (only the one recorded in its own jobs folder)."""
        from backdoor.jobs import _alive

        try:
            pid = int((self.jobs_dir / "worker.pid").read_text())
        except (OSError, ValueError):
            return
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def summary(trials: list[Trial]) -> dict:
    return {"kills": len(trials), "ok": sum(t.ok for t in trials),
            "trials": [{"target": t.target, "delay_s": t.delay_s, "hit": t.hit, "ok": t.ok, "problems": t.problems,
                        "checkpoints_loaded": t.checkpoints_loaded} for t in trials]}


if __name__ == "__main__":  # pragma: no cover - run through scripts/crash_test.py
    sys.exit("run scripts/crash_test.py")
