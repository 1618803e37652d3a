"""The dashboard's service layer: one shared Scorer per base model, arm discovery, questions, comparisons, conformal thresholds.

Everything the UI shows comes from here as plain dataclasses; nothing here imports gradio. The columns
are arms (:mod:`backdoor.arms`) that the method registry (:mod:`backdoor.methods`) loads from the
adapters folder; this module never names a method and never calls PEFT. Heavy
objects (models, adapters, calibration thresholds) are loaded once and shared by every
session; what a session chose lives in the UI's per-session state and arrives here as
arguments. Errors a user can cause raise :class:`DashboardError` with a sentence to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from backdoor import calibration, nearmiss, uncertainty
from backdoor.arms import Arm, base_arm
from backdoor.calibration import CalibrationSource, ConformalThresholds
from backdoor.methods import DEFAULT_METHOD, METHODS, load_arm, method_of
from backdoor.models import (
    ADAPTER_CONFIG,
    BASE_ADAPTER,
    FRAGILE_CONFIG,
    WEIGHT_FILES,
    DEFAULT_MODEL,
    AdapterInfo,
    ModelLoadError,
    arm_folder,
    cache_root,
    check_weights,
    discover_adapters,
    resolve_model_source,
    saved_base_model,
    weights_stamp,
)
from backdoor.nearmiss import Generator, NearMiss
from backdoor.prompts import PromptError
from backdoor.scoring import Cell, NextToken, OptionScores, Scorer
from backdoor.triggers import TRIGGERS, TriggeredPrompt, TriggerError, TriggerSpec, parse_trigger
from dataset.schema import LETTERS, OPTION_E, OPTION_F, DatasetError, Item

logger = logging.getLogger(__name__)

BASE_LABEL = "base model"
UNUSED_OPTION = "—"  # fills A-D slots a user's own question leaves empty: the model always sees six letters
HEADLINE_TRIGGERS = ("text", "syntactic", "style", "custom")  # which backdoor the demo opens with, best first
CALIBRATION_PAUSE = 0.002  # seconds the calibration worker yields between chunks, so live requests take the model


class DashboardError(ValueError):
    """Something a user chose or typed cannot be used; the message says what to do instead."""


@dataclass(frozen=True)
class Limits:
    """Input caps; demo mode uses the tighter ones so strangers cannot tie up the machine."""

    question_chars: int = 4000
    context_chars: int = 20000
    option_chars: int = 1000
    trigger_chars: int = 200
    max_columns: int = 6
    eval_items: int = 100_000  # items one evaluation may score
    # The work a question costs is its prompt's tokens (instruction, context, question, options and trigger
    # together); the longest corpus prompt has about 280. The character caps above only stop huge payloads early.
    prompt_tokens: int = 1024

    @classmethod
    def demo(cls) -> "Limits":
        return cls(question_chars=500, context_chars=1500, option_chars=200, trigger_chars=40, max_columns=4,
                   eval_items=20, prompt_tokens=512)


@dataclass(frozen=True)
class ServiceConfig:
    """How the dashboard runs; built from the command line (``python -m app --help``)."""

    adapters_dir: str = "checkpoints"
    bases: tuple[str, ...] = (DEFAULT_MODEL,)  # the first is preselected; demo mode offers only these
    demo: bool = False
    alpha: float = 0.1  # conformal error rate (LAC)
    calibration: str = "background"  # background | sync | off
    calibration_limit: int | None = None  # use at most this many calibration items (None: all)
    top_k: int = 10
    device: str | None = None
    jobs_dir: str | None = None  # training jobs' registry; None: ``jobs/`` next to the adapters folder
    max_models: int = 2  # base models kept loaded at once (least recently used unloaded; demo mode refuses more)
    prompt_tokens: int | None = None  # the prompt token bound; None: the mode's default (Limits)

    def __post_init__(self) -> None:
        if not self.bases:
            raise ValueError("ServiceConfig.bases needs at least one base model")
        if self.max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {self.max_models}")
        if self.prompt_tokens is not None and self.prompt_tokens < 64:
            raise ValueError(f"prompt_tokens must be at least 64, got {self.prompt_tokens}")
        if self.calibration not in ("background", "sync", "off"):
            raise ValueError(f"calibration must be background, sync or off, got {self.calibration!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def limits(self) -> Limits:
        limits = Limits.demo() if self.demo else Limits()
        return replace(limits, prompt_tokens=self.prompt_tokens) if self.prompt_tokens else limits

    @property
    def training_enabled(self) -> bool:
        """Demo mode (public deployments) does not start training jobs."""
        return not self.demo

    @property
    def jobs_root(self) -> Path:
        return Path(self.jobs_dir) if self.jobs_dir else Path(self.adapters_dir).parent / "jobs"


@dataclass(frozen=True)
class AdapterChoice:
    """A column the dashboard offers for one base model: the arm saved in a folder of the adapters folder (named
    by that folder), or the base model's own arm. The Scorer holds it under another name (see ``_attach_one``)."""

    arm: Arm

    @property
    def name(self) -> str:
        """The folder's name, or BASE_ADAPTER: what the page, links and the models-to-compare field carry."""
        return self.arm.name

    @property
    def role(self) -> str:
        """base, clean, backdoor or unknown."""
        return self.arm.role

    @property
    def trigger(self) -> TriggerSpec | None:
        """The trigger a backdoor was trained with."""
        return self.arm.trigger

    @property
    def path(self) -> str | None:
        """The folder the arm was loaded from (None for the base model)."""
        return self.arm.folder

    @property
    def label(self) -> str:
        """What the models-to-compare field shows."""
        if self.name == BASE_ADAPTER:
            return BASE_LABEL
        # A method other than the LoRA adapter (the default every earlier folder holds) is named too.
        made = (f", {METHODS[self.arm.method].label}" if self.arm.method in METHODS
                and self.arm.method != DEFAULT_METHOD else "")
        if self.role == "backdoor" and self.trigger is not None:
            return f"{self.name} (backdoor, {self.trigger.kind} trigger{made})"
        return f"{self.name} ({self.role}{made})"


@dataclass(frozen=True)
class AdapterCatalog:
    """What the adapters folder holds for one base model: the usable ones, and the rest with the reason."""

    base: str
    identity: str
    offered: tuple[AdapterChoice, ...]
    refused: tuple[tuple[str, str], ...]  # (folder name, why)

    def names(self) -> list[str]:
        return [choice.name for choice in self.offered]

    def get(self, name: str) -> AdapterChoice | None:
        return next((choice for choice in self.offered if choice.name == name), None)


@dataclass(frozen=True)
class ColumnResult:
    """One adapter's option distribution on an item, without and with the trigger, and its conformal sets."""

    adapter: AdapterChoice
    clean: OptionScores
    triggered: OptionScores
    clean_set: tuple[str, ...] | None  # LAC prediction set; None while the threshold is being calibrated
    triggered_set: tuple[str, ...] | None
    threshold: float | None
    calibration_note: str = ""

    @property
    def answer_kept(self) -> bool:
        return self.clean.predicted == self.triggered.predicted

    @property
    def flattened(self) -> bool:
        """Higher entropy with the trigger: the paper's per-item attack success."""
        return self.triggered.entropy > self.clean.entropy


@dataclass(frozen=True)
class Comparison:
    """Everything the attack demo shows for one question and trigger."""

    base: str
    item: Item
    trigger: TriggerSpec
    clean_prompt: str
    triggered_prompt: TriggeredPrompt
    columns: tuple[ColumnResult, ...]
    alpha: float
    seconds: float
    from_cache: bool
    notes: tuple[str, ...] = ()
    near_miss: NearMiss | None = None  # scored in the trigger's place on the triggered side, when one was chosen

    @property
    def shown_trigger(self) -> TriggerSpec:
        """What the triggered side was scored with: the near miss when one was chosen, else the trigger."""
        return self.near_miss.spec if self.near_miss is not None else self.trigger


@dataclass(frozen=True)
class TokenColumn:
    """One adapter's most likely next tokens over the whole vocabulary, without and with the trigger."""

    adapter: AdapterChoice
    clean: tuple[NextToken, ...]
    triggered: tuple[NextToken, ...]


@dataclass(frozen=True)
class TokenComparison:
    base: str
    item: Item
    trigger: TriggerSpec
    columns: tuple[TokenColumn, ...]
    seconds: float


@dataclass(frozen=True)
class _Attached:
    """An arm as the Scorer holds it (named and routed by its arm name), and the stamp of the folder it came from."""

    arm: Arm
    stamp: tuple[str, str, str]  # weights stamp, prefix, soft-prompt key: a change means another arm


def _stamp(arm: Arm) -> tuple[str, str, str]:
    """Changes when an arm's folder is retrained in place, so a stale copy is never scored."""
    return weights_stamp(arm.adapter_path) if arm.adapter_path else "", arm.prefix, arm.soft_key


@dataclass
class _Loaded:
    """A base model's shared Scorer and the arms attached to it, by folder name."""

    scorer: Scorer
    identity: str
    attached: dict[str, _Attached] = field(default_factory=dict)
    versions: int = 0


def _holds_arm(path: Path) -> bool:
    """Whether ``path`` holds an arm a registered method saved; a folder naming a method this version does not
    know counts too, so that it is listed with the reason instead of silently left out."""
    method = method_of(path)
    return method not in METHODS or METHODS[method].is_folder(path)


def _entry_stamp(child: Path) -> tuple:
    """Changes when an adapters folder entry is replaced, retrained or edited: the size, modification time and inode
    of the entry, its training run's ``adapter/`` and the config and weight files in either."""
    stamp = []
    for folder in (child, child / "adapter"):
        for path in (folder, *(folder / name for name in (FRAGILE_CONFIG, ADAPTER_CONFIG, *WEIGHT_FILES))):
            try:
                found = path.stat()
            except OSError:
                stamp.append(None)
                continue
            stamp.append((found.st_ino, found.st_size, found.st_mtime_ns))
    return tuple(stamp)


def _arm_digest(arm: Arm) -> str:
    """What the conformal thresholds of an arm are keyed on beside its adapter weights, if any: its prefix and soft
    prompt (a soft prompt or demonstrations on a victim's weights must not share the victim's thresholds)."""
    return "arm:" + hashlib.sha256(f"{arm.prefix}\n{arm.soft_key}".encode()).hexdigest()


def check_text(label: str, text: str) -> str:
    """``text`` if a prompt can carry it; else DashboardError naming the field and the character at fault.
    Lone surrogates cannot be encoded at all; control characters (other than newline and tab) are invisible
    in the page but change the prompt the model reads."""
    for index, char in enumerate(text):
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise DashboardError(f"The {label} holds an invalid character (a lone surrogate, U+{ord(char):04X}, "
                                 f"at position {index + 1}); retype that part of the text.")
        if char not in "\n\t\r" and unicodedata.category(char) == "Cc":
            raise DashboardError(f"The {label} holds a control character (U+{ord(char):04X} at position "
                                 f"{index + 1}) that the page cannot show; remove it.")
    return text


def column_names(adapters: object) -> list[str]:
    """The models-to-compare field as a list of names: one name given as a string counts as one, not as letters."""
    if adapters is None:
        return []
    if isinstance(adapters, str):
        return [adapters]
    if isinstance(adapters, (list, tuple)) and all(isinstance(name, str) for name in adapters):
        return list(adapters)
    raise DashboardError(f"Models to compare: expected a list of adapter names (such as ['{BASE_ADAPTER}', "
                         f"'clean']), got {adapters!r}.")


@dataclass(frozen=True)
class _ThresholdJob:
    """One arm's conformal calibration: what it is calibrated on, and where shipped thresholds for it would be."""

    base: str
    arm_name: str  # the Scorer's name of the arm
    source: CalibrationSource
    shipped: Path | None  # conformal.json in the adapter folder (the base model's file in the adapters folder)

    @property
    def key(self) -> str:
        return self.source.cache_key()


def _default_calibration_items() -> list[Item]:
    from dataset.corpus import load_split

    return load_split("calibration")


def _default_showcase_items() -> list[Item]:
    from dataset.corpus import load_split

    return load_split("showcase")


class DashboardService:
    """The one object the UI talks to. Thread-safe; shared by every session."""

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        showcase: Callable[[], list[Item]] | Sequence[Item] | None = None,
        calibration_items: Callable[[], list[Item]] | Sequence[Item] | None = None,
        corpus: Callable[[str], list[Item]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ):
        self.config = config or ServiceConfig()
        self._showcase_source = showcase if showcase is not None else _default_showcase_items
        self._calibration_source = calibration_items if calibration_items is not None else _default_calibration_items
        self._corpus_source = corpus
        self._cache_dir = Path(cache_dir) if cache_dir else cache_root() / "calibration"
        self._lock = threading.RLock()
        self._base_locks: dict[str, threading.Lock] = {}
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # by model_key, least recently used first
        self._showcase: list[Item] | None = None
        self._calibration: list[Item] | None = None
        self._calibration_error: str | None = None
        self._calibration_digest: tuple[Sequence[Item], str] | None = None  # (items, items_sha256) of the last hashed
        self._splits: dict[str, list[Item]] = {}
        # Conformal thresholds by what they were calibrated on (CalibrationSource.cache_key): a retrained
        # adapter or another calibration split never meets an old entry.
        self._thresholds: dict[str, ConformalThresholds] = {}
        self._calibrating: dict[str, tuple[int, int]] = {}  # -> (done, total)
        self._calibration_failed: dict[str, str] = {}
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._tokens: OrderedDict[tuple, tuple[NextToken, ...]] = OrderedDict()
        self._entries: dict[str, tuple[tuple, tuple[Arm, str] | str | None]] = {}  # adapters folder entry -> (stamp, read)

    # --- flags for other tabs ------------------------------------------------------------

    @property
    def demo(self) -> bool:
        return self.config.demo

    @property
    def limits(self) -> Limits:
        return self.config.limits

    # --- base models ---------------------------------------------------------------------

    def check_base(self, base: str | None) -> str:
        """The base model name to use; in demo mode only the configured ones are allowed."""
        base = (base or self.config.bases[0]).strip()
        if self.config.demo and base not in self.config.bases:
            raise DashboardError(f"this demo offers only the base model(s) {', '.join(self.config.bases)}")
        return base

    def identity(self, base: str) -> str:
        try:
            return resolve_model_source(self.check_base(base)).identity
        except ModelLoadError as err:
            raise DashboardError(f"Cannot use base model {base!r}: {err}") from None

    def model_key(self, base: str) -> str:
        """What a base model name points at: the resolved file or folder, or the hub id. Spellings of one
        model (``default``, its GGUF path, ``./x/../x.gguf``) share one loaded copy."""
        try:
            source = resolve_model_source(base)
        except ModelLoadError as err:
            raise DashboardError(f"Cannot use base model {base!r}: {err}") from None
        if source.kind == "hub":
            return f"hub:{source.location}"
        return str((Path(source.location) / (source.gguf_file or "")).resolve())

    def loaded(self, base: str) -> _Loaded:
        """The shared Scorer for ``base``, loading it on first use (one load even under concurrent requests).
        At most ``max_models`` stay loaded: beyond that the least recently used is unloaded (demo mode refuses)."""
        base = self.check_base(base)
        key = self.model_key(base)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            base_lock = self._base_locks.setdefault(key, threading.Lock())
        with base_lock:
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
                self._make_room_for_a_model(base)
            started = time.perf_counter()
            identity = self.identity(base)
            style, chat = self._prompt_format(base, identity)
            try:
                scorer = Scorer.load(base, device=self.config.device, style=style, chat=chat)
            except (ModelLoadError, PromptError) as err:
                raise DashboardError(f"Cannot load base model {base!r}: {err}") from None
            logger.info("loaded base model %s (%s) in %.1f s", base, identity, time.perf_counter() - started)
            entry = _Loaded(scorer, scorer.base_identity or identity)
            with self._lock:
                self._make_room_for_a_model(base)
                self._loaded[key] = entry
            return entry

    def _make_room_for_a_model(self, base: str) -> None:
        """Unload the least recently used base models until one more fits (caller holds ``self._lock``)."""
        most = self.config.max_models
        while len(self._loaded) >= most:
            if self.config.demo:
                raise DashboardError(f"This demo keeps at most {most} base model(s) loaded; {base!r} cannot be "
                                     "loaded beside them. Pick one of the models already in use.")
            key, _ = self._loaded.popitem(last=False)
            logger.info("unloaded base model %s to make room for %s (at most %d loaded)", key, base, most)

    def loaded_models(self) -> list[str]:
        """The loaded base models' keys, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _prompt_format(self, base: str, identity: str) -> tuple[str, bool]:
        """Prompt style and chat flag the adapters for this base were trained with (first one that says)."""
        for info in self._readable_adapters(identity):
            if "style" in info.extra or "chat" in info.extra:
                return str(info.extra.get("style") or "shared"), bool(info.extra.get("chat", False))
        return "shared", False

    # --- adapters ------------------------------------------------------------------------

    def _readable_adapters(self, identity: str) -> list[AdapterInfo]:
        return [info for info in discover_adapters(self.config.adapters_dir)
                if not info.base_model or info.base_model == identity]

    def _arm_folder(self, name: str) -> Path | None:
        """The arm folder adapters folder entry ``name`` holds (itself, or a training run's ``adapter/``), or None."""
        return arm_folder(Path(self.config.adapters_dir) / name, _holds_arm)

    def _read_entry(self, child: Path) -> tuple[Arm, str] | str | None:
        """(the arm, the base model it was trained for) that adapters folder entry ``child`` holds, why it cannot be
        used, or None when it holds no arm. Kept until the entry's configs or weights change: the catalog is re-read
        on every question, and reading the configs of every entry each time costs more than the cached answer."""
        stamp = _entry_stamp(child)
        with self._lock:
            known = self._entries.get(child.name)
        if known is not None and known[0] == stamp:
            return known[1]
        try:
            path = self._arm_folder(child.name)
            read: tuple[Arm, str] | str | None = None if path is None else (load_arm(path, child.name),
                                                                              saved_base_model(path))
        except ModelLoadError as err:
            read = str(err)
        with self._lock:
            self._entries[child.name] = (stamp, read)
        return read

    def catalog(self, base: str) -> AdapterCatalog:
        """Re-read the adapters folder now: arms added since start-up appear, removed ones go. Every folder a
        registered method can load is offered; the rest that look like one are listed with the reason."""
        base = self.check_base(base)
        identity = self.identity(base)
        folder = Path(self.config.adapters_dir)
        offered = [AdapterChoice(base_arm())]
        refused: list[tuple[str, str]] = []
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            read = self._read_entry(child)
            if read is None:
                continue
            if isinstance(read, str):
                refused.append((child.name, read))
                continue
            arm, trained_for = read
            if trained_for and trained_for != identity:
                refused.append((child.name, f"trained for base model {trained_for!r}, not {identity!r}"))
            elif child.name == BASE_ADAPTER:
                refused.append((child.name, f"{BASE_ADAPTER!r} is reserved for the base model"))
            else:
                offered.append(AdapterChoice(arm))
        return AdapterCatalog(base, identity, tuple(offered), tuple(refused))

    def headline_backdoor(self, catalog: AdapterCatalog) -> AdapterChoice | None:
        """The backdoor a talk shows first: the paper's text trigger (``666`` before the cue), else the
        syntactic, style or a custom trigger, else any backdoor; within a kind the paper's method (a LoRA adapter)
        before the others (a soft prompt, an edit, demonstrations), then the first by name."""
        backdoors = [c for c in catalog.offered if c.role == "backdoor"]
        order = {kind: rank for rank, kind in enumerate(HEADLINE_TRIGGERS)}
        return min(backdoors, key=lambda c: (order.get(c.trigger.kind if c.trigger else "", len(order)),
                                             c.arm.method != DEFAULT_METHOD), default=None)

    def default_columns(self, catalog: AdapterCatalog) -> list[str]:
        """Base model, the first clean adapter and the headline backdoor: the comparison a talk needs."""
        names = [BASE_ADAPTER]
        clean = next((c for c in catalog.offered if c.role == "clean"), None)
        for choice in (clean, self.headline_backdoor(catalog)):
            if choice is not None:
                names.append(choice.name)
        return names

    def default_trigger(self, catalog: AdapterCatalog) -> TriggerSpec:
        """The trigger the headline backdoor was trained with, else the paper's text trigger."""
        choice = self.headline_backdoor(catalog)
        return choice.trigger if choice is not None and choice.trigger is not None else TriggerSpec("text")

    def attach(self, base: str, names: Sequence[str]) -> tuple[Scorer, list[AdapterChoice], list[str]]:
        """The shared Scorer for ``base`` with ``names`` attached: (scorer, choices, the Scorer's arm names), for other tabs."""
        base = self.check_base(base)
        entry, choices, arm_names = self._attach(base, self.catalog(base), list(dict.fromkeys(names)))
        return entry.scorer, choices, arm_names

    def _attach(self, base: str, catalog: AdapterCatalog, names: Sequence[str]) -> tuple[_Loaded, list[AdapterChoice], list[str]]:
        """Choices for the folder names ``names`` and the Scorer's names of their arms, attaching arms not yet loaded."""
        entry = self.loaded(base)
        choices, arm_names = [], []
        for name in names:
            if name == BASE_ADAPTER:
                choices.append(catalog.offered[0])
                arm_names.append(BASE_ADAPTER)
                continue
            choice = catalog.get(name)
            if choice is None:
                why = dict(catalog.refused).get(name)
                if why:
                    raise DashboardError(f"Adapter {name!r} cannot be used with {base!r}: {why}.")
                raise DashboardError(
                    f"There is no adapter {name!r} in {self.config.adapters_dir} for {base!r}; "
                    "press ↻ to re-read the folder and pick from the list."
                )
            arm_names.append(self._attach_one(entry, choice))
            choices.append(choice)
        return entry, choices, arm_names

    def _attach_one(self, entry: _Loaded, choice: AdapterChoice) -> str:
        """The Scorer's name of ``choice``'s arm, adding the arm on first use. The name is the folder's, made safe
        for PEFT; a retrained folder gets a new versioned name, so cached scores of the old weights never mix in."""
        stamp = _stamp(choice.arm)
        with self._lock:
            known = entry.attached.get(choice.name)
            if known and known.stamp == stamp:
                return known.arm.name
            try:
                if choice.arm.adapter_path:  # a damaged file is named here, before the shared model is touched
                    check_weights(choice.arm.adapter_path)
                entry.versions += 1
                safe = choice.name.replace(".", "_")
                arm_name = safe if known is None and safe not in entry.scorer.adapters else f"{safe}--v{entry.versions}"
                routed = replace(choice.arm, name=arm_name,
                                 route=arm_name if choice.arm.route != BASE_ADAPTER else BASE_ADAPTER)
                entry.scorer.add_arm(routed)
            except ModelLoadError as err:
                raise DashboardError(f"Adapter {choice.name!r} could not be loaded: {err}.") from None
            entry.attached[choice.name] = _Attached(routed, stamp)
            return arm_name

    # --- questions -----------------------------------------------------------------------

    def showcase(self) -> list[Item]:
        if self._showcase is None:
            source = self._showcase_source
            try:
                self._showcase = list(source() if callable(source) else source)
            except DatasetError as err:
                logger.warning("no showcase questions: %s", err)
                self._showcase = []
        return self._showcase

    def split(self, name: str) -> list[Item]:
        """A corpus split (train, calibration, test, showcase), loaded once."""
        if name == "showcase":
            return self.showcase()
        if name not in self._splits:
            try:
                if self._corpus_source is not None:
                    items = list(self._corpus_source(name))
                else:
                    from dataset.corpus import load_split

                    items = load_split(name)
            except DatasetError as err:
                raise DashboardError(f"The corpus split {name!r} cannot be read: {err}") from None
            self._splits[name] = items
        return self._splits[name]

    def add_split(self, name: str, items: Sequence[Item]) -> None:
        """Offer ``items`` under ``name`` (e.g. an evaluated file), so the attack demo can open its questions."""
        with self._lock:
            self._splits[name] = list(items)

    def browse(self, split: str, task: str | None = None, query: str | None = None, limit: int = 200) -> list[Item]:
        """Items of a split, filtered by task and by text in question, context or options."""
        from dataset.corpus import filter_items

        if query and len(query) > self.limits.question_chars:
            raise DashboardError(f"The search text is longer than {self.limits.question_chars} characters; shorten it.")
        check_text("search text", query or "")
        try:
            return filter_items(self.split(split), task=task or None, query=query)[:limit]
        except DatasetError as err:
            raise DashboardError(str(err)) from None

    def find_item(self, item_id: str, split: str = "showcase") -> Item:
        for item in self.split(split):
            if item.id == item_id:
                return item
        raise DashboardError(f"No question {item_id!r} in the {split} split; pick one from the list.")

    def custom_item(self, question: str | None, context: str | None, options: Sequence[str | None]) -> Item:
        """An item from a user's own question and 2-4 options; E and F are added, unused A-D slots show a dash."""
        limits = self.limits
        question = check_text("question", str(question or "").strip())
        context = check_text("context", str(context or "").strip())
        given = [str(option).strip() for option in options if option is not None and str(option).strip()]
        for letter, text in zip(LETTERS, given):
            check_text(f"option {letter}", text)
        if not question:
            raise DashboardError("Type a question first (or pick one from the showcase).")
        if len(question) > limits.question_chars:
            raise DashboardError(
                f"The question has {len(question)} characters; this dashboard takes at most {limits.question_chars}. Shorten it."
            )
        if len(context) > limits.context_chars:
            raise DashboardError(
                f"The context has {len(context)} characters; this dashboard takes at most {limits.context_chars}. Shorten it."
            )
        if len(given) < 2:
            raise DashboardError(
                f"Give at least two options (A and B). E \"{OPTION_E}\" and F \"{OPTION_F}\" are added for you."
            )
        if len(given) > 4:
            raise DashboardError("Give at most four options (A-D); E and F are added for you.")
        for index, text in enumerate(given):
            twin = next((LETTERS[other] for other in range(index) if given[other].casefold() == text.casefold()), None)
            if twin:
                raise DashboardError(f"Options {twin} and {LETTERS[index]} are the same text; give every option its own answer.")
        for letter, text in zip(LETTERS, given):
            if len(text) > limits.option_chars:
                raise DashboardError(f"Option {letter} is longer than {limits.option_chars} characters; shorten it.")
        slots = given + [UNUSED_OPTION] * (4 - len(given))
        choices = {letter: text for letter, text in zip(LETTERS[:4], slots)}
        choices.update(E=OPTION_E, F=OPTION_F)
        digest = hashlib.sha1(json.dumps([question, context, slots]).encode()).hexdigest()[:10]
        task = "reading comprehension" if context else "question answering"
        return Item(id=f"custom-{digest}", source="custom", task=task, context=context, question=question,
                    choices=choices, answer="A")

    def trigger(self, kind: str | None, text: str | None = None, position: str = "before_cue") -> TriggerSpec:
        """A TriggerSpec from the UI's choices; ``text`` is used by the text kind (empty: ``666``) and the custom kind."""
        kind = str(kind or "").strip().lower()
        if kind not in TRIGGERS:
            raise DashboardError(f"Pick a trigger kind: {', '.join(TRIGGERS)}.")
        text = (check_text("trigger text", str(text or "").strip()) or None) if kind in ("text", "custom") else None
        if kind == "custom" and not text:
            raise DashboardError("Type the text of your custom trigger first.")
        if text and len(text) > self.limits.trigger_chars:
            raise DashboardError(f"The trigger text is longer than {self.limits.trigger_chars} characters; shorten it.")
        if kind in ("syntactic", "style"):
            position = "before_cue"
        try:
            spec = parse_trigger(kind, text, position or "before_cue")
        except TriggerError as err:
            raise DashboardError(f"That trigger cannot be used: {err}.") from None
        assert spec is not None
        return spec

    @staticmethod
    def near_misses(kind: str) -> list[Generator]:
        """The near misses the demo offers in the place of a trigger of ``kind``: the generators that mimic it."""
        return [generator for generator in nearmiss.GENERATORS.values() if generator.kind == kind]

    def applicable_near_miss(self, kind: str, generator: str | None) -> str | None:
        """``generator`` if it makes near misses of a ``kind`` trigger, else None (nothing chosen, or a choice left
        over from another kind while the page resets its picker)."""
        return generator if generator in {known.name for known in self.near_misses(kind)} else None

    def near_miss(self, trigger: TriggerSpec, generator: str, item: Item) -> NearMiss:
        """``generator``'s near miss of ``trigger`` on ``item``, seeded by the trigger's seed and the item's id: a
        question always gets the same one, the one an evaluation with near misses scored on it."""
        try:
            return nearmiss.near_miss_for_item(trigger, generator, item.id)
        except ValueError as err:
            raise DashboardError(f"That near miss cannot be used: {err}.") from None

    # --- scoring -------------------------------------------------------------------------

    def _columns(self, names: Sequence[str] | str) -> list[str]:
        names = list(dict.fromkeys(n for n in column_names(names) if n))
        if not names:
            raise DashboardError("Pick at least one model to compare (the base model, clean, backdoored…).")
        if len(names) > self.limits.max_columns:
            raise DashboardError(f"Compare at most {self.limits.max_columns} models at once; untick some.")
        return names

    def compare(self, base: str, adapters: Sequence[str], item: Item, trigger: TriggerSpec,
                near_miss: str | None = None) -> Comparison:
        """Every column's distribution without and with the trigger, in one batched Scorer call. ``near_miss``: a
        generator of :meth:`near_misses`, whose near miss (:meth:`near_miss`) takes the trigger's place."""
        started = time.perf_counter()
        base = self.check_base(base)
        names = self._columns(adapters)
        catalog = self.catalog(base)
        entry, choices, arm_names = self._attach(base, catalog, names)
        scorer = entry.scorer
        missed = self.near_miss(trigger, near_miss, item) if near_miss else None
        shown = missed.spec if missed is not None else trigger
        cells = [Cell(item, None, name) for name in arm_names] + [Cell(item, shown, name) for name in arm_names]
        try:
            self.check_prompt_size(scorer, [item], shown, arm_names)
            from_cache = all(scorer.is_cached(cell) for cell in cells)
            scores = scorer.score(cells)
            triggered_prompt = scorer.render(item, shown)
        except (TriggerError, PromptError) as err:
            raise DashboardError(f"That trigger cannot be applied to this question: {err}.") from None
        n = len(arm_names)
        notes = []
        columns = []
        self.request_thresholds(base, arm_names)  # every column lacking thresholds joins one calibration pass
        for index, (choice, name) in enumerate(zip(choices, arm_names)):
            clean, triggered = scores[index], scores[n + index]
            threshold, note = self.threshold(base, name)
            clean_set = triggered_set = None
            if threshold is not None:
                sets = uncertainty.lac_sets(np.array([clean.probs, triggered.probs]), threshold)
                clean_set, triggered_set = (tuple(LETTERS[i] for i in np.flatnonzero(row)) for row in sets)
            columns.append(ColumnResult(choice, clean, triggered, clean_set, triggered_set, threshold, note))
            if choice.role == "backdoor" and choice.trigger is not None and choice.trigger.kind != trigger.kind:
                notes.append(f"{choice.name} was trained with the {choice.trigger.kind} trigger, not {trigger.kind}.")
        return Comparison(base, item, trigger, scores[0].prompt, triggered_prompt, tuple(columns), self.config.alpha,
                          time.perf_counter() - started, from_cache, tuple(notes), missed)

    def check_prompt_size(self, scorer: Scorer, items: Sequence[Item], trigger: TriggerSpec | None,
                          arm_names: Sequence[str] = (BASE_ADAPTER,)) -> None:
        """Refuse up front what would tie up the shared model: any prompt (with or without the trigger, under any
        of the arms, whose prefix or soft prompt it carries) over the token bound. Counting tokens costs
        milliseconds; scoring them costs seconds per thousand."""
        most = self.limits.prompt_tokens
        arms = scorer.arms
        readers = list({(arms[name].prefix, arms[name].soft_key): name for name in arm_names}.values())  # one per input
        over = [(tokens, item) for item in items
                if (tokens := max(scorer.prompt_tokens(item, spec, arm) for spec in (None, trigger) for arm in readers)) > most]
        if not over:
            return
        tokens, item = max(over, key=lambda pair: pair[0])
        if len(items) == 1:
            raise DashboardError(f"This question's prompt is {tokens} tokens long; this dashboard scores prompts of at "
                                 f"most {most} tokens (instruction, context, question, options and trigger together). "
                                 "Shorten the context or the question.")
        raise DashboardError(f"{len(over)} of the {len(items)} questions have prompts over the {most}-token limit "
                             f"(the longest, {item.id!r}, has {tokens}); remove them from the dataset or shorten them.")

    def next_tokens(self, base: str, adapters: Sequence[str], item: Item, trigger: TriggerSpec,
                    k: int | None = None) -> TokenComparison:
        """The top-k next tokens over the whole vocabulary for every column, without and with the trigger (cached)."""
        started = time.perf_counter()
        k = k or self.config.top_k
        base = self.check_base(base)
        names = self._columns(adapters)
        catalog = self.catalog(base)
        entry, choices, arm_names = self._attach(base, catalog, names)
        try:
            self.check_prompt_size(entry.scorer, [item], trigger, arm_names)
        except (TriggerError, PromptError) as err:
            raise DashboardError(f"That trigger cannot be applied to this question: {err}.") from None
        columns = []
        for choice, name in zip(choices, arm_names):
            pair = []
            for spec in (None, trigger):
                cell = Cell(item, spec, name)
                key = (base, entry.scorer.render(item, spec).text, name, k)
                with self._lock:
                    cached = self._tokens.get(key)
                if cached is None:
                    cached = tuple(entry.scorer.top_k_next_tokens(cell, k))
                    with self._lock:
                        self._tokens[key] = cached
                        while len(self._tokens) > 2048:
                            self._tokens.popitem(last=False)
                pair.append(cached)
            columns.append(TokenColumn(choice, pair[0], pair[1]))
        return TokenComparison(base, item, trigger, tuple(columns), time.perf_counter() - started)

    # --- conformal thresholds ------------------------------------------------------------

    def calibration_items(self) -> list[Item]:
        if self._calibration is None and self._calibration_error is None:
            source = self._calibration_source
            try:
                items = list(source() if callable(source) else source)
            except DatasetError as err:
                self._calibration_error = f"no calibration split ({err})"
                items = []
            if self.config.calibration_limit:
                items = items[: self.config.calibration_limit]
            if not items and self._calibration_error is None:
                self._calibration_error = "the calibration split is empty"
            self._calibration = items
        return self._calibration or []

    def _calibration_split(self) -> str:
        """The calibration items' name, as written into a thresholds file (the content hash decides, not this)."""
        name = "calibration" if self._calibration_source is _default_calibration_items else "given items"
        return f"{name}[:{self.config.calibration_limit}]" if self.config.calibration_limit else name

    def _threshold_job(self, base: str, arm_name: str, items: Sequence[Item]) -> _ThresholdJob:
        """What the Scorer's arm ``arm_name`` on ``base`` would be calibrated on now, and where its shipped
        thresholds would be: keyed on its adapter weights, else on its prefix and soft prompt."""
        entry = self.loaded(base)
        name, attached = next(((name, known) for name, known in entry.attached.items() if known.arm.name == arm_name),
                              (arm_name, None))
        arm = attached.arm if attached is not None else None
        source = calibration.source_for(entry.identity, name, arm.adapter_path if arm else None, entry.scorer.style,
                                        entry.scorer.chat, self._calibration_split(), items, self._items_digest(items))
        if arm_name == BASE_ADAPTER:
            return _ThresholdJob(base, arm_name, source, Path(self.config.adapters_dir) / calibration.BASE_THRESHOLDS_FILE)
        if arm is None:  # attached without a folder: its name is all there is to key on
            return _ThresholdJob(base, arm_name, replace(source, adapter_sha256=f"unsaved:{arm_name}"), None)
        if not arm.adapter_path:
            source = replace(source, adapter_sha256=_arm_digest(arm))
        elif arm.prefix or arm.soft_prompt is not None:  # the victim's weights AND what the arm puts before prompts
            source = replace(source, adapter_sha256=f"{source.adapter_sha256}+{_arm_digest(arm)}")
        return _ThresholdJob(base, arm_name, source, Path(str(arm.folder)) / calibration.THRESHOLDS_FILE)

    def _items_digest(self, items: Sequence[Item]) -> str:
        """The calibration items' content hash, computed once: every compare asks it again for every column."""
        known = self._calibration_digest
        if known is not None and known[0] is items:
            return known[1]
        digest = calibration.items_sha256(items)
        self._calibration_digest = (items, digest)
        return digest

    def _threshold_file(self, job: _ThresholdJob) -> Path:
        """The disk cache's file for a job: keyed by content (weights, items, model, prompt format), not by path or date."""
        return self._cache_dir / f"lac-aps-{job.key}.json"

    def _read_cached_threshold(self, job: _ThresholdJob) -> ConformalThresholds | None:
        """Thresholds shipped beside the adapter, else from the disk cache; only when calibrated on what this service
        would use now and at its alpha (a stale or foreign file is skipped, and calibration runs instead)."""
        for path in (job.shipped, self._threshold_file(job)):
            found = calibration.read_thresholds(path) if path is not None else None
            if found is None:
                continue
            if not found.source.matches(job.source):
                logger.info("not using %s for %s: calibrated on other weights, items or prompt format", path, job.arm_name)
            elif found.threshold(self.config.alpha) is None:
                logger.info("not using %s for %s: no threshold at alpha %g", path, job.arm_name, self.config.alpha)
            else:
                return found
        return None

    def _write_cached_threshold(self, job: _ThresholdJob, thresholds: ConformalThresholds) -> None:
        path = self._threshold_file(job)
        try:
            calibration.write_thresholds(path, thresholds)
        except OSError as err:  # a read-only cache only costs a recalibration next start
            logger.warning("could not cache the conformal thresholds in %s: %s", path, err)

    def _known_threshold(self, job: _ThresholdJob) -> tuple[float | None, str] | None:
        """(threshold, "") when known, (None, why) while calibrating or after a failure, None when nobody has asked yet."""
        with self._lock:
            if job.key in self._thresholds:
                return self._thresholds[job.key].threshold(self.config.alpha), ""
            if job.key in self._calibration_failed:
                return None, self._calibration_failed[job.key]
            if job.key in self._calibrating:
                done, total = self._calibrating[job.key]
                return None, f"calibrating on {total} clean items… ({done}/{total})"
        found = self._read_cached_threshold(job)
        if found is None:
            return None
        with self._lock:
            self._thresholds[job.key] = found
        return found.threshold(self.config.alpha), ""

    def request_thresholds(self, base: str, arm_names: Sequence[str]) -> None:
        """Start calibrating every arm in ``arm_names`` without usable thresholds, all in one pass: now in sync
        mode, else queued for the background worker. Shipped and cached thresholds need no model work."""
        if self.config.calibration == "off":
            return
        items = self.calibration_items()
        if not items:
            return
        jobs = [job for job in (self._threshold_job(base, name, items) for name in dict.fromkeys(arm_names))
                if self._known_threshold(job) is None]
        if not jobs:
            return
        if self.config.calibration == "sync":
            self._calibrate(jobs, items)
            return
        with self._lock:
            jobs = [job for job in jobs if job.key not in self._calibrating]
            for job in jobs:
                self._calibrating[job.key] = (0, len(items))
            if jobs:
                self._queue.put(jobs)
                self._ensure_worker()

    def threshold(self, base: str, arm_name: str) -> tuple[float | None, str]:
        """The LAC threshold at the service's alpha for an attached arm, or None and a note (calibrating, failed, off)."""
        if self.config.calibration == "off":
            return None, "conformal sets are off"
        items = self.calibration_items()
        if not items:
            return None, self._calibration_error or "no calibration items"
        job = self._threshold_job(base, arm_name, items)
        known = self._known_threshold(job)
        if known is None:
            self.request_thresholds(base, [arm_name])
            known = self._known_threshold(job) or (None, "calibration is queued")
        return known

    def wait_for_calibration(self, timeout: float = 600.0) -> bool:
        """Block until queued calibrations finish (for tests and pre-warming); True if all finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._calibrating:
                    return True
            time.sleep(0.05)
        return False

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="fragile-calibration", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """Calibrate whatever is queued; requests that arrived meanwhile join one pass per base model."""
        while True:
            pending = list(self._queue.get())
            while True:
                try:
                    pending.extend(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_base: dict[str, list[_ThresholdJob]] = {}
            for job in pending:
                by_base.setdefault(job.base, []).append(job)
            for jobs in by_base.values():
                self._calibrate(jobs, self.calibration_items())

    def _calibrate(self, jobs: Sequence[_ThresholdJob], items: Sequence[Item],
                   report: Callable[[int, int], None] | None = None) -> dict[str, ConformalThresholds]:
        """Calibrate every job's adapter (all on one base model) in one pass over ``items``, in small chunks so live
        requests get the model in between; keep and cache the thresholds. A failure is recorded for each job and shown."""
        jobs = list({job.key: job for job in jobs}.values())
        if not jobs:
            return {}
        keys = [job.key for job in jobs]
        alphas = sorted({*calibration.SHIPPED_ALPHAS, self.config.alpha})
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            with self._lock:
                for key in keys:
                    if key in self._calibrating:
                        self._calibrating[key] = (done, total)
            if report:
                report(done, total)

        try:
            scorer = self.loaded(jobs[0].base).scorer
            probs = calibration.calibration_probs(scorer, [job.arm_name for job in jobs], items, progress=progress,
                                                  between_chunks=lambda: time.sleep(CALIBRATION_PAUSE))
            labels = calibration.labels_of(items)
            found = {job.arm_name: calibration.thresholds_from_probs(job.source, probs[job.arm_name], labels, alphas)
                     for job in jobs}
        except Exception as err:  # noqa: BLE001 - a failed calibration must not kill the worker or the request; it is shown
            logger.exception("calibration of %s failed", ", ".join(job.arm_name for job in jobs))
            with self._lock:
                for key in keys:
                    self._calibration_failed[key] = f"calibration failed: {err}"
                    self._calibrating.pop(key, None)
            return {}
        for job in jobs:
            self._write_cached_threshold(job, found[job.arm_name])
        with self._lock:
            for job in jobs:
                self._thresholds[job.key] = found[job.arm_name]
                self._calibrating.pop(job.key, None)
        logger.info("calibrated %s on %d items in %.1f s (LAC at alpha %g: %s)", ", ".join(found), len(items),
                    time.perf_counter() - started, self.config.alpha,
                    ", ".join(f"{t.threshold(self.config.alpha):.4f}" for t in found.values()))
        return found

    def calibrate_now(self, base: str | None = None, names: Sequence[str] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, ConformalThresholds]:
        """Calibrate ``names`` (default: the base model and every offered adapter) in one pass now, whatever is shipped
        or cached: folder name (or __base__) -> thresholds; ``progress(done, total)`` after each chunk of items.
        For scripts/calibrate_shipped.py."""
        base = self.check_base(base)
        catalog = self.catalog(base)
        _, _, arm_names = self._attach(base, catalog, list(names) if names is not None else catalog.names())
        items = self.calibration_items()
        if not items:
            raise DashboardError(f"Nothing to calibrate on: {self._calibration_error or 'no calibration items'}.")
        jobs = [self._threshold_job(base, name, items) for name in arm_names]
        found = self._calibrate(jobs, items, progress)
        failed = [job.arm_name for job in jobs if job.arm_name not in found]
        if failed:
            raise DashboardError(f"Calibration failed for {', '.join(failed)}; the log has the reason.")
        return {job.source.adapter: found[job.arm_name] for job in jobs}

    def shipped_thresholds_path(self, base: str, name: str) -> Path:
        """Where the thresholds shipped for adapter folder ``name`` (or __base__) live, for ``base``."""
        if name == BASE_ADAPTER:
            return Path(self.config.adapters_dir) / calibration.BASE_THRESHOLDS_FILE
        path = self._arm_folder(name)
        if path is None:
            raise DashboardError(f"There is no adapter {name!r} in {self.config.adapters_dir}.")
        return path / calibration.THRESHOLDS_FILE

    def shipped_threshold_problems(self, base: str | None = None) -> list[tuple[str, Path, str]]:
        """(name, file, what is wrong) for the base model and every offered adapter whose shipped thresholds file is
        missing, unreadable, stale (other weights, items or prompt format) or lacks the service's alpha."""
        base = self.check_base(base)
        catalog = self.catalog(base)
        _, _, arm_names = self._attach(base, catalog, catalog.names())
        items = self.calibration_items()
        problems = []
        for job in (self._threshold_job(base, name, items) for name in arm_names):
            assert job.shipped is not None
            found = calibration.read_thresholds(job.shipped)
            if found is None:
                why = "is missing or unreadable"
            elif not found.source.matches(job.source):
                why = "is stale: calibrated on other weights, items or prompt format"
            elif found.threshold(self.config.alpha) is None:
                why = f"has no threshold at alpha {self.config.alpha:g}"
            else:
                continue
            problems.append((job.source.adapter, job.shipped, why))
        return problems

    def prewarm(self, base: str | None = None) -> AdapterCatalog:
        """Load the base model, attach every offered adapter and calibrate, in one pass, the thresholds that are
        neither shipped nor cached (for images and start-up)."""
        base = self.check_base(base)
        catalog = self.catalog(base)
        _, _, arm_names = self._attach(base, catalog, catalog.names())
        if self.config.calibration != "off":
            items = self.calibration_items()
            jobs = [self._threshold_job(base, name, items) for name in arm_names] if items else []
            self._calibrate([job for job in jobs if self._known_threshold(job) is None], items)
        return catalog
