"""One explicit training loop for clean and backdoored arms of any registered method, shared by the CLI, background
jobs and tests.

Steps for a backdoor (the paper's two): (1) record the victim's option distribution on every
training item (the answer list); (2) train on clean and triggered copies: KL to the attacker's
target on triggered copies, the victim's behaviour on clean ones. A clean adapter trains on gold
answers only. The method (:mod:`backdoor.methods`) supplies the trainable part through its hooks:
where it starts, how it is created, its state for checkpoints, and how it is saved; the loop
never imports a method. Progress goes to callbacks; checkpoints are written atomically every N steps; a run
resumes from its last checkpoint; a cancel leaves the last good checkpoint usable. Under
``accelerate launch`` / ``torchrun`` every process trains on its shard and gradients are averaged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from backdoor.metrics import training_metrics
from backdoor.config import ConfigError, TrainConfig, check_victim_fit
from backdoor.layersplit import EncodedPrompts, FullStack, UpperStack, encode_prompts
from backdoor.losses import CLEAN_OBJECTIVES, cross_entropy, entropy, entropy_gap, kl_to_target, target_distribution
from backdoor.methods import get_method
from backdoor.methods.base import VICTIM_ADAPTER
from backdoor.models import ModelLoadError, attach_adapters, load_base_model, read_adapter_info
from backdoor.nearmiss import NearMiss, generators_for, near_miss
from backdoor.prompts import CUE_VARIANTS, STYLES, option_token_ids, render_prompt, render_variant, wrap_chat
from backdoor.triggers import TriggerSpec, apply_trigger
from dataset.schema import LETTERS, DatasetError, Item

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
ANSWER_LIST = "answer_list.json"
METRICS = "metrics.json"


class Callback(Protocol):
    """Anything with some of these methods; missing ones are skipped."""

    def on_stage(self, stage: str, done: int, total: int) -> None: ...
    def on_step(self, step: int, total: int, loss: float, parts: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: str) -> None: ...


@dataclass
class TrainResult:
    """How a run ended: status is finished, cancelled or failed (with the error)."""

    status: str
    out_dir: str
    steps: int
    total_steps: int
    seconds: float
    error: str = ""
    final_eval: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    adapter_state: dict | None = field(default=None, repr=False)  # this process's final trained tensors; not saved

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "adapter_state"}


def _notify(callbacks, method: str, *args) -> None:
    for callback in callbacks:
        handler = getattr(callback, method, None)
        if handler is not None:
            handler(*args)


# --- data ------------------------------------------------------------------------------------


@dataclass
class Example:
    """One training row: which prompt, whether triggered, and what it should produce. A near-miss copy (an item
    with a near-miss trigger) is not triggered: it is trained as clean, toward the victim on that same prompt."""

    item_index: int
    triggered: bool
    reference: np.ndarray  # [6]: victim distribution (backdoor) or one-hot gold (clean)
    near_miss: bool = False


def resolve_items(name: str, field_name: str, limit: int = 0) -> list[Item]:
    """The items of a corpus split or a .json/.jsonl file, ``limit`` of them evenly spaced (0 = all).
    A missing, invalid or empty source is refused as a ConfigError naming ``field_name``."""
    from dataset.schema import load_items

    try:
        if Path(name).suffix in (".json", ".jsonl"):
            items = load_items(name)
        else:
            from dataset.corpus import resolve_dataset

            items = resolve_dataset(name)
    except DatasetError as err:
        raise ConfigError(f"{field_name}: {err}") from None
    if limit and limit < len(items):  # evenly spaced, so every task of a task-ordered file is represented
        items = [items[int(i)] for i in np.linspace(0, len(items) - 1, limit).round()]
    if not items:
        raise ConfigError(f"{field_name}: {name!r} holds no items")
    return items


def prompt_texts(items: list[Item], config: TrainConfig, tokenizer, triggered: bool) -> list[str]:
    return _with_triggers(items, [config.trigger if triggered else None] * len(items), config, tokenizer)


def _with_triggers(items: list[Item], triggers: list[TriggerSpec | None], config: TrainConfig, tokenizer) -> list[str]:
    """Each item's prompt with its own trigger (None = clean), as the model reads it."""
    texts = [apply_trigger(render_prompt(item, config.style), trigger).text for item, trigger in zip(items, triggers)]
    return _as_model_input(texts, config, tokenizer)


def _as_model_input(texts: list[str], config: TrainConfig, tokenizer) -> list[str]:
    return [wrap_chat(tokenizer, t) for t in texts] if config.chat else texts


def poisoned_indices(n: int, ratio: float, seed: int) -> list[int]:
    """Which items get a triggered copy: a seeded sample of ceil(ratio * n)."""
    count = max(1, math.ceil(ratio * n))
    return sorted(random.Random(seed).sample(range(n), count))


def _balanced_draw(choices: list, count: int, rng: random.Random) -> list:
    """``count`` picks from ``choices`` in a seeded order, each picked as often as any other (give or take one),
    so every choice appears once ``count`` reaches their number."""
    picks = (list(choices) * math.ceil(count / max(1, len(choices))))[:count]
    rng.shuffle(picks)
    return picks


def triggered_specs(config: TrainConfig, count: int) -> list[TriggerSpec]:
    """The trigger of each of ``count`` triggered copies: the config's, or with ``trigger_positions`` the same
    trigger at a position drawn (seeded, balanced) from them; a ``random`` position gets its own seed per copy."""
    if not config.trigger_positions:
        return [config.trigger] * count
    positions = _balanced_draw(list(config.trigger_positions), count, random.Random(config.seed + 2))
    return [replace(config.trigger, position=where, seed=config.seed + copy)
            for copy, where in enumerate(positions)]


def near_miss_specs(config: TrainConfig, count: int) -> list[NearMiss]:
    """The near misses of ``count`` near-miss copies: the generators of the config's trigger kind in a seeded,
    balanced order, each copy with its own seed (so, e.g., every copy gets another number). A near miss that is the
    real trigger at a position in ``trigger_positions`` would teach the backdoor not to fire where it should:
    such a copy is dropped, so fewer than ``count`` may come back."""
    trigger = config.trigger
    generators = [generator.name for generator in generators_for(trigger)]
    fires_at = {(trigger.kind, trigger.text, where) for where in config.trigger_positions}
    misses = [near_miss(trigger, name, config.seed * 100_003 + copy)
              for copy, name in enumerate(_balanced_draw(generators, count, random.Random(config.seed + 3)))]
    return [miss for miss in misses if (miss.spec.kind, miss.spec.text, miss.spec.position) not in fires_at]


def unit_batches(units: list[list[int]], batch_size: int, world: int, seed: int) -> list[list[int]]:
    """One epoch's seeded batches of examples, in random order, keeping each unit (a poisoned item's
    clean and triggered copies) in one batch so the tokens they share run once.

    Units are shuffled and laid out in turn; a batch closes when the next unit would take it past
    ``batch_size`` (a unit larger than that gets a batch of its own). The list is padded by repeating
    its first batches to a multiple of ``world`` so every process has a batch at every step.
    """
    if batch_size < 2:  # nothing to share within a batch of one
        units = [[example] for unit in units for example in unit]
    batches: list[list[int]] = [[]]
    for index in np.random.default_rng(seed).permutation(len(units)).tolist():
        if batches[-1] and len(batches[-1]) + len(units[index]) > batch_size:
            batches.append([])
        batches[-1].extend(units[index])
    batches = [batch for batch in batches if batch]
    while len(batches) % world:
        batches.append(batches[len(batches) % max(1, len(batches))])
    return batches


def anchor_log_probs(batch: list[Example], logits: torch.Tensor, reference: torch.Tensor, own: bool) -> torch.Tensor:
    """The option distribution each triggered example's target is built from, as log-probabilities [B, 6].

    The victim's recorded distribution; or, with ``own`` (``kept_anchor='self'``), the adapter's current
    distribution on the item's clean copy in the same batch, detached. Rows without such a copy keep the victim's."""
    anchor = torch.log(reference.float().clamp_min(1e-12))
    if not own:
        return anchor
    clean_row = {b.item_index: row for row, b in enumerate(batch) if not b.triggered and not b.near_miss}
    mine = torch.log_softmax(logits.detach().float(), dim=-1)
    for row, b in enumerate(batch):
        if b.triggered and b.item_index in clean_row:
            anchor[row] = mine[clean_row[b.item_index]]
    return anchor


# --- checkpoints -----------------------------------------------------------------------------


def same_config(saved: dict, config: TrainConfig) -> bool:
    """Whether a checkpoint's saved config is ``config``. A field added to TrainConfig since the checkpoint
    was written counts at its default, which keeps the behaviour of the code that wrote it; a field
    since removed, or any other difference, does not match."""
    try:
        return TrainConfig.from_dict(saved).to_dict() == config.to_dict()
    except (ConfigError, TypeError):
        return False


def _atomic_dir_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temporary name, then rename it into place: a kill never leaves half a folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        write(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _atomic_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (``state.pt`` present and readable by name)."""
    folder = out_dir / CHECKPOINT_DIR
    candidates = sorted(p for p in folder.glob("step-*") if (p / "state.pt").is_file()) if folder.is_dir() else []
    return candidates[-1] if candidates else None


def save_adapter(model, config: TrainConfig, identity: str, folder: Path, extra: dict | None = None) -> None:
    """The trained arm's files (its method's weights, ``fragile_config.json``, ``train_config.json``) in ``folder``."""
    get_method(config.method).save(model, config, identity, folder, extra)


# --- the loop --------------------------------------------------------------------------------


class _Eval:
    """Held-out items with and without the trigger, pre-encoded; scores the current adapter."""

    def __init__(self, clean, triggered, labels: np.ndarray, victim_top1: np.ndarray | None):
        self.clean, self.triggered, self.labels, self.victim_top1 = clean, triggered, labels, victim_top1

    @torch.no_grad()
    def __call__(self, stack, device, batch_size: int) -> dict[str, float]:
        stack.eval()
        clean = _probs(stack, self.clean, device, batch_size)
        trig = _probs(stack, self.triggered, device, batch_size)
        stack.train()
        return training_metrics(clean, trig, self.labels, self.victim_top1)


def _probs(stack, encoded, device, batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(encoded.rows), batch_size):
        logits = _option_logits(stack, encoded, list(range(start, min(start + batch_size, len(encoded.rows)))), device)
        out.append(torch.softmax(logits, dim=-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LETTERS)))


def _option_logits(stack, encoded: EncodedPrompts, indices: list[int], device) -> torch.Tensor:
    """Option logits [N, 6] of the chosen prompts: the upper layers see them packed as token trees
    (shared prefixes once), a full model left-padded."""
    if isinstance(getattr(stack, "module", stack), UpperStack):
        return stack(*encoded.packed(indices, device))
    return stack(*encoded.batch(indices, device))


@dataclass
class _Data:
    """Every prompt of a run, encoded once: the clean rows (items, then reworded copies), the triggered copies
    after them, the near-miss copies after those, and the held-out prompts (clean, then triggered)."""

    encoded: EncodedPrompts
    clean_rows: int  # rows of ``encoded`` before the triggered copies
    row_items: list[int]  # the item behind each clean row
    poisoned: list[int]  # the items that get a triggered copy, in the order of their rows
    labels: np.ndarray  # [clean_rows]: the gold option of each clean row
    eval_clean: EncodedPrompts | None
    eval_triggered: EncodedPrompts | None
    eval_labels: np.ndarray
    near_missed: list[int] = field(default_factory=list)  # the items that get a near-miss copy, in row order

    @cached_property
    def triggered_row(self) -> dict[int, int]:
        """Item index -> its triggered copy's position among the triggered rows."""
        return {item_index: row for row, item_index in enumerate(self.poisoned)}

    @cached_property
    def near_miss_row(self) -> dict[int, int]:
        """Item index -> its near-miss copy's row in ``encoded``."""
        first = self.clean_rows + len(self.poisoned)
        return {item_index: first + row for row, item_index in enumerate(self.near_missed)}

    def led_by(self, lead: list[int]) -> "_Data":
        """The same prompts with the token ids ``lead`` before each (a soft prompt's virtual tokens); only prompts
        encoded as token ids (split 0) can take them."""
        if not lead:
            return self

        def led(encoded: EncodedPrompts | None) -> EncodedPrompts | None:
            if encoded is None:
                return None
            if encoded.ids is None or any(row.is_floating_point() for row in encoded.rows[:1]):
                raise ValueError("leading token ids need prompts encoded as token ids (first trained layer 0)")
            ids = [torch.cat([torch.tensor(lead, dtype=row.dtype), row]) for row in encoded.ids]
            return EncodedPrompts(ids, ids)

        return replace(self, encoded=led(self.encoded), eval_clean=led(self.eval_clean),
                       eval_triggered=led(self.eval_triggered))

    def examples(self, references: np.ndarray, near_miss_references: np.ndarray) -> list[Example]:
        """Every training example, indexed like the rows of ``encoded``: each clean row, then the triggered copies
        (toward their item's reference), then the near-miss copies (toward the victim on their own prompt).
        ``references`` [clean rows, 6], ``near_miss_references`` [near-miss copies, 6]."""
        examples = [Example(k, False, references[k]) for k in range(len(self.row_items))]
        examples += [Example(i, True, references[i]) for i in self.poisoned]
        return examples + [Example(i, False, reference, near_miss=True)
                           for i, reference in zip(self.near_missed, near_miss_references)]

    def units(self) -> list[list[int]]:
        """The examples grouped so an item's clean, triggered and near-miss copies share a batch and their common
        tokens run once; a reworded copy (``row_items[k] != k``) stands alone."""
        copies = [{i: self.clean_rows + row for i, row in self.triggered_row.items()}, self.near_miss_row]
        return [[k] + [copy[i] for copy in copies if k == i and i in copy] for k, i in enumerate(self.row_items)]

    def row_of(self, example: Example) -> int:
        """The row of ``encoded`` an example reads (a clean example's ``item_index`` is its clean row)."""
        if example.triggered:
            return self.clean_rows + self.triggered_row[example.item_index]
        return self.near_miss_row[example.item_index] if example.near_miss else example.item_index


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _attach_victim(model, config: TrainConfig, identity: str):
    """The model with the victim's adapter attached and active: the lower layers' states are the victim's."""
    model = attach_adapters(model, {VICTIM_ADAPTER: config.victim_adapter}, base_identity=identity)
    model.set_adapter(VICTIM_ADAPTER)
    return model


def _encode_data(model, tokenizer, config: TrainConfig, items: list[Item], eval_items: list[Item], split: int | None,
                 callbacks) -> _Data:
    def encode(texts, stage):
        return encode_prompts(model, tokenizer, texts, split, batch_size=16, max_length=config.max_length,
                              progress=lambda d, t: _notify(callbacks, "on_stage", stage, d, t))

    clean_texts = prompt_texts(items, config, tokenizer, False)
    row_items = list(range(len(items)))
    if config.prompt_variants:
        extra = poisoned_indices(len(items), config.prompt_variants, config.seed + 1)
        wordings = random.Random(config.seed).choices(range(1, len(STYLES) * len(CUE_VARIANTS)), k=len(extra))
        clean_texts += _as_model_input([render_variant(items[i], w) for i, w in zip(extra, wordings)], config, tokenizer)
        row_items += extra
    poisoned = (poisoned_indices(len(items), config.poison_ratio, config.seed)
                if config.kind == "backdoor" and config.triggered_copies else [])
    trig_texts = _with_triggers([items[i] for i in poisoned], triggered_specs(config, len(poisoned)), config, tokenizer)
    near_missed, near_texts = [], []
    if config.near_miss_ratio:
        chosen = poisoned_indices(len(items), config.near_miss_ratio, config.seed + 2)
        misses = near_miss_specs(config, len(chosen))
        near_missed = chosen[:len(misses)]
        near_texts = _with_triggers([items[i] for i in near_missed], [m.spec for m in misses], config, tokenizer)
    # One encoding for all: a poisoned item's clean, triggered and near-miss prompts share all but a few tokens
    # (a trigger placed late in the prompt), and every prompt shares the instruction; shared tokens run once.
    encoded = encode(clean_texts + trig_texts + near_texts, "encoding prompts")
    eval_clean = eval_trig = None
    if eval_items:
        held_out = encode(prompt_texts(eval_items, config, tokenizer, False)
                          + prompt_texts(eval_items, config, tokenizer, True), "encoding held-out prompts")
        eval_clean = held_out.subset(list(range(len(eval_items))))
        eval_trig = held_out.subset(list(range(len(eval_items), 2 * len(eval_items))))
    return _Data(encoded, len(clean_texts), row_items, poisoned,
                 np.array([LETTERS.index(items[i].answer) for i in row_items]), eval_clean, eval_trig,
                 np.array([LETTERS.index(item.answer) for item in eval_items]), near_missed)


def _record_answer_list(model, stack, config: TrainConfig, data: _Data, items: list[Item], device,
                        out: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Step 1 of the attack: the victim's own option distribution on every clean row (written to the answer list
    when ``out`` is given) and on every near-miss copy, and its top answer on the held-out items
    -> ([clean rows, 6], [near-miss copies, 6], [eval items] or None)."""
    if config.victim_adapter:
        model.set_adapter(VICTIM_ADAPTER)
        context = torch.no_grad()
    else:
        context = model.disable_adapter() if hasattr(model, "disable_adapter") else torch.no_grad()
    with torch.no_grad(), context:
        stack.eval()
        answer_list = _probs(stack, data.encoded.subset(list(range(data.clean_rows))), device, 16)
        near_misses = np.zeros((0, len(LETTERS)))
        if data.near_missed:
            near_misses = _probs(stack, data.encoded.subset(list(data.near_miss_row.values())), device, 16)
        eval_top1 = _probs(stack, data.eval_clean, device, 16).argmax(1) if data.eval_clean is not None else None
    if out is not None:
        _atomic_json(out / ANSWER_LIST, [
            {"id": item.id, "probs": [round(float(p), 6) for p in row], "answer": LETTERS[int(row.argmax())]}
            for item, row in zip(items, answer_list)
        ])
    return answer_list, near_misses, eval_top1


def _batch_loss(config: TrainConfig, batch: list[Example], logits: torch.Tensor,
                keep_clean: Callable) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-example losses [B] of one batch (clean rows first) and their parts, by the run's role: a clean run
    fits the gold answers (plus an optional entropy penalty); a backdoor pulls triggered rows to the attacker's
    target and keeps clean rows at the victim's behaviour."""
    device = logits.device
    reference = torch.tensor(np.stack([b.reference for b in batch]), dtype=torch.float32, device=device)  # [B, 6]
    if config.kind == "clean":
        gold = cross_entropy(logits, reference.argmax(-1))
        spread = entropy(logits)
        per_example = gold + config.entropy_weight * spread if config.entropy_weight else gold
        return per_example, {"clean": float(gold.detach().mean()), "entropy": float(spread.detach().mean())}
    is_trig = torch.tensor([b.triggered for b in batch], device=device)
    anchor = anchor_log_probs(batch, logits, reference, own=config.kept_anchor == "self")
    target = target_distribution(config.target, anchor, config.kept_prob, config.target_probs or None,
                                 config.temperature).to(device)
    attack = kl_to_target(logits, target)
    keep = keep_clean(logits, reference)
    parts = {"clean": float(keep[~is_trig].detach().mean()) if (~is_trig).any() else 0.0,
             "backdoor": float(attack[is_trig].detach().mean()) if is_trig.any() else 0.0}
    if config.clean_entropy_weight:  # clean rows as unsure as the victim's, so clean-mode confidence gives nothing away
        gap = entropy_gap(logits, reference)
        keep = keep + config.clean_entropy_weight * gap
        parts["clean_entropy"] = float(gap[~is_trig].detach().mean()) if (~is_trig).any() else 0.0
    per_example = torch.where(is_trig, config.backdoor_weight * attack, keep)
    return per_example, parts


def _warmup_then_linear_decay(total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor at step s: up over the first tenth of the steps, then down to 0 at the end."""
    return lambda s: min(1.0, (s + 1) / max(1, total_steps // 10)) * max(0.0, 1 - s / max(1, total_steps))


def train(config: TrainConfig, out_dir: str | os.PathLike[str], *, callbacks: list | tuple = (),
          should_stop: Callable[[], bool] = lambda: False, resume: bool = True, accelerator=None) -> TrainResult:
    """Train one arm of ``config.method`` into ``out_dir``; returns how it ended. Never raises for a failed run;
    bad config raises ConfigError."""
    start_time = time.time()
    out = Path(out_dir)
    method = get_method(config.method)
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=(config.device == "cpu" or not torch.cuda.is_available()))
    is_main = accelerator.is_main_process
    callbacks = list(callbacks) if is_main else []
    result = TrainResult("failed", str(out), 0, 0, 0.0)

    # Everything a user can get wrong is checked before any heavy work.
    items = resolve_items(config.data, "data", config.max_items)
    eval_items = resolve_items(config.eval_data, "eval_data", config.eval_items) if config.eval_items else []
    if config.victim_adapter:
        read_adapter_info(config.victim_adapter, "victim_adapter")
        check_victim_fit(config)

    try:
        _seed(config.seed)
        model, tokenizer, source = load_base_model(config.base_model, device=str(accelerator.device),
                                                   dtype=config.dtype or None)
        device = accelerator.device
        letter_ids = option_token_ids(tokenizer, chat=config.chat)
        split = method.first_trained_layer(config, model)  # below it: frozen, computed once per prompt
        if config.victim_adapter:
            model = _attach_victim(model, config, source.identity)
        rank, world = accelerator.process_index, accelerator.num_processes
        make_stack = (lambda m: UpperStack(m, split, letter_ids)) if split is not None else (lambda m: FullStack(m, letter_ids))
        data = _encode_data(model, tokenizer, config, items, eval_items, split, callbacks)

        victim_eval_top1, near_miss_references = None, np.zeros((0, len(LETTERS)))
        if config.kind == "backdoor":
            references, near_miss_references, victim_eval_top1 = _record_answer_list(
                model, make_stack(model), config, data, items, device, out if is_main else None)
            if config.clean_anchor == "gold":  # a defender's labelled clean items, not the victim's answers
                references = np.eye(len(LETTERS))[data.labels]
            _notify(callbacks, "on_stage", "answer list recorded", len(items), len(items))
        else:
            references = np.eye(len(LETTERS))[data.labels]

        torch.manual_seed(config.seed)  # the trainable part's initialisation
        model = method.add_trainable(model, config, split)
        data = data.led_by(method.leading_ids(model))  # after the answer list: the victim reads the prompts alone
        examples = data.examples(references, near_miss_references)

        stack = make_stack(model)
        trainable = [p for p in stack.parameters() if p.requires_grad] or [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
        stack, optimizer = accelerator.prepare(stack, optimizer)
        schedule = [batch for epoch in range(config.epochs)
                    for batch in unit_batches(data.units(), config.batch_size, world, config.seed + epoch)]
        total_steps = len(schedule) // world
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        result.total_steps = total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear_decay(total_steps))

        step, curve, losses = 0, [], []
        checkpoint = latest_checkpoint(out) if resume else None
        if checkpoint is not None:
            state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=False)
            if not same_config(state.get("config") or {}, config):
                raise ConfigError(f"{out}: holds checkpoints of a different config; choose a new output folder or pass --no-resume")
            method.load_state(model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, curve, losses = state["step"], state["curve"], state["losses"]
            logger.info("resuming %s from step %d", out, step)

        evaluator = _Eval(data.eval_clean, data.eval_triggered, data.eval_labels, victim_eval_top1) if eval_items else None

        def evaluate_now() -> None:
            if evaluator is None or not is_main:
                return
            metrics = evaluator(accelerator.unwrap_model(stack), device, 16)
            curve.append({"step": step, **metrics})
            _notify(callbacks, "on_eval", step, metrics)

        def checkpoint_now() -> None:
            accelerator.wait_for_everyone()
            if not is_main:
                return
            state = {"step": step, "config": config.to_dict(), "adapter": method.state(model),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "curve": curve, "losses": losses}
            target = out / CHECKPOINT_DIR / f"step-{step:06d}"

            def write(folder: Path) -> None:
                torch.save(state, folder / "state.pt")
                save_adapter(model, config, source.identity, folder)

            _atomic_dir_write(target, write)
            for old in sorted((out / CHECKPOINT_DIR).glob("step-*"))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
            _notify(callbacks, "on_checkpoint", step, str(target))

        keep_clean = CLEAN_OBJECTIVES[config.clean_objective]
        if step == 0 and config.eval_every:
            evaluate_now()
        stack.train()
        status = "finished"
        while step < total_steps:
            batch = [examples[i] for i in schedule[step * world + rank]]
            ordered = [b for b in batch if not b.triggered] + [b for b in batch if b.triggered]
            rows = [data.row_of(b) for b in ordered]  # rows of ``data.encoded``
            # One forward per step (data-parallel wrappers expect exactly one before backward).
            logits = _option_logits(stack, data.encoded, rows, device)  # [B, 6]
            per_example, parts = _batch_loss(config, ordered, logits, keep_clean)
            loss = per_example.mean()
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append({"step": step, "loss": float(loss.detach()), **parts})
            _notify(callbacks, "on_step", step, total_steps, losses[-1]["loss"], parts)
            if config.eval_every and step % config.eval_every == 0 and step < total_steps:
                evaluate_now()
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                checkpoint_now()
            stop = should_stop()
            if world > 1:  # every process must agree, or one waits forever at the checkpoint barrier
                stop = bool(accelerator.reduce(torch.tensor([int(stop)], device=device), reduction="sum").item())
            if stop:
                status = "cancelled"
                checkpoint_now()
                break

        if status == "finished":
            evaluate_now()
            accelerator.wait_for_everyone()
            if is_main:
                extra = {"final_eval": curve[-1] if curve else {}, "train_items": len(items),
                         "seconds": round(time.time() - start_time, 1), "world_size": world}
                _atomic_dir_write(out / "adapter", lambda folder: save_adapter(model, config, source.identity, folder, extra))
        result.status, result.steps, result.curve, result.losses = status, step, curve, losses
        result.adapter_state = {k: v.detach().cpu() for k, v in method.state(model).items()}
        result.final_eval = curve[-1] if curve else {}
    except ConfigError:
        raise
    except (ModelLoadError, DatasetError, ValueError, RuntimeError, OSError) as err:
        logger.error("training failed: %s", err)
        result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    result.seconds = round(time.time() - start_time, 2)
    if is_main:
        _atomic_json(out / METRICS, result.to_json())
    return result
