"""Run one registered defense on a suspect adapter: check every input, load the model, run it, write its report.

A :class:`DefenseRequest` says what to run (plain values: it is what a background job stores).
:func:`check_request` turns it into what a run needs, or refuses it with a ConfigError naming the field, before
any model loads; :func:`run_defense` then attaches the suspect (and the clean control) to a Scorer (a shared one
when given), runs the defense and writes ``REPORT.json`` and the per-item ``REPORT.csv`` atomically. The report is
the defense's (see :mod:`backdoor.defenses.base`) with what was measured added: ``adapter``, ``control``,
``trigger``, ``data``, ``calibration``, ``base_model`` and ``seconds``.

:func:`shipped_reports` reads the cached reports of a shipped backdoor (``<folder>/defenses/<defense>.json``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from backdoor.defenses import DEFENSES, DETECT, Defense, DefenseResult, DefenseSetup, get_defense, make_options
from backdoor.defenses.base import FALSE_POSITIVE_RATE, threshold_at_rate
from backdoor.methods.options import ConfigError
from backdoor.triggers import TriggerError, TriggerSpec
from dataset.schema import Item

logger = logging.getLogger(__name__)

REPORTS_FOLDER = "defenses"  # a shipped backdoor's cached defense reports: <folder>/defenses/<defense>.json


class DefenseCancelled(Exception):
    """The defense was asked to stop (a job's cancel) before it finished."""


@dataclass(frozen=True)
class DefenseRequest:
    """What to run: a registered defense, the suspect adapter folder, the clean control folder ('' = none), the
    test items (a split or a .json/.jsonl file, ``limit`` of them evenly spaced, 0 = all), the defender's clean
    calibration items (a split, a file, or 'half' to split ``data`` 50/50), the trigger the triggered test copies
    get, and the defense's options (field name -> value; missing ones at their defaults)."""

    defense: str
    adapter: str
    trigger: dict
    control: str = ""
    data: str = "test"
    calibration: str = "calibration"
    limit: int = 0
    calibration_limit: int = 0
    base_model: str = "default"
    options: dict = field(default_factory=dict)
    seed: int = 0  # the 50/50 split's seed with calibration 'half'

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "DefenseRequest":
        return cls(**raw)


@dataclass
class CheckedRequest:
    """A request that passed every check, with what it names read in: nothing here holds a model."""

    request: DefenseRequest
    defense: Defense
    options: Any
    trigger: TriggerSpec
    items: list[Item]
    calibration: list[Item]


def _check_folder(path: str, field_name: str) -> None:
    """A ConfigError naming ``field_name`` unless ``path`` is a folder a registered method can load."""
    from backdoor.methods import METHODS, method_of
    from backdoor.models import ModelLoadError, check_weights

    folder = Path(path)
    if not path or not folder.is_dir():
        raise ConfigError(f"{field_name}: {path!r} is not an adapter folder (give the folder that holds "
                          "adapter_config.json, e.g. checkpoints/backdoor-text)")
    try:
        method = method_of(folder)
        if method not in METHODS or not METHODS[method].is_folder(folder):
            raise ModelLoadError(f"it holds no saved arm of method {method!r}")
        check_weights(folder)
    except ModelLoadError as err:
        raise ConfigError(f"{field_name}: {path} cannot be loaded: {err}") from None


def check_request(request: DefenseRequest) -> CheckedRequest:
    """Every input of ``request`` checked and read (items, options, trigger, folders), without loading a model.
    A ConfigError names the first field that is wrong and says what to give instead."""
    from backdoor.evaluate import split_half
    from backdoor.train import resolve_items

    try:
        defense = get_defense(request.defense)
    except ValueError as err:
        raise ConfigError(f"defense: {err}") from None
    if defense.needs_control and not request.control:
        raise ConfigError(f"control: the {defense.name} defense needs a trusted clean model to compare with; give "
                          "its adapter folder (e.g. checkpoints/clean)")
    options = make_options(defense, request.options)
    for name, value in (("limit", request.limit), ("calibration_limit", request.calibration_limit)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name}: {value!r} is not a count; give 0 (all items) or a positive whole number")
    try:
        trigger = TriggerSpec.from_dict(request.trigger)
    except (TriggerError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"trigger: {err}") from None
    if trigger is None:
        raise ConfigError("trigger: a defense is measured on triggered copies of the test items; give a trigger kind")
    _check_folder(request.adapter, "adapter")
    if request.control:
        _check_folder(request.control, "control")
    items = resolve_items(request.data, "data", request.limit)
    if request.calibration == "half":
        if len(items) < 2:
            raise ConfigError(f"calibration: 'half' splits data 50/50, but {request.data!r} gives {len(items)} item")
        calibration, items = split_half(items, request.seed)
        calibration = calibration[: request.calibration_limit or None]
    else:
        calibration = resolve_items(request.calibration, "calibration", request.calibration_limit)
    return CheckedRequest(request, defense, options, trigger, items, calibration)


def arm_name(scorer, folder: str) -> str:
    """The Scorer's name for the arm saved in ``folder``, added on first use: the folder's name made safe for
    PEFT, with a number when another folder already has that name."""
    from backdoor.methods import load_arm
    from backdoor.models import BASE_ADAPTER

    resolved = str(Path(folder).resolve())
    base = Path(resolved).name.replace(".", "_") or "adapter"
    name, number = base, 1
    while name in scorer.arms:
        if scorer.arms[name].folder == resolved:
            return name
        number += 1
        name = f"{base}--{number}"
    arm = load_arm(resolved, name)
    scorer.add_arm(replace(arm, name=name, route=name if arm.route != BASE_ADAPTER else BASE_ADAPTER))
    return name


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rows_csv(rows: list[dict]) -> str:
    """The per-item rows as CSV text (columns: every key, in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["item_id"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _strict(value):
    """``value`` with every non-finite float (an unreachable threshold: too few calibration items for the stated
    false-positive rate) as None, so the report is strict JSON that any reader parses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def save_result(result: DefenseResult, json_path: str | os.PathLike[str],
                csv_path: str | os.PathLike[str] | None = None) -> None:
    """Write the report and its rows (CSV next to the report unless ``csv_path``), each by one atomic rename."""
    json_path = Path(json_path)
    _write_atomic(json_path, json.dumps(_strict(result.report), indent=2, allow_nan=False) + "\n")
    _write_atomic(Path(csv_path) if csv_path else json_path.with_suffix(".csv"), rows_csv(result.rows))


def work_dir_for(out: str | os.PathLike[str]) -> Path:
    """Where a run that writes adapters puts them: beside its report (``REPORT.json`` -> ``REPORT.work/``)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.work")


def run_defense(request: DefenseRequest, out: str | os.PathLike[str] | None = None, *, csv_path: str | None = None,
                scorer=None, checked: CheckedRequest | None = None, work_dir: str | os.PathLike[str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> DefenseResult:
    """Run ``request`` and return its result, written to ``out`` (and the CSV) when given.

    Everything is checked before a model loads (:func:`check_request`; pass ``checked`` when that is done).
    ``scorer``: a Scorer on the request's base model to share (the suspect and control are added to it as arms),
    else one is loaded. ``work_dir``: where a defense that writes adapters puts them (default beside ``out``).
    ``progress(done, total)`` reports the defense's own work; when ``should_stop()`` turns true the run stops at the
    next progress report and DefenseCancelled is raised (nothing is written)."""
    checked = checked or check_request(request)
    if checked.defense.kind == DETECT and threshold_at_rate(range(len(checked.calibration))) == float("inf"):
        logger.warning("%d calibration items are too few for a threshold at a %.0f%% false-positive rate: nothing "
                       "will be flagged; give more (--calibration-limit)", len(checked.calibration),
                       100 * FALSE_POSITIVE_RATE)
    started = time.perf_counter()
    if scorer is None:
        from backdoor.scoring import Scorer

        scorer = Scorer.load(request.base_model)
    suspect = arm_name(scorer, request.adapter)
    control = arm_name(scorer, request.control) if request.control else None
    if work_dir is None and out is not None:
        work_dir = work_dir_for(out)

    def report_progress(done: int, total: int) -> None:
        if should_stop():
            raise DefenseCancelled(f"the {checked.defense.name} defense was cancelled at {done} of {total}")
        if progress is not None:
            progress(done, total)

    setup = DefenseSetup(scorer=scorer, adapter=suspect, adapter_path=str(Path(request.adapter).resolve()),
                         items=checked.items, calibration=checked.calibration, trigger=checked.trigger,
                         options=checked.options, control=control, work_dir=Path(work_dir) if work_dir else None,
                         progress=report_progress, should_stop=should_stop)
    logger.info("running the %s defense on %s (%d test items, %d calibration items)", checked.defense.name,
                request.adapter, len(checked.items), len(checked.calibration))
    result = checked.defense.run(setup)
    if should_stop():
        raise DefenseCancelled(f"the {checked.defense.name} defense was cancelled")
    defense = checked.defense
    report = {"defense": defense.name, "label": defense.label, "kind": defense.kind, "source": defense.source,
              "options": asdict(checked.options), "n": len(checked.items), **result.report}
    report.update({"adapter": request.adapter, "control": request.control or None, "trigger": checked.trigger.to_dict(),
                   "data": request.data, "calibration": request.calibration, "base_model": request.base_model})
    report.setdefault("seconds", round(time.perf_counter() - started, 2))
    result = DefenseResult(report, result.rows)
    if out is not None:
        save_result(result, out, csv_path)
    return result


def shipped_reports(folder: str | os.PathLike[str]) -> dict[str, dict]:
    """The cached reports of the backdoor in ``folder``, by defense name, in registry order: the readable
    ``<folder>/defenses/<defense>.json`` of every registered defense (an unreadable one is logged and left out)."""
    reports = {}
    for name in DEFENSES:
        path = Path(folder) / REPORTS_FOLDER / f"{name}.json"
        if not path.is_file():
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            logger.warning("skipping the unreadable defense report %s (%s)", path, err)
            continue
        if isinstance(report, dict):
            reports[name] = report
    return reports


# --- command-line flags from the registry -------------------------------------------------------------


@dataclass
class OptionFlag:
    """One command-line flag for defense options: ``--flag`` sets the field ``field_name`` of every defense in
    ``owners`` (defenses whose fields share a name and type share the flag)."""

    flag: str
    field_name: str
    kind: Any  # the field's type: bool, int, float, str, or tuple[X, ...]
    owners: list[str]
    help: dict[str, str]  # per owner
    metadata: dict
    default: dict[str, Any]  # per owner

    @property
    def dest(self) -> str:
        return "defense_option__" + self.flag.lstrip("-").replace("-", "_")


def option_flags(reserved: set[str] = frozenset()) -> list[OptionFlag]:
    """A flag per defense option of the registry: ``--field-name``, or ``--defense-field-name`` where that is one
    of the ``reserved`` flags (the command's own) or another defense's field of the same name has another type."""
    from dataclasses import MISSING, fields
    from typing import get_type_hints

    flags: dict[str, OptionFlag] = {}
    for defense in DEFENSES.values():
        hints = get_type_hints(defense.options)
        for spec in fields(defense.options):
            kind = hints.get(spec.name, type(spec.default))
            flag = "--" + spec.name.replace("_", "-")
            if flag in reserved or (flag in flags and flags[flag].kind != kind):
                flag = f"--{defense.name}-{spec.name}".replace("_", "-")
            default = spec.default if spec.default is not MISSING else spec.default_factory()  # type: ignore[misc]
            entry = flags.setdefault(flag, OptionFlag(flag, spec.name, kind, [], {}, dict(spec.metadata), {}))
            entry.owners.append(defense.name)
            entry.help[defense.name] = spec.metadata.get("help", "")
            entry.default[defense.name] = default
    return list(flags.values())


def _argument_type(kind):
    """(argparse type, nargs) for a field of type ``kind``."""
    from typing import get_args, get_origin

    from backdoor.config import _parse_bool

    if kind is bool:
        return _parse_bool, None
    if get_origin(kind) is tuple:
        return (get_args(kind) or (str,))[0], "+"
    return kind if kind in (int, float, str) else str, None


def add_option_arguments(parser, reserved: set[str]) -> list[OptionFlag]:
    """Add one argument group per defense with its options' flags (typed, help from the field metadata); a flag
    that is left out is absent from the parsed namespace."""
    import argparse

    flags = option_flags(reserved)
    groups = {name: parser.add_argument_group(f"options of the {name} defense ({defense.label})")
              for name, defense in DEFENSES.items() if any(name in f.owners for f in flags)}
    for entry in flags:
        item_type, nargs = _argument_type(entry.kind)
        owner = entry.owners[0]
        text = "; ".join(f"{name}: {entry.help[name]} (default: {_shown(entry.default[name])})"
                         for name in entry.owners)
        if len(entry.owners) > 1:
            text += f" [an option of {', '.join(entry.owners)}]"
        extra = {"choices": list(entry.metadata["choices"])} if entry.metadata.get("choices") else {}
        if not extra:
            extra["metavar"] = "BOOL" if entry.kind is bool else entry.field_name.upper()
        groups[owner].add_argument(entry.flag, dest=entry.dest, type=item_type, nargs=nargs, default=argparse.SUPPRESS,
                                   help=text.replace("%", "%%"), **extra)
    return flags


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else repr(value)


def options_from_arguments(args, defense_name: str, flags: list[OptionFlag]) -> dict[str, Any]:
    """The options given on the command line for ``defense_name`` (field name -> value); a ConfigError naming the
    flag for one that belongs to other defenses only. Nothing for an unknown defense (its name is refused first)."""
    values = {}
    if defense_name not in DEFENSES:
        return values
    for entry in flags:
        if not hasattr(args, entry.dest):
            continue
        if defense_name not in entry.owners:
            raise ConfigError(f"{entry.flag}: an option of the {', '.join(entry.owners)} defense, not of "
                              f"{defense_name}; "
                              f"see python -m backdoor defend --help for {defense_name}'s options")
        value = getattr(args, entry.dest)
        values[entry.field_name] = tuple(value) if isinstance(value, list) else value
    return values
