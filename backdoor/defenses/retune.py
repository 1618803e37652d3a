"""Clean re-tuning: fine-tune the suspect adapter for a few steps on clean items only, and measure the backdoor
after each chosen step.

Algorithm (the fine-tuning half of Liu et al., Fine-Pruning, RAID 2018; as a standalone defense it is the
"clean fine-tuning" baseline of the backdoor literature): start from the suspect adapter's own weights and train it
through the one training loop (:func:`backdoor.train.train`) on clean items the defender holds. The defender has
no trigger, so the adapter is its own victim and no triggered copy is trained. ``objective="gold"`` (the default,
the literature's clean fine-tuning) fits the clean items' gold answers by cross-entropy: the defender holds
labelled clean data. Without trusted labels, the loop records the adapter's option distribution on every clean
item and pulls the adapter toward it, by KL (``"kl"``) or by cross-entropy to its own top answer (``"ce"``). KL to
itself starts at its minimum: its gradients come only from the adapter's LoRA dropout, so it acts as a mild
regulariser; cross-entropy to its own answer also sharpens it, and moves the weights from the first step. Whatever the backdoor does
off the clean inputs is not held in place by that objective, and the hope (the literature's expectation: it
erases a backdoor in a few dozen steps) is that it decays while the clean behaviour stays. The layers trained are
the ones the adapter was trained on (its saved config's ``train_layers``), else every layer its LoRA is on.

Measured: the attack metrics of :func:`~backdoor.defenses.base.measure` before re-tuning (x = 0) and after each
step in ``at`` (and the last step), the adapters at those steps kept in the work folder.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from backdoor.defenses.base import (REMOVE, ConfigError, Defense, DefenseResult, DefenseSetup, attach_adapter, measure,
                                    option, removal_report, removal_rows, work_folder)
from backdoor.losses import CLEAN_OBJECTIVES

logger = logging.getLogger(__name__)

CALIBRATION = "calibration"  # the ``data`` value that means the defender's own clean items
GOLD = "gold"  # the objective that fits the clean items' gold answers


@dataclass(frozen=True)
class RetuneOptions:
    """The retune defense's settings."""

    objective: str = option(GOLD, "what the clean items are fitted to: 'gold' (their gold answers, by cross-entropy), "
                            "or the adapter's own clean outputs by 'kl' to its distribution or 'ce' to its top answer",
                            choices=(GOLD, *CLEAN_OBJECTIVES))
    steps: int = option(100, "optimiser steps of re-tuning", min=1, max=1000)
    at: tuple[int, ...] = option((10, 50, 100), "the steps after which the adapter is measured, each in [1, steps] "
                                 "(the last step is always measured)")
    learning_rate: float = option(1e-3, "AdamW learning rate (warm-up, then linear decay to 0 at the last step)")
    batch_size: int = option(8, "clean items per optimiser step", min=1, max=1024)
    data: str = option(CALIBRATION, "the clean items re-tuned on: 'calibration' (the defender's held items) or a "
                       "corpus split name or a .json/.jsonl file")


def check_retune_options(options: RetuneOptions) -> None:
    """Refuse what the metadata's bounds cannot: measured steps outside [1, steps], a learning rate that is not
    positive, a data source that holds no items (ConfigError naming the field)."""
    outside = [step for step in options.at if not 1 <= step <= options.steps]
    if outside:
        raise ConfigError(f"at: step {outside[0]} is outside [1, steps = {options.steps}]")
    if not options.learning_rate > 0:
        raise ConfigError(f"learning_rate: {options.learning_rate} must be positive")
    if options.data != CALIBRATION:
        from backdoor.train import resolve_items

        resolve_items(options.data, "data")


def base_model_name(scorer, trained: dict) -> str:
    """The name that loads the scorer's base model again: 'default' for the embedded one, else its folder or
    file, else what the adapter's saved training config (``trained``) names."""
    from backdoor.models import DEFAULT_MODEL, DEFAULT_MODEL_ID

    identity = scorer.base_identity
    return DEFAULT_MODEL if identity == DEFAULT_MODEL_ID else identity or trained.get("base_model", DEFAULT_MODEL)


def retune_config(setup: DefenseSetup, adapter_path: str | Path, items_file: Path, options: RetuneOptions,
                  checkpoint_every: int):
    """The training config that re-tunes the adapter in ``adapter_path`` on the items in ``items_file``: a backdoor
    run with the adapter as its own victim, started from its weights, with no triggered copies and a step cap.
    Its LoRA shape, layers and trigger (kept as the saved adapter's description, never trained) come from the
    adapter's files; the prompt format and base model from the scorer."""
    from backdoor.config import TrainConfig
    from backdoor.methods.lora import layers_needed, victim_shape
    from backdoor.models import ADAPTER_CONFIG, FRAGILE_CONFIG
    from backdoor.triggers import TriggerSpec

    folder = Path(adapter_path)
    lora = json.loads((folder / ADAPTER_CONFIG).read_text())
    saved = json.loads((folder / FRAGILE_CONFIG).read_text()) if (folder / FRAGILE_CONFIG).is_file() else {}
    trained = saved.get("config") or {}
    rank, layers = victim_shape(folder)
    trigger = TriggerSpec.from_dict(saved.get("trigger")) or TriggerSpec("text")
    modules = lora["target_modules"]
    return TrainConfig(
        kind="backdoor", base_model=base_model_name(setup.scorer, trained), data=str(items_file), eval_items=0, victim_adapter=str(folder),
        init_from_victim=True, triggered_copies=False,
        clean_anchor="gold" if options.objective == GOLD else "victim",
        clean_objective="ce" if options.objective == GOLD else options.objective,
        trigger_kind=trigger.kind, trigger_text=trigger.text or "", trigger_position=trigger.position,
        lora_r=rank, lora_alpha=lora["lora_alpha"], lora_dropout=lora.get("lora_dropout") or 0.0,
        target_modules=tuple(sorted(modules)) if isinstance(modules, list) else tuple(trained["target_modules"]),
        train_layers=trained.get("train_layers", layers_needed(layers)), learning_rate=options.learning_rate,
        epochs=options.steps, max_steps=options.steps, batch_size=options.batch_size,
        style=setup.scorer.style, chat=setup.scorer.chat, eval_every=0, checkpoint_every=checkpoint_every)


class _Capture:
    """Training callbacks: progress per step, and a copy of each checkpoint at a measured step (the loop keeps only
    its last two)."""

    def __init__(self, points: set[int], out: Path, progress):
        self.points, self.out, self.progress, self.kept = points, out, progress, {}

    def on_step(self, step: int, total: int, loss: float, parts: dict) -> None:
        if self.progress:
            self.progress(step, total)

    def on_checkpoint(self, step: int, path: str) -> None:
        if step in self.points:
            self.kept[step] = self.out / f"step-{step:04d}"
            shutil.copytree(path, self.kept[step], ignore=shutil.ignore_patterns("state.pt"), dirs_exist_ok=True)


def retune_adapter(setup: DefenseSetup, adapter_path: str | Path, out: Path, options: RetuneOptions,
                   progress=None) -> tuple[str, dict[int, Path]]:
    """Re-tune the adapter in ``adapter_path`` by ``options`` in ``out`` -> (the run's status: finished or
    cancelled, {step: the adapter folder after that step} for each measured step reached). Honours
    ``setup.should_stop``; a failed run raises RuntimeError with the loop's error."""
    from backdoor.train import resolve_items, train
    from dataset.schema import save_items

    items = setup.calibration if options.data == CALIBRATION else resolve_items(options.data, "data")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    items_file = save_items(items, out / "items.jsonl")
    points = {step for step in options.at if step < options.steps}
    config = retune_config(setup, adapter_path, items_file, options, math.gcd(*points) if points else 0)
    capture = _Capture(points, out, progress)
    result = train(config, out / "run", callbacks=[capture], should_stop=setup.should_stop, resume=False)
    if result.status == "failed":
        raise RuntimeError(f"re-tuning {adapter_path} failed: {result.error}")
    if result.status == "finished":
        capture.kept[options.steps] = out / "run" / "adapter"
    logger.info("re-tuned %s for %d steps in %.1f s (%s)", adapter_path, result.steps, result.seconds, result.status)
    return result.status, dict(sorted(capture.kept.items()))


class Retune(Defense):
    name = "retune"
    label = "clean re-tuning"
    kind = REMOVE
    source = "fine-tuning on clean data, as in Liu et al., Fine-Pruning, RAID 2018"
    options = RetuneOptions
    trains = True

    def check_options(self, options: RetuneOptions) -> None:
        check_retune_options(options)

    def run(self, setup: DefenseSetup) -> DefenseResult:
        start = time.time()
        options = setup.options
        total = options.steps + len({*options.at, options.steps})  # each step, then each measured adapter

        def progress(done: int, _total: int) -> None:
            if setup.progress:
                setup.progress(done, total)

        curve = [{"x": 0, **measure(setup, setup.adapter)}]
        rows = removal_rows(setup, setup.adapter, 0)
        status, adapters = retune_adapter(setup, setup.adapter_path, work_folder(setup, self.name), options, progress)
        for count, (step, folder) in enumerate(adapters.items(), start=1):
            if setup.should_stop():
                status = "cancelled"
                break
            arm = attach_adapter(setup, folder, self.name)
            curve.append({"x": step, **measure(setup, arm)})
            rows += removal_rows(setup, arm, step)
            progress(options.steps + count, total)
        return DefenseResult(removal_report(self, setup, "steps", curve, time.time() - start, status=status), rows)
