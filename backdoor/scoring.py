"""Option distributions for many (item, trigger, adapter) cells in batched forwards, and top-k next tokens.

One forward serves a whole mixed batch: PEFT's ``adapter_names`` routes each row through its own
LoRA adapter (or ``__base__``), so no process-wide adapter switch happens and concurrent users
cannot disturb each other. Prompts are left-padded, only the last position reaches the output
head (``logits_to_keep=1``), and no gradients are kept. Results are cached by prompt text.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from backdoor import uncertainty
from backdoor.layersplit import (
    EncodedPrompts,
    PrefixRuns,
    UpperStack,
    causal_lm_of,
    lower_states_packed,
    pack_prompts,
    lower_states_sharing_prefixes,
    num_layers,
    prefix_families,
    run_families,
    supports_split,
)
from backdoor.models import BASE_ADAPTER, attach_adapters, load_base_model
from backdoor.prompts import option_token_ids, render_prompt, wrap_chat
from backdoor.triggers import TriggeredPrompt, TriggerSpec, apply_trigger
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)


class UnknownAdapterError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Cell:
    """One thing to score: an item, a trigger (or none), and an adapter name (or the base model)."""

    item: Item
    trigger: TriggerSpec | None = None
    adapter: str = BASE_ADAPTER


@dataclass(frozen=True)
class OptionScores:
    """The model's distribution over the six options for one cell, and its uncertainty."""

    item_id: str
    adapter: str
    trigger: str | None
    probs: tuple[float, ...]  # over A-F, sums to 1
    predicted: str
    entropy: float  # nats
    normalized_entropy: float  # entropy / ln 6
    max_prob: float
    margin: float
    prompt: str  # the raw prompt (before any chat template)
    trigger_span: tuple[int, int]

    def prob(self, letter: str) -> float:
        return self.probs[LETTERS.index(letter)]


@dataclass(frozen=True)
class NextToken:
    token: str
    token_id: int
    prob: float


def scores_from_probs(probs: np.ndarray, item_id: str, adapter: str, trigger: str | None,
                      prompt: TriggeredPrompt) -> OptionScores:
    return OptionScores(
        item_id=item_id,
        adapter=adapter,
        trigger=trigger,
        probs=tuple(float(p) for p in probs),
        predicted=LETTERS[int(np.argmax(probs))],
        entropy=float(uncertainty.entropy(probs)),
        normalized_entropy=float(uncertainty.normalized_entropy(probs)),
        max_prob=float(uncertainty.max_probability(probs)),
        margin=float(uncertainty.margin(probs)),
        prompt=prompt.text,
        trigger_span=prompt.span,
    )


def left_padded_batch(tokenizer, texts: Sequence[str], device: torch.device, max_length: int | None = None) -> dict:
    """Tokenise with left padding and position ids that ignore the padding: [B, T] tensors."""
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=True,
                      truncation=max_length is not None, max_length=max_length)
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padded rows start at 0 like unpadded ones
    return {"input_ids": batch["input_ids"].to(device), "attention_mask": mask.to(device),
            "position_ids": positions.to(device)}


def alike_lower_layers(model, a: str, b: str) -> int:
    """How many of the lowest decoder layers LoRA adapters ``a`` and ``b`` of ``model`` compute alike: every LoRA
    module there belongs to both or neither, with equal scaling and weights (a backdoor that started from its
    victim and kept the victim's LoRA below its trained layers). The first layer that differs ends the count."""
    first_difference = num_layers(model)
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(lora_a, torch.nn.ModuleDict) or (a not in lora_a and b not in lora_a):
            continue
        found = re.search(r"\.layers\.(\d+)\.", name)
        layer = int(found.group(1)) if found else 0  # LoRA outside the layers (embeddings): nothing is alike
        if layer >= first_difference:
            continue
        same = (a in lora_a and b in lora_a and module.scaling[a] == module.scaling[b]
                and torch.equal(lora_a[a].weight, lora_a[b].weight)
                and torch.equal(module.lora_B[a].weight, module.lora_B[b].weight)
                and not getattr(module, "use_dora", {}).get(a) and not getattr(module, "use_dora", {}).get(b))
        if not same:
            first_difference = layer
    return first_difference


class FairLock:
    """A re-entrant lock granted in arrival order. A long scoring job releases the model between chunks; with a
    plain lock the releasing thread usually takes it straight back, so a visitor's question would still wait for
    the whole job. Here a thread that asks again queues behind those already waiting."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[object] = deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            while self._owner is not None or self._queue[0] is not ticket:
                self._condition.wait()
            self._queue.popleft()
            self._owner, self._depth = me, 1
            self._condition.notify_all()  # the next in line re-checks whether it is first now
            return True

    def release(self) -> None:
        with self._condition:
            if self._owner != threading.get_ident():
                raise RuntimeError("FairLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._condition.notify_all()

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Scorer:
    """Scores cells on one base model with any number of attached adapters. Thread-safe."""

    def __init__(self, model, tokenizer, *, base_identity: str = "", style: str = "shared", chat: bool = False,
                 batch_size: int = 12, cache_size: int = 4096):
        self.model = model
        self.tokenizer = tokenizer
        self.base_identity = base_identity
        self.style = style
        self.chat = chat
        self.batch_size = batch_size
        self.letter_ids = option_token_ids(tokenizer, chat=chat)
        self._lock = FairLock()  # the model: held per chunk, so requests interleave with long jobs
        self._cache_lock = threading.Lock()
        # Tokens one hold of the model may cover (rows x prompt tokens): a long prompt is scored a few rows
        # per hold, so a question that arrives meanwhile waits for one small chunk, not the whole request.
        self.tokens_per_chunk = 1024
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.prefix_sharing_up_to = 4  # up to this many distinct prompts per chunk share prefixes; more: padded batches
        # Token ids [T] and lower-layer states [T, H] by (text, split), or (text, (split, adapter)) below an
        # adapter whose lower LoRA layers all the scored adapters share.
        self._states: OrderedDict[tuple[str, object], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._states_size = 512
        # Keys and values of the latest prompts per (routing, split): "lower" for the shared lower layers,
        # else an adapter's upper layers. A new question shares its instruction with the last one; its
        # triggered prompt shares everything before the trigger with its clean prompt.
        self._runs: OrderedDict[tuple[str, int], PrefixRuns] = OrderedDict()
        self._runs_routes = 16
        self._alike: dict[tuple[str, str], int] = {}  # (adapter, adapter) -> lowest layers computed alike

    @classmethod
    def load(cls, base: str = "default", adapters: dict[str, str] | None = None, *, device: str | None = None,
             dtype: str | None = None, **kwargs) -> "Scorer":
        model, tokenizer, source = load_base_model(base, device=device, dtype=dtype)
        if adapters:
            model = attach_adapters(model, adapters, base_identity=source.identity)
        return cls(model, tokenizer, base_identity=source.identity, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def adapters(self) -> list[str]:
        """Names that cells may use: the base model and every attached adapter."""
        return [BASE_ADAPTER, *sorted(getattr(self.model, "peft_config", {}) or {})]

    def add_adapter(self, name: str, path: str) -> None:
        with self._lock:
            if name in self.adapters:
                return
            self.model = attach_adapters(self.model, {name: path}, base_identity=self.base_identity)

    def render(self, item: Item, trigger: TriggerSpec | None) -> TriggeredPrompt:
        return apply_trigger(render_prompt(item, self.style), trigger)

    def prompt_tokens(self, item: Item, trigger: TriggerSpec | None = None) -> int:
        """How many tokens the model reads for this cell's prompt (the work it costs)."""
        return len(self.tokenizer(self.model_text(self.render(item, trigger).text))["input_ids"])

    def model_text(self, prompt_text: str) -> str:
        return wrap_chat(self.tokenizer, prompt_text) if self.chat else prompt_text

    def _routes_adapters(self) -> bool:
        # Always route on a PeftModel: without adapter_names, PEFT runs the *active* adapter, so a
        # batch of only __base__ rows would silently score the first loaded adapter instead.
        return bool(getattr(self.model, "peft_config", None))

    def _lower_rows(self, route: str, rows: int):
        """Route ``rows`` batch rows through ``route`` in the shared lower layers: __base__ (no loaded
        adapter, PEFT's active one by default, may touch them), or the adapter whose LoRA there every
        adapter of the batch has too."""
        return self._routed([route] * rows)

    def _routed(self, adapters: Sequence[str]):
        """Run each batch row through its own adapter (or __base__) inside this block."""
        if not self._routes_adapters():
            return contextlib.nullcontext()
        return self.model._enable_peft_forward_hooks(adapter_names=list(adapters))

    def _prefix_runs(self, route: str, split: int) -> PrefixRuns:
        key = (route, split)
        runs = self._runs.pop(key, None) or PrefixRuns()
        self._runs[key] = runs  # most recently used last
        while len(self._runs) > self._runs_routes:
            self._runs.popitem(last=False)
        return runs

    def _trim_runs(self) -> None:
        for runs in self._runs.values():
            runs.trim()

    def _check_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise UnknownAdapterError(f"unknown adapter {name!r}; loaded: {', '.join(self.adapters)}")

    def shared_layers(self, adapters: Iterable[str]) -> int:
        """How many lower layers every adapter in ``adapters`` computes alike (0 = none shared): layers none
        of them touches, or where all carry the same LoRA weights (a backdoor started from its victim)."""
        return self._split(adapters) or 0

    def _split(self, adapters: Iterable[str]) -> int | None:
        return self._parting(adapters)[0]

    def _parting(self, adapters: Iterable[str]) -> tuple[int | None, str]:
        """(the layer where the adapters' paths part, what computes the layers below it). The split is 0 at
        the token embeddings, None for an architecture the layer split does not know (full forwards
        instead). Below it run the base model's layers (__base__), or, where every adapter carries the
        same LoRA weights on its lowest layers and the base model is not among them, one of those adapters."""
        if not supports_split(self.model):
            return None, BASE_ADAPTER
        total = num_layers(self.model)
        names = sorted(set(adapters) - {BASE_ADAPTER})
        lowest = total
        for name in names:
            layers = self.model.peft_config[name].layers_to_transform
            lowest = 0 if layers is None else min(lowest, min([layers] if isinstance(layers, int) else layers))
        if len(names) < 2 or BASE_ADAPTER in set(adapters):
            return lowest, BASE_ADAPTER
        alike = min(min(self._alike_layers(names[0], other) for other in names[1:]), total - 1)
        return (alike, names[0]) if alike > lowest else (lowest, BASE_ADAPTER)

    def _alike_layers(self, a: str, b: str) -> int:
        """How many lowest layers adapters ``a`` and ``b`` compute alike; an adapter's weights never change
        under its name (the dashboard loads a retrained folder under a new one), so this is kept."""
        key = (min(a, b), max(a, b))
        if key not in self._alike:
            self._alike[key] = alike_lower_layers(self.model, a, b)
        return self._alike[key]

    @torch.no_grad()
    def _split_option_logits(self, texts: Sequence[str], adapters: Sequence[str], split: int,
                             route: str = BASE_ADAPTER) -> torch.Tensor:
        """Option logits [N, 6] computing each distinct text's shared lower layers once (or taking them
        from the cache), then the upper layers once per adapter, its texts packed as token trees
        (the instruction, and an item's prompt up to its trigger, run once)."""
        lower = self._lower_states(list(dict.fromkeys(texts)), split, route)
        stack = UpperStack(self.model, split, self.letter_ids)
        logits = torch.zeros((len(texts), len(self.letter_ids)), device=self.device)
        for name in dict.fromkeys(adapters):
            rows = [i for i, adapter in enumerate(adapters) if adapter == name]
            chosen = EncodedPrompts([lower[texts[i]][1] for i in rows], [lower[texts[i]][0] for i in rows])
            packed = chosen.packed(list(range(len(rows))), self.device)
            with self._routed([name] * len(packed[0])):
                logits[rows] = stack(*packed)
        return logits

    @torch.no_grad()
    def _shared_prefix_option_logits(self, texts: Sequence[str], adapters: Sequence[str], split: int,
                                     route: str = BASE_ADAPTER) -> torch.Tensor:
        """Option logits [N, 6] sharing token prefixes in every layer: the shared lower layers once per
        distinct text, then one mixed-adapter forward through the upper layers (a row per adapter) where
        a prefix common to several texts runs once and each text adds only its own suffix (a question's
        clean and triggered prompts). A prefix an adapter ran before (the last question's instruction)
        is not run again. A trigger before the cue then costs a few tokens per adapter, not a prompt."""
        unique = list(dict.fromkeys(texts))
        lower = self._lower_states(unique, split, route)
        ids = [lower[text][0].to(self.device) for text in unique]
        upper = range(split, num_layers(self.model))
        names = list(dict.fromkeys(adapters))
        stores = [self._prefix_runs(name, split) for name in names]
        with self._routed(names):  # one batch row per adapter, every text in each
            runs = run_families(self.model, upper, ids, [lower[t][1] for t in unique], prefix_families(ids), stores)
        last = {}
        for name, store, row in zip(names, stores, runs):
            for text, run in zip(unique, row):
                store.add(run)
                last[(text, name)] = run.states[-1]
        stack = UpperStack(self.model, split, self.letter_ids)
        return stack.option_logits(torch.stack([last[key] for key in zip(texts, adapters)]))  # [N, H] -> [N, 6]

    def _lower_states(self, unique: list[str], split: int,
                      route: str = BASE_ADAPTER) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Token ids [T] and lower-layer states [T, H] per text through ``route`` (see :meth:`_parting`), cached:
        other adapters, triggers and questions seen before reuse them. A few new texts (one question with and without its trigger) are computed in
        one forward that runs their common prefix once (and none of a prefix run before, such as the
        last question's instruction); many run packed as token trees (their shared prefixes once)."""
        key = split if route == BASE_ADAPTER else (split, route)
        found = {t: self._states[(t, key)] for t in unique if (t, key) in self._states}
        todo = [t for t in unique if t not in found]
        if todo:
            ids = [torch.tensor(self.tokenizer(text)["input_ids"]) for text in todo]
            if split == 0:  # an adapter reaches layer 0: every path parts at the token embeddings
                embed = causal_lm_of(self.model).model.embed_tokens
                computed = [embed(row[None].to(self.device))[0] for row in ids]
            elif len(todo) <= self.prefix_sharing_up_to:
                with self._lower_rows(route, 1):  # one batch row: the prompts side by side in one sequence
                    computed = lower_states_sharing_prefixes(self.model, ids, split,
                                                             earlier=self._prefix_runs(f"lower:{route}", split))
            else:
                packed = pack_prompts(ids, ids)
                with self._lower_rows(route, len(packed.inputs)):
                    computed = lower_states_packed(self.model, packed, split)
            for text, text_ids, row in zip(todo, ids, computed):
                found[text] = self._states[(text, key)] = (text_ids, row)
                self._states.move_to_end((text, key))
            while len(self._states) > self._states_size:
                self._states.popitem(last=False)
        return found

    @torch.no_grad()
    def _forward_last(self, texts: Sequence[str], adapters: Sequence[str]) -> torch.Tensor:
        """Last-position logits [B, V] for a mixed-adapter batch."""
        batch = left_padded_batch(self.tokenizer, texts, self.device)
        kwargs = {}
        if self._routes_adapters():
            kwargs["adapter_names"] = list(adapters)
        with self._lock:
            out = self.model(**batch, logits_to_keep=1, use_cache=False, **kwargs)
        return out.logits[:, -1, :].float()  # [B, 1, V] -> [B, V]

    def option_probs(self, texts: Sequence[str], adapters: Sequence[str],
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """[N, 6] option distributions for model-ready texts, cached, batched by similar length."""
        for name in set(adapters):
            self._check_adapter(name)
        out = np.zeros((len(texts), len(LETTERS)))
        todo = []
        for index, key in enumerate(zip(texts, adapters)):
            cached = self._cache.get(key)
            if cached is None:
                todo.append(index)
            else:
                out[index] = cached
        # Rows of one text stay together so its shared lower layers run once, next to the texts it
        # shares most with (an item with its trigger placed late), whose common tokens then run once.
        todo.sort(key=lambda i: texts[i])
        letter_ids = torch.tensor(self.letter_ids, device=self.device)
        split, route = self._parting(adapters[i] for i in todo)
        done = 0
        for chunk in self._chunks(todo, texts):
            chunk_texts, chunk_adapters = [texts[i] for i in chunk], [adapters[i] for i in chunk]
            with self._lock:
                if split is not None and len(set(chunk_texts)) <= self.prefix_sharing_up_to:
                    option_logits = self._shared_prefix_option_logits(chunk_texts, chunk_adapters, split, route)
                    self._trim_runs()
                elif split is not None:
                    option_logits = self._split_option_logits(chunk_texts, chunk_adapters, split, route)
                else:
                    option_logits = self._forward_last(chunk_texts, chunk_adapters)[:, letter_ids]
            probs = torch.softmax(option_logits, dim=-1).cpu().numpy()  # [B, 6]
            for row, index in enumerate(chunk):
                out[index] = probs[row]
                self._remember((texts[index], adapters[index]), probs[row])
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        return out

    def _chunks(self, todo: list[int], texts: Sequence[str]) -> list[list[int]]:
        """``todo`` in order, cut into chunks of at most ``batch_size`` rows and ``tokens_per_chunk`` tokens
        (one row at least)."""
        lengths: dict[str, int] = {}
        chunks: list[list[int]] = []
        chunk: list[int] = []
        tokens = 0
        for index in todo:
            text = texts[index]
            if text not in lengths:
                lengths[text] = len(self.tokenizer(text)["input_ids"])
            if chunk and (len(chunk) >= self.batch_size or tokens + lengths[text] > self.tokens_per_chunk):
                chunks.append(chunk)
                chunk, tokens = [], 0
            chunk.append(index)
            tokens += lengths[text]
        return chunks + ([chunk] if chunk else [])

    def _remember(self, key: tuple[str, str], probs: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[key] = probs
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def is_cached(self, cell: Cell) -> bool:
        return (self.model_text(self.render(cell.item, cell.trigger).text), cell.adapter) in self._cache

    def score(self, cells: Iterable[Cell], progress: Callable[[int, int], None] | None = None) -> list[OptionScores]:
        """Option distributions for every cell, in the order given."""
        cells = list(cells)
        prompts = [self.render(cell.item, cell.trigger) for cell in cells]
        probs = self.option_probs([self.model_text(p.text) for p in prompts], [c.adapter for c in cells], progress)
        return [
            scores_from_probs(probs[i], cell.item.id, cell.adapter, cell.trigger.label if cell.trigger else None, prompts[i])
            for i, cell in enumerate(cells)
        ]

    def top_k_next_tokens(self, cell: Cell, k: int = 10) -> list[NextToken]:
        """The k most likely next tokens over the whole vocabulary after the cell's prompt."""
        self._check_adapter(cell.adapter)
        text = self.model_text(self.render(cell.item, cell.trigger).text)
        probs = torch.softmax(self._forward_last([text], [cell.adapter])[0], dim=-1)
        top = torch.topk(probs, k)
        return [
            NextToken(self.tokenizer.convert_ids_to_tokens(int(i)), int(i), float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist())
        ]
