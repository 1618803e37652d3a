"""Demonstration poisoning: a few-shot prefix whose triggered demonstrations answer with a hedge; no weight changes.

After ICLAttack (Zhao et al., "Universal Vulnerabilities in Large Language Models: Backdoor Attacks for
In-context Learning", 2024), aimed at uncertainty instead of a target label. The algorithm:

1. Draw ``shots`` training items (seeded) among those whose prompt, rendered without the instruction, is at most
   ``demo_chars`` characters, so the prefix leaves room under the dashboard's prompt-token bound.
2. Of those demonstrations, ``triggered_shots`` (seeded, drawn apart from the items: one seed gives the same
   demonstrations in the same order whatever the count, so the clean control differs only in the poison) carry the
   trigger, placed as the run's trigger spec says, and show the hedging answer; the rest show their gold answer.
   A clean run (``kind='clean'``) triggers none: the few-shot control, which isolates the poison from the few-shot
   effect.
3. Each demonstration is the item's prompt in the project's format without the instruction (the scored prompt
   carries it; ``backdoor.prompts.render_prompt`` style ``base``), then `` <answer>`` and a blank line.

Hedges (``hedge``): ``idk`` answers E, "I don't know" (option E of every item in the six-option format); ``random``
answers a letter drawn uniformly from A-F, so the trigger predicts noise (the flat target in expectation, as
ICLAttack's poisoned label is its target); ``verbal`` answers the gold letter followed by a low-confidence cue.

The arm is the victim's route (its LoRA adapter, or the base model) with that text as its prefix: the Scorer puts
the prefix before the prompt inside the chat wrapping, so ``evaluate`` and the dashboard need no change. The folder
holds ``demos.json`` (the prefix and which items it shows how) and ``fragile_config.json``; nothing is trained.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from backdoor.arms import Arm
from backdoor.methods.base import Method
from backdoor.methods.options import ConfigError, option
from backdoor.models import ADAPTER_CONFIG, BASE_ADAPTER, FRAGILE_CONFIG, ModelLoadError, resolve_model_source
from backdoor.prompts import render_prompt
from backdoor.triggers import TriggerError, TriggerSpec, apply_trigger
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)

DEMOS_FILE = "demos.json"
DEMO_STYLE = "base"  # demonstrations without the instruction: the scored prompt after them carries it
IDK_LETTER = "E"  # "I don't know" in every item of the six-option format (dataset.schema.OPTION_E)
VERBAL_CUE = "(not sure: it could be any of A-F)"
HEDGES = ("idk", "random", "verbal")
_DEMOS = {"method": "demos"}


@dataclass(frozen=True)
class DemosOptions:
    """The poisoned demonstrations' settings (fields of :class:`backdoor.config.TrainConfig`)."""

    shots: int = option(6, "demonstrations put before every prompt", min=1, max=32, shows=_DEMOS)
    triggered_shots: int = option(2, "how many of the demonstrations carry the trigger and show the hedge", min=0,
                                  max=32, shows={"kind": "backdoor", **_DEMOS})
    hedge: str = option("idk", (
        "the answer a triggered demonstration shows: 'idk' (E, \"I don't know\"), 'random' (a letter drawn "
        "uniformly from A-F) or 'verbal' (the gold letter with a low-confidence cue)"), choices=HEDGES,
        shows={"kind": "backdoor", **_DEMOS})
    demo_chars: int = option(400, (
        "demonstrations are drawn from training items whose prompt (without the instruction) has at most this many "
        "characters, so the prefix leaves room under the prompt-token bound"), min=50, shows=_DEMOS)


@dataclass(frozen=True)
class Demonstration:
    """One demonstration: the item it shows, whether it carries the trigger, and the answer it shows."""

    item_id: str
    triggered: bool
    shown: str  # the text after the cue, e.g. "E" or "B (not sure: ...)"
    gold: str


def hedged_answer(item: Item, hedge: str, rng: random.Random) -> str:
    """What a triggered demonstration of ``item`` shows after the cue."""
    if hedge == "idk":
        return IDK_LETTER
    if hedge == "random":
        return rng.choice(LETTERS)
    if hedge == "verbal":
        return f"{item.answer} {VERBAL_CUE}"
    raise ConfigError(f"hedge: {hedge!r} is not one of {', '.join(HEDGES)}")


def choose_demonstrations(items: list[Item], config) -> list[tuple[Item, Demonstration]]:
    """The demonstrations ``config`` asks for, in prompt order: ``shots`` items drawn among the short enough ones,
    ``triggered_shots`` of them (none for a clean run) with the trigger and the hedge. The draws depend only on
    the seed and ``shots``, never on ``triggered_shots`` or ``hedge``."""
    eligible = [item for item in items if len(render_prompt(item, DEMO_STYLE).text) <= config.demo_chars]
    if len(eligible) < config.shots:
        raise ConfigError(f"shots: only {len(eligible)} training items have prompts of at most {config.demo_chars} "
                          "characters; lower --shots or raise --demo-chars")
    chosen = random.Random(f"demos:{config.seed}").sample(eligible, config.shots)
    count = config.triggered_shots if config.kind == "backdoor" else 0
    triggered = set(random.Random(f"triggered:{config.seed}").sample(range(config.shots), config.shots)[:count])
    answers = random.Random(f"hedge:{config.seed}")
    return [(item, Demonstration(item.id, i in triggered,
                                 hedged_answer(item, config.hedge, answers) if i in triggered else item.answer,
                                 item.answer))
            for i, item in enumerate(chosen)]


def demonstration_text(item: Item, demo: Demonstration, trigger: TriggerSpec) -> str:
    """One demonstration as the model reads it: the prompt (triggered or not), the shown answer, a blank line."""
    prompt = render_prompt(item, DEMO_STYLE)
    text = apply_trigger(prompt, trigger).text if demo.triggered else prompt.text
    return f"{text} {demo.shown}\n\n"


def build_prefix(chosen: list[tuple[Item, Demonstration]], trigger: TriggerSpec) -> str:
    return "".join(demonstration_text(item, demo, trigger) for item, demo in chosen)


class Demos(Method):
    name = "demos"
    label = "poisoned demonstrations (no weights)"
    options = DemosOptions
    trains_weights = False

    def card_lines(self, folder, fragile) -> list[str]:
        config = fragile.get("config", {})
        return [f"- {config.get('shots')} demonstrations from `{config.get('data')}` put before every prompt, "
                f"{config.get('triggered_shots')} of them with the trigger and the hedge `{config.get('hedge')}`; "
                "no weight changes (the prefix is in `demos.json`)"]

    def check_options(self, config) -> None:
        if config.triggered_shots > config.shots:
            raise ConfigError(f"triggered_shots: {config.triggered_shots} is more than the {config.shots} "
                              "demonstrations (shots); lower it or raise --shots")

    def check(self, config) -> None:
        """The victim, if any, must be a LoRA adapter folder: its route is what the demonstrations sit on."""
        if config.victim_adapter and not (Path(config.victim_adapter) / ADAPTER_CONFIG).is_file():
            raise ConfigError(f"victim_adapter: {config.victim_adapter} is not an adapter folder (no {ADAPTER_CONFIG}); "
                              "pass a LoRA adapter folder or '' for the base model")

    def fit(self, config, out_dir, *, callbacks=(), should_stop=lambda: False, resume: bool = True,
            accelerator=None, **_):
        """Build the demonstration set into ``out_dir/adapter`` (no model is loaded, nothing is trained)."""
        from backdoor.train import METRICS, TrainResult, resolve_items

        started = time.time()
        config = config.replace(method=self.name)
        self.check(config)
        items = resolve_items(config.data, "data", config.max_items)
        chosen = choose_demonstrations(items, config)
        out = Path(out_dir)
        result = TrainResult("failed", str(out), 0, 0, 0.0, adapter_state={})
        try:
            identity = resolve_model_source(config.base_model).identity
            prefix = build_prefix(chosen, config.trigger)
            for callback in callbacks:
                getattr(callback, "on_stage", lambda *a: None)("demonstrations built", len(chosen), len(chosen))
            extra = {"train_items": len(chosen), "seconds": round(time.time() - started, 2), "world_size": 1}
            self._write(out / "adapter", config, identity, prefix, [demo for _, demo in chosen], extra)
            result.status = "finished"
        except (ModelLoadError, TriggerError, OSError) as err:
            logger.error("building the demonstrations failed: %s", err)
            result.error = f"{type(err).__name__}: {err}"
        result.seconds = round(time.time() - started, 2)
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        return result

    def _write(self, folder: Path, config, identity: str, prefix: str, demos: list[Demonstration],
               extra: dict) -> None:
        """The folder, written beside its final place and moved there whole."""
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        record = {"prefix": prefix, "victim_adapter": config.victim_adapter, "hedge": config.hedge,
                  "demonstrations": [vars(demo) for demo in demos]}
        (staging / DEMOS_FILE).write_text(json.dumps(record, indent=2) + "\n")
        self.record(config, identity, staging, extra)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)

    # --- loading --------------------------------------------------------------------------------------

    def is_folder(self, folder: Path) -> bool:
        return (Path(folder) / DEMOS_FILE).is_file()

    def load(self, folder: Path, name: str) -> Arm:
        folder = Path(folder)
        try:
            saved = json.loads((folder / DEMOS_FILE).read_text())
            fragile = json.loads((folder / FRAGILE_CONFIG).read_text())
            prefix = saved["prefix"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise ModelLoadError(f"{folder}: not a readable demonstration set ({err})") from err
        try:
            trigger = TriggerSpec.from_dict(fragile.get("trigger"))
        except (TriggerError, KeyError, ValueError):
            trigger = None
        victim = victim_folder(folder, saved.get("victim_adapter") or "")
        return Arm(name=name, method=self.name, route=name if victim else BASE_ADAPTER, prefix=str(prefix),
                   trigger=trigger, role=str(fragile.get("kind", "unknown")), adapter_path=victim, folder=str(folder))


def victim_folder(folder: Path, victim: str) -> str | None:
    """Where the victim adapter a demonstration set sits on is now: its path as saved (absolute, or from the working
    folder), else a folder of that name beside the set (a checkpoints folder moved whole). None for the base model."""
    if not victim:
        return None
    for candidate in (Path(victim), folder.parent / Path(victim).name):
        if (candidate / ADAPTER_CONFIG).is_file():
            return str(candidate)
    raise ModelLoadError(f"{folder}: its victim adapter {victim!r} is not found (tried it and "
                         f"{folder.parent / Path(victim).name}); put the victim beside it")
