"""The Evaluate and Fine-tuning tabs' service: dataset evaluations on the shared Scorer, and training jobs run by the background worker.

Nothing here imports gradio. Evaluations reuse the attack demo's loaded model and adapters
(:class:`~app.service.DashboardService`) and write their report, per-item CSV and figures to a
results folder for download. Training goes through :class:`backdoor.jobs.JobRegistry`: a job is
validated here and by the registry before any process starts, then runs in the registry's
detached worker, so it outlives the browser and the app. The training form is built from the
fields of :class:`backdoor.config.TrainConfig` (defaults, help, minimums, registries), so the CLI
and the page cannot drift apart.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from app.service import DashboardError, DashboardService
from backdoor import metrics
from backdoor.conditions import CLEAN, TRIGGER, column
from backdoor.config import ConfigError, TrainConfig
from backdoor.evaluate import evaluate
from backdoor.jobs import Job, JobError, JobRegistry
from backdoor.jobs import _alive as process_alive
from backdoor.methods import METHODS, get_method
from backdoor.methods.options import shown
from backdoor.models import BASE_ADAPTER, cpu_threads, set_cpu_threads
from backdoor.prompts import PromptError
from backdoor.triggers import TriggerError, TriggerSpec
from dataset.corpus import SPLITS, resolve_dataset
from dataset.schema import DatasetError, Item

logger = logging.getLogger(__name__)

EVAL_SPLITS = tuple(s for s in SPLITS if s != "showcase") + ("showcase",)
CORE_SHARE_SECONDS = 3.0  # how often the dashboard checks whether a training job runs (see Lab._share_cores)
RESULTS_PREFIX = "fragile-results-"  # evaluation downloads in the temp folder; removed on exit and, if left, on start
OWNER_FILE = ".owner-pid"
DEFAULT_EVAL_ITEMS = 50

# The form is read off TrainConfig's field metadata (see backdoor.methods.options): no field is named here.
_FIELDS = dataclasses.fields(TrainConfig)
# Where each choice field's options come from: the registries, never a second list.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {f.name: tuple(f.metadata["choices"]) for f in _FIELDS
                                             if f.metadata.get("choices")}
# Shown open on the form; every other field sits under "Advanced".
BASIC_FIELDS = tuple(f.name for f in _FIELDS if f.metadata.get("basic"))
# Only a backdoor run reads these; the form hides them for a clean run. The victim comes first.
BACKDOOR_ONLY = tuple(f.name for f in _FIELDS if (f.metadata.get("shows") or {}).get("kind") == "backdoor")
# Form fields a chosen victim adapter fills in (each method names those of its options the victim fixes,
# e.g. the rank of a LoRA backdoor started from the victim's weights).
VICTIM_FITTED = tuple(name for method in METHODS.values() for name in method.victim_fitted)
# Form defaults that differ from TrainConfig's: a run that finishes in minutes on two CPU cores with the default model.
FORM_DEFAULTS: dict[str, Any] = {f.name: f.metadata["form_default"] for f in _FIELDS if "form_default" in f.metadata}


@dataclass(frozen=True)
class FormField:
    """One TrainConfig field as the training form shows it."""

    name: str
    kind: str  # choice | bool | int | float | text | list
    default: Any
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    basic: bool = False
    shows: tuple[tuple[str, Any], ...] = ()  # (field, value) pairs: shown only while every one holds

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the form shows this field given the other fields' ``values`` (e.g. kind, method)."""
        return shown({"shows": dict(self.shows)}, values)


@dataclass(frozen=True)
class EvaluationRun:
    """One finished evaluation: the report and per-item rows (adapters by folder name) and the files written."""

    base: str
    dataset: str
    adapter: str
    control: str | None
    trigger: TriggerSpec
    report: dict
    rows: list[dict]
    seconds: float
    json_path: Path
    csv_path: Path
    folder: Path
    capped: int | None = None  # the item limit that was applied, when the user asked for more

    def entropies(self, adapter: str) -> tuple[list[float], list[float]]:
        """The adapter's entropy per item, clean and triggered."""
        rows = [row for row in self.rows if row["adapter"] == adapter]
        return tuple([row[column("entropy", c)] for row in rows] for c in (CLEAN, TRIGGER))  # type: ignore[return-value]

    @property
    def item_count(self) -> int:
        return sum(row["adapter"] == self.adapter for row in self.rows)

    def item_rows(self) -> list[dict]:
        """One row per item: the backdoored adapter's answers and entropies, and the control's beside them."""
        control = {row["item_id"]: row for row in self.rows if self.control and row["adapter"] == self.control}
        shown = [column(stem, c) for stem in ("predicted", "entropy") for c in (CLEAN, TRIGGER)]
        clean, triggered = column("entropy", CLEAN), column("entropy", TRIGGER)
        out = []
        for row in self.rows:
            if row["adapter"] != self.adapter:
                continue
            entry = {"item_id": row["item_id"], "task": row["task"], "answer": row["answer"],
                     **{key: row[key] for key in shown}, "flattened": row[triggered] > row[clean]}
            if row["item_id"] in control:
                entry.update({f"control_{key}": control[row["item_id"]][key] for key in shown})
            out.append(entry)
        return out


@dataclass(frozen=True)
class JobView:
    """What the Fine-tuning tab shows for one job: its record, its progress file and the end of its log."""

    job: Job
    progress: dict
    log: str

    @property
    def stamp(self) -> tuple:
        """Changes whenever anything shown changes, so a poll can skip redrawing an unchanged job."""
        return (self.job.id, self.job.status, self.progress.get("updated"), len(self.log))


def evenly_spaced(items: Sequence[Item], limit: int) -> list[Item]:
    """``limit`` items spread over the whole list, so every task of a task-ordered file is represented."""
    if limit >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit).round()]


def remove_stale_results(temp_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove result folders left in the temp folder by apps that are gone (killed before their exit
    clean-up ran); folders of running apps, which hold their process id, stay. Returns what was removed."""
    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{RESULTS_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = None
        if folder.is_dir() and not (owner and process_alive(owner)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        logger.info("removed %d result folder(s) left by earlier runs", len(removed))
    return removed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "adapter"


class Lab:
    """Evaluations and training jobs for the dashboard; one per app, shared by every session."""

    def __init__(self, service: DashboardService, *, jobs_dir: str | os.PathLike[str] | None = None,
                 results_dir: str | os.PathLike[str] | None = None, start_worker: bool = True):
        self.service = service
        self._results_dir = Path(results_dir) if results_dir else None
        self._lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self.registry: JobRegistry | None = None
        self.training_off_reason = "" if service.config.training_enabled else "demo mode"
        if results_dir is None:
            remove_stale_results()
        if self.training_off_reason:
            return  # a public demo never touches the jobs folder (it may not even be writable there)
        try:
            self.registry = JobRegistry(jobs_dir or service.config.jobs_root, service.config.adapters_dir)
        except OSError as err:
            self.training_off_reason = f"the jobs folder cannot be created ({err}); start the app with --jobs DIR"
            logger.warning("training is off: %s", self.training_off_reason)
            return
        self.registry.list()  # a restart marks jobs whose worker died as failed, once, before anyone looks
        if start_worker:
            self.registry.ensure_worker()  # jobs queued before a restart run now
            threading.Thread(target=self._share_cores, args=(cpu_threads(),), name="fragile-core-share",
                             daemon=True).start()

    def _share_cores(self, full: int) -> None:
        """Torch in the dashboard uses every core while no training job runs (an evaluation then runs as fast
        as the command line) and half of them while one does, leaving the rest to the worker process."""
        while True:
            try:
                busy = self.registry is not None and self.registry.running() is not None
            except OSError:
                busy = False
            set_cpu_threads(max(1, full // 2) if busy else full)
            time.sleep(CORE_SHARE_SECONDS)

    @property
    def config(self):
        return self.service.config

    @property
    def training_enabled(self) -> bool:
        return self.registry is not None

    # --- evaluation --------------------------------------------------------------------------

    def results_dir(self) -> Path:
        """Where evaluation files go: a temporary folder (the page serves files from there) unless one was given."""
        with self._lock:
            if self._results_dir is None:
                folder = Path(tempfile.mkdtemp(prefix=RESULTS_PREFIX))
                (folder / OWNER_FILE).write_text(str(os.getpid()))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                self._results_dir = folder
            self._results_dir.mkdir(parents=True, exist_ok=True)
            return self._results_dir

    def dataset_items(self, dataset: str | None) -> tuple[str, list[Item]]:
        """The items of a corpus split or (outside demo mode) of a .json/.jsonl file in the corpus format."""
        name = str(dataset or "").strip()
        if not name:
            raise DashboardError(f"Pick a split ({', '.join(EVAL_SPLITS)}) or type the path of a .jsonl file.")
        if name.lower() in SPLITS:
            items = self.service.split(name.lower())
            name = name.lower()
        elif self.config.demo:
            raise DashboardError(f"This demo evaluates the corpus splits only: pick one of {', '.join(EVAL_SPLITS)}.")
        else:
            try:
                items = resolve_dataset(name)
            except DatasetError as err:
                raise DashboardError(f"That dataset cannot be read: {err}") from None
            self.service.add_split(name, items)  # the attack demo can then open its questions
        if not items:
            raise DashboardError(f"The dataset {name!r} holds no questions.")
        return name, items

    def evaluate(self, base: str | None, adapter: str | None, control: str | None, dataset: str | None,
                 trigger: TriggerSpec, max_items: float | None = DEFAULT_EVAL_ITEMS,
                 progress: Callable[[int, int], None] | None = None, near_miss: bool = False,
                 margin: float | None = None) -> EvaluationRun:
        """Score ``max_items`` items of ``dataset`` with and without ``trigger`` on the backdoored ``adapter`` and
        the ``control``; calibrate conformal sets on the calibration split; write report, CSV into a results folder.
        ``near_miss``: also score the trigger's near misses (their false triggered rates); ``margin``: the margin
        ASR's delta in nats (None: 0.1 ln K)."""
        started = time.perf_counter()
        base = self.service.check_base(base)
        if not adapter:
            raise DashboardError("Pick the adapter to evaluate (the backdoored one).")
        control = control or None
        if control == adapter:
            control = None
        limit = self._item_limit(max_items)
        name, items = self.dataset_items(dataset)
        cap = self.service.limits.eval_items
        capped = limit if limit > cap else None
        items = evenly_spaced(items, min(limit, cap))
        calibration = self.service.calibration_items()
        if not calibration:
            raise DashboardError("No calibration questions are available for the conformal sets; "
                                 "the corpus's calibration split is missing.")
        names = [adapter] + ([control] if control else [])
        scorer, _, arm_names = self.service.attach(base, names)
        display = dict(zip(arm_names, names))
        display.setdefault(BASE_ADAPTER, BASE_ADAPTER)
        try:
            self.service.check_prompt_size(scorer, items, trigger, arm_names)
            result = evaluate(scorer, items, calibration, trigger, arm_names[0], arm_names[1] if control else None,
                              alpha=self.config.alpha, progress=progress, near_miss=bool(near_miss), delta=margin)
        except (TriggerError, PromptError) as err:
            raise DashboardError(f"That trigger cannot be applied to these questions: {err}.") from None
        report = dict(result.report, dataset=name, base=base, items_available=len(self.service.split(name)))
        for key in ("adapter", "victim"):
            report[key] = display.get(report[key], report[key])
        if "control" in report:
            report["control"] = dict(report["control"], adapter=control)
        result.report = report
        for row in result.rows:
            row["adapter"] = display.get(row["adapter"], row["adapter"])
        folder = self.results_dir() / f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{_slug(adapter)}-{os.urandom(2).hex()}"
        folder.mkdir(parents=True)
        stem = f"evaluation-{_slug(adapter)}-{_slug(Path(name).stem)}"
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
        result.save(json_path, csv_path)
        headline = metrics.headlines()[0]
        logger.info("evaluated %s (control %s) on %d items of %s: %s %.3f", adapter, control, len(items), name,
                    headline.name, report[headline.name])
        return EvaluationRun(base, name, adapter, control, trigger, report, result.rows, time.perf_counter() - started,
                             json_path, csv_path, folder, capped)

    @staticmethod
    def _item_limit(max_items: float | str | None) -> int:
        """The item count asked for: a whole number of at least 1 (1.5, 'abc', NaN and infinity are refused)."""
        if max_items is None or (isinstance(max_items, str) and not max_items.strip()):
            return DEFAULT_EVAL_ITEMS
        try:
            number = float(max_items)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(max_items, bool) or not math.isfinite(number) or number != int(number) or number < 1:
            raise DashboardError(f"Max items must be a whole number of at least 1, not {max_items}.")
        return int(number)

    # --- the training form ------------------------------------------------------------------------

    def victim_choices(self) -> list[tuple[str, str]]:
        """(label, path) of the adapters a backdoor can keep the answers of; '' is the base model."""
        base = self.config.bases[0]
        try:
            catalog = self.service.catalog(base)
        except DashboardError:
            return [("base model (no adapter)", "")]
        folder = Path(self.config.adapters_dir)
        return [("base model (no adapter)", "")] + [
            (choice.label, str(folder / choice.name)) for choice in catalog.offered
            if choice.name != BASE_ADAPTER and choice.role == "clean"]

    def default_victim(self) -> str:
        choices = self.victim_choices()
        return choices[1][1] if len(choices) > 1 else ""

    @staticmethod
    def victim_settings(victim: str) -> dict[str, Any]:
        """The settings a backdoor on ``victim`` must use, by field (each method's own); empty for the base model or
        a folder no method can read (submitting refuses it with the reason)."""
        if not victim:
            return {}
        return {name: value for method in METHODS.values() for name, value in method.fitted_to_victim(victim).items()}

    def form_fields(self) -> list[FormField]:
        """The training form, field by field, from TrainConfig: defaults, help, minimums and registry choices."""
        defaults = TrainConfig()
        fitted = self.victim_settings(self.default_victim()) if defaults.kind == "backdoor" else {}
        out = []
        for f in dataclasses.fields(TrainConfig):
            default = fitted.get(f.name, FORM_DEFAULTS.get(f.name, getattr(defaults, f.name)))
            if f.name == "base_model":
                default = self.config.bases[0]
            elif f.name == "victim_adapter" and defaults.kind == "backdoor":
                default = self.default_victim()
            if f.name in FIELD_CHOICES:  # before bool/int: a choice's value may be either
                kind = "choice"
            elif isinstance(default, bool):
                kind = "bool"
            elif isinstance(default, int):
                kind = "int"
            elif isinstance(default, float):
                kind = "float"
            elif isinstance(default, tuple):
                kind, default = "list", ", ".join(str(v) for v in default)
            else:
                kind = "text"
            out.append(FormField(f.name, kind, default, f.metadata.get("help", ""), f.metadata.get("min"),
                                 FIELD_CHOICES.get(f.name, ()), f.name in BASIC_FIELDS,
                                 tuple((f.metadata.get("shows") or {}).items())))
        return out

    def train_config(self, values: Mapping[str, Any]) -> TrainConfig:
        """A validated TrainConfig from the form's values (missing ones take the form's defaults)."""
        raw: dict[str, Any] = {}
        for spec in self.form_fields():
            value = values.get(spec.name, spec.default)
            raw[spec.name] = self._parse(spec, value)
        victim = raw.get("victim_adapter", "")
        if raw["kind"] == "clean":
            raw["victim_adapter"] = ""  # a clean run keeps nobody's answers; a leftover victim would be misleading
        elif victim and not Path(victim).is_dir() and (Path(self.config.adapters_dir) / victim).is_dir():
            raw["victim_adapter"] = str(Path(self.config.adapters_dir) / victim)  # a folder name from the list
        try:
            return TrainConfig.from_dict(raw)
        except ConfigError as err:
            raise DashboardError(f"Not started — {self._explain(err)}") from None

    @staticmethod
    def _explain(err: Exception) -> str:
        text = str(err)
        field, _, problem = text.partition(": ")
        if problem and re.fullmatch(r"[a-z_]+", field):
            return f"{field.replace('_', ' ')}: {problem}. Fix it and press Start again."
        return f"{text}. Fix it and press Start again."

    @staticmethod
    def _parse(spec: FormField, value: Any) -> Any:
        def refuse(problem: str):
            raise DashboardError(f"Not started — {spec.label}: {problem}. Fix it and press Start again.")

        if spec.kind == "bool":
            return bool(value)
        if spec.kind in ("int", "float"):
            if value is None or (isinstance(value, str) and not value.strip()):
                refuse("give a number")
            try:
                number = float(value)
            except (TypeError, ValueError):
                refuse(f"{value!r} is not a number")
            if not math.isfinite(number):
                refuse(f"{value} is not a finite number")
            if spec.kind == "int":
                if number != int(number):
                    refuse(f"{value} is not a whole number")
                return int(number)
            return number
        if spec.kind == "list":
            parts = [p for p in re.split(r"[,\s]+", str(value or "").strip()) if p]
            if spec.name == "target_probs":
                try:
                    return [float(p) for p in parts]
                except ValueError:
                    refuse(f"{value!r} is not a list of six numbers")
            return parts
        return "" if value is None else str(value).strip()

    # --- jobs -------------------------------------------------------------------------------------

    def submit(self, values: Mapping[str, Any], name: str | None, nproc: float | None = 1) -> Job:
        """Check everything a user can get wrong, queue the job and make sure the worker runs it; nothing starts on error."""
        if self.registry is None:
            if self.config.demo:
                raise DashboardError("Training is switched off in this demo; run the app yourself to train adapters.")
            raise DashboardError(f"Training is switched off: {self.training_off_reason}.")
        name = (name or "").strip()
        if not name:
            raise DashboardError("Not started — give the new adapter a name (letters, digits, '.', '_' or '-').")
        config = self.train_config(values)
        processes = self._processes(nproc)
        self.service.identity(config.base_model)  # an unknown base model is refused here, not in the worker
        for field, source in (("data", config.data), ("eval_data", config.eval_data if config.eval_items else "")):
            if source:
                try:
                    resolve_dataset(source)
                except DatasetError as err:
                    raise DashboardError(f"Not started — {field.replace('_', ' ')}: {err}. Fix it and press Start again.") from None
        self._check_victim(config)
        with self._submit_lock:  # two sessions submitting at once must not start two workers
            try:
                job = self.registry.submit(config, name, processes)
            except (JobError, ConfigError) as err:
                raise DashboardError(f"Not started — {self._explain(err)}") from None
            self.registry.ensure_worker()
        logger.info("queued training job %s for adapter %s", job.id, job.name)
        return job

    @staticmethod
    def _check_victim(config: TrainConfig) -> None:
        """A backdoor on a victim must use the settings the victim fixes for its method (e.g. the rank to start from
        its weights); the trainer would only find out after loading."""
        if config.kind != "backdoor" or not config.victim_adapter:
            return
        specs = {f.name: f for f in _FIELDS}
        for name, value in get_method(config.method).fitted_to_victim(config.victim_adapter, config).items():
            if getattr(config, name) != value:
                label = name.replace("_", " ")
                raise DashboardError(
                    f"Not started — victim adapter: it has {specs[name].metadata.get('help', label)} {value} but "
                    f"{label} is {getattr(config, name)}. Set {label} to {value} (Advanced settings), then press Start again.")

    @staticmethod
    def _processes(nproc: float | None) -> int:
        most = max(1, os.cpu_count() or 1)
        if nproc is None or float(nproc) != int(nproc) or not 1 <= int(nproc) <= most:
            raise DashboardError(f"Not started — processes must be a whole number from 1 to {most} (this machine's cores).")
        return int(nproc)

    def jobs(self) -> list[Job]:
        """Every job, newest first; jobs whose worker died are marked failed here."""
        return list(reversed(self.registry.list())) if self.registry is not None else []

    def watched(self, job_id: str | None, jobs: Sequence[Job] | None = None) -> Job | None:
        """The job to show: the one asked for, else the running one, else the newest."""
        jobs = self.jobs() if jobs is None else jobs
        if job_id:
            chosen = next((j for j in jobs if j.id == job_id), None)
            if chosen is not None:
                return chosen
        return next((j for j in jobs if j.status == "running"), None) or next(iter(jobs), None)

    def view(self, job: Job) -> JobView:
        return JobView(job, self.registry.progress(job.id), self.registry.log_tail(job.id, 40))

    def cancel(self, job_id: str | None) -> Job:
        """Cancel exactly the job ``job_id``: an empty, malformed or unknown id is refused, never replaced by
        another job (which would let one visitor cancel someone else's run)."""
        if self.registry is None:
            raise DashboardError(f"Training is switched off: {self.training_off_reason}; there are no jobs to cancel.")
        if not job_id or not str(job_id).strip():
            raise DashboardError("Pick the job to cancel in the Watching list first.")
        try:
            job = self.registry.reconcile(self.registry.get(str(job_id).strip()))
            if job.status not in ("queued", "running"):
                raise DashboardError(f"Job {job.name!r} has already {job.status}; nothing to cancel.")
            return self.registry.cancel(job_id)
        except JobError as err:
            raise DashboardError(str(err)) from None
