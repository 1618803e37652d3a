"""Option distributions for many (item, trigger, arm) cells in batched forwards, top-k next tokens, token log-probabilities.

A cell names an :class:`~backdoor.arms.Arm`; the scorer reads only what the model is given from it: a
text prefix, a route (the PEFT adapter a row runs through, or ``__base__``) and a soft prompt (virtual
tokens before the prompt, see :func:`backdoor.layersplit.embed`). One forward serves a whole mixed
batch: PEFT's ``adapter_names`` routes each row through its own adapter, so no process-wide adapter
switch happens and concurrent users cannot disturb each other. Prompts are left-padded, only the last
position reaches the output head (``logits_to_keep=1``), and no gradients are kept. Results are cached
by (model text, route, soft prompt key): two arm names that give the model the same input share entries.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from backdoor import uncertainty
from backdoor.arms import Arm, base_arm
from backdoor.layersplit import (
    EncodedPrompts,
    PrefixRuns,
    UpperStack,
    branch_states,
    causal_lm_of,
    common_prefix,
    embed,
    lower_states_packed,
    lower_states_sharing_prefixes,
    num_layers,
    pack_prompts,
    position_ids_from_mask,
    prefix_families,
    register_soft_prompt,
    run_families,
    states_keeping_keys,
    supports_split,
    virtual_tokens,
)
from backdoor.models import BASE_ADAPTER, ModelLoadError, attach_adapters, load_base_model
from backdoor.prompts import option_token_ids, render_prompt, wrap_chat
from backdoor.triggers import TriggeredPrompt, TriggerSpec, apply_trigger
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)


class UnknownAdapterError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


# What the model is given for one row, and the key of every cache: (model text, route, soft prompt key).
# The text is chat-wrapped with the arm's prefix in it; the soft key is '' without a soft prompt.
Row = tuple[str, str, str]
ModelInput = tuple[str, str]  # (model text, soft prompt key): the tokens a row reads, whatever its route


@dataclass(frozen=True, init=False)
class Cell:
    """One thing to score: an item, a trigger (or none), and the name of the arm that answers (the base model
    by default). ``Cell(item, trigger, "x")`` names arm x, and so does the older ``Cell(item, adapter="x")``."""

    item: Item
    trigger: TriggerSpec | None
    arm: str

    def __init__(self, item: Item, trigger: TriggerSpec | None = None, arm: str = BASE_ADAPTER, *,
                 adapter: str | None = None):
        object.__setattr__(self, "item", item)
        object.__setattr__(self, "trigger", trigger)
        object.__setattr__(self, "arm", arm if adapter is None else adapter)

    @property
    def adapter(self) -> str:
        """The arm's name (what this field was called when every arm was a LoRA adapter)."""
        return self.arm


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
    """Scores cells on one base model with any number of arms (attached adapters, prefixes, soft prompts). Thread-safe."""

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
        # Token ids by model input: the prompt bound, chunking and the lower layers all ask for them (the returned
        # tensor is shared; callers never write to it).
        self._ids: OrderedDict[ModelInput, torch.Tensor] = OrderedDict()
        # Tokens one hold of the model may cover (rows x prompt tokens): a long prompt is scored a few rows
        # per hold, so a question that arrives meanwhile waits for one small chunk, not the whole request.
        self.tokens_per_chunk = 1024
        self._arms: dict[str, Arm] = {BASE_ADAPTER: base_arm()}  # added arms; attached adapters are arms too
        self._cache: OrderedDict[Row, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.prefix_sharing_up_to = 4  # up to this many distinct prompts per chunk share prefixes; more: padded batches
        # Token ids [T] and lower-layer states [T, H] by (model input, split), or (model input, (split, route))
        # below an adapter whose lower LoRA layers all the scored routes share.
        self._states: OrderedDict[tuple[ModelInput, object], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._states_size = 512
        # Keys and values of the latest prompts per (routing, split): "lower" for the shared lower layers,
        # else a route's upper layers. A new question shares its instruction with the last one; its
        # triggered prompt shares everything before the trigger with its clean prompt.
        self._runs: OrderedDict[tuple[str, int], PrefixRuns] = OrderedDict()
        self._runs_routes = 16
        self._alike: dict[tuple[str, str], int] = {}  # (route, route) -> lowest layers computed alike

    @classmethod
    def load(cls, base: str = "default", adapters: dict[str, str] | None = None, *, device: str | None = None,
             dtype: str | None = None, **kwargs) -> "Scorer":
        model, tokenizer, source = load_base_model(base, device=device, dtype=dtype)
        scorer = cls(model, tokenizer, base_identity=source.identity, **kwargs)
        for name, path in (adapters or {}).items():  # each folder by its method: LoRA weights, a soft prompt, a prefix
            scorer.add_adapter(name, str(path))
        return scorer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def arms(self) -> dict[str, Arm]:
        """Every arm cells may name, by name: the base model, each arm added, and each PEFT adapter attached to
        the model some other way (an arm that is only its route)."""
        attached = {name: Arm(name=name, method=str(getattr(config.peft_type, "value", config.peft_type)).lower(),
                              route=name, role="unknown")
                    for name, config in self._peft_configs().items() if name not in self._arms}
        return {**self._arms, **attached}

    @property
    def adapters(self) -> list[str]:
        """Names that cells may use: the base model first, then every other arm."""
        return [BASE_ADAPTER, *sorted(set(self.arms) - {BASE_ADAPTER})]

    def add_arm(self, arm: Arm) -> None:
        """Let cells name ``arm``. Its PEFT weights (``adapter_path``) are attached under its route unless the
        model has an adapter there already; a failed attach leaves no adapter behind and raises
        ModelLoadError. The same arm again changes nothing; another arm under a taken name replaces it (the
        caches key on what the model reads, so the old arm's scores never mix in)."""
        with self._lock:
            if self._arms.get(arm.name) == arm:
                return
            if arm.adapter_path and arm.route not in self._peft_configs():
                self._attach(arm.route, arm.adapter_path)
            if arm.soft_prompt is not None:
                register_soft_prompt(self.model, arm.soft_prompt.key, arm.soft_prompt.vectors)
            self._arms[arm.name] = arm

    def add_adapter(self, name: str, path: str) -> None:
        """Add the arm saved in the folder ``path`` as ``name``, routed through a PEFT adapter of that name;
        a name already known changes nothing."""
        from backdoor.methods import load_arm  # the methods build on the scorer's modules, not the reverse

        with self._lock:
            if name in self.arms:
                return
            arm = load_arm(path, name)
            self.add_arm(replace(arm, name=name, route=name if arm.route != BASE_ADAPTER else BASE_ADAPTER))

    def _attach(self, route: str, path: str) -> None:
        try:
            self.model = attach_adapters(self.model, {route: path}, base_identity=self.base_identity)
        except ModelLoadError:
            if route in self._peft_configs():  # half-loaded: take it out again
                self.model.delete_adapter(route)
            raise

    def _peft_configs(self) -> dict:
        return getattr(self.model, "peft_config", None) or {}

    def _arm(self, name: str) -> Arm:
        arm = self._arms.get(name)
        if arm is None:
            arm = self.arms.get(name)
        if arm is None:
            raise UnknownAdapterError(f"unknown adapter {name!r}; loaded: {', '.join(self.adapters)}")
        return arm

    def render(self, item: Item, trigger: TriggerSpec | None) -> TriggeredPrompt:
        return apply_trigger(render_prompt(item, self.style), trigger)

    def prompt_tokens(self, item: Item, trigger: TriggerSpec | None = None, arm: str = BASE_ADAPTER) -> int:
        """How many tokens the model reads for this cell's prompt (the work it costs), an arm's prefix and
        soft prompt included."""
        return len(self._token_ids(self._model_input(self._arm(arm), self.render(item, trigger).text)))

    def model_text(self, prompt_text: str) -> str:
        return wrap_chat(self.tokenizer, prompt_text) if self.chat else prompt_text

    def _row(self, arm: Arm, prompt_text: str) -> Row:
        """What the model is given for ``prompt_text`` under ``arm``: its prefix goes before the prompt, inside
        the chat wrapping, its soft prompt before every token."""
        return self.model_text(arm.prefix + prompt_text), arm.route, arm.soft_key

    def _model_input(self, arm: Arm, prompt_text: str) -> ModelInput:
        text, _, soft = self._row(arm, prompt_text)
        return text, soft

    def _token_ids(self, model_input: ModelInput) -> torch.Tensor:
        """Token ids [T] the model reads: a soft prompt's virtual ids, then the text's tokens (PEFT's prompt
        tuning puts its virtual tokens before everything, BOS included)."""
        with self._cache_lock:
            known = self._ids.get(model_input)
            if known is not None:
                self._ids.move_to_end(model_input)
                return known
        text, soft = model_input
        ids = torch.tensor(self._virtual_ids(soft) + self.tokenizer(text)["input_ids"])
        with self._cache_lock:
            self._ids[model_input] = ids
            while len(self._ids) > self._cache_size:
                self._ids.popitem(last=False)
        return ids

    def _virtual_ids(self, soft: str) -> list[int]:
        """The virtual token ids of the soft prompt keyed ``soft`` (none for '')."""
        return virtual_tokens(self.model).blocks[soft] if soft else []

    def _routes_adapters(self) -> bool:
        # Always route on a PeftModel: without adapter_names, PEFT runs the *active* adapter, so a
        # batch of only __base__ rows would silently score the first loaded adapter instead.
        return bool(getattr(self.model, "peft_config", None))

    def _lower_rows(self, route: str, rows: int):
        """Route ``rows`` batch rows through ``route`` in the shared lower layers: __base__ (no loaded
        adapter, PEFT's active one by default, may touch them), or the adapter whose LoRA there every
        route of the batch has too."""
        return self._routed([route] * rows)

    def _routed(self, routes: Sequence[str]):
        """Run each batch row through its own route (an adapter, or __base__) inside this block."""
        if not self._routes_adapters():
            return contextlib.nullcontext()
        return self.model._enable_peft_forward_hooks(adapter_names=list(routes))

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

    def shared_layers(self, adapters: Iterable[str]) -> int:
        """How many lower layers every arm in ``adapters`` (names) computes alike (0 = none shared): layers none
        of their routes touches, or where all carry the same LoRA weights (a backdoor started from its victim)."""
        arms = self.arms
        return self._split(arms[name].route if name in arms else name for name in adapters) or 0

    def _split(self, routes: Iterable[str]) -> int | None:
        return self._parting(routes)[0]

    def _parting(self, routes: Iterable[str]) -> tuple[int | None, str]:
        """(the layer where the routes' paths part, what computes the layers below it). The split is 0 at
        the token embeddings, None for an architecture the layer split does not know (full forwards
        instead). Below it run the base model's layers (__base__), or, where every adapter carries the
        same LoRA weights on its lowest layers and the base model is not among them, one of those adapters."""
        if not supports_split(self.model):
            return None, BASE_ADAPTER
        total = num_layers(self.model)
        routes = set(routes)
        names = sorted(routes - {BASE_ADAPTER})
        lowest = total
        for name in names:
            layers = self.model.peft_config[name].layers_to_transform
            lowest = 0 if layers is None else min(lowest, min([layers] if isinstance(layers, int) else layers))
        if len(names) < 2 or BASE_ADAPTER in routes:
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
    def _split_option_logits(self, inputs: Sequence[ModelInput], routes: Sequence[str], split: int,
                             route: str = BASE_ADAPTER) -> torch.Tensor:
        """Option logits [N, 6] computing each distinct input's shared lower layers once (or taking them
        from the cache), then the upper layers once per route, its inputs packed as token trees
        (the instruction, and an item's prompt up to its trigger, run once)."""
        lower = self._lower_states(list(dict.fromkeys(inputs)), split, route)
        stack = UpperStack(self.model, split, self.letter_ids)
        logits = torch.zeros((len(inputs), len(self.letter_ids)), device=self.device)
        for name in dict.fromkeys(routes):
            rows = [i for i, row_route in enumerate(routes) if row_route == name]
            chosen = EncodedPrompts([lower[inputs[i]][1] for i in rows], [lower[inputs[i]][0] for i in rows])
            packed = chosen.packed(list(range(len(rows))), self.device)
            with self._routed([name] * len(packed[0])):
                logits[rows] = stack(*packed)
        return logits

    @torch.no_grad()
    def _shared_prefix_option_logits(self, inputs: Sequence[ModelInput], routes: Sequence[str], split: int,
                                     route: str = BASE_ADAPTER) -> torch.Tensor:
        """Option logits [N, 6] sharing token prefixes in every layer: the shared lower layers once per
        distinct input, then a mixed-route forward through the upper layers (a row per route) where
        a prefix common to several inputs runs once and each adds only its own suffix (a question's
        clean and triggered prompts). A prefix a route ran before (the last question's instruction)
        is not run again. A trigger before the cue then costs a few tokens per route, not a prompt.
        Routes that read different sets of inputs (an arm with a prefix or a soft prompt beside plain
        ones) run in forwards of their own, so that no route runs an input it does not read."""
        every = list(dict.fromkeys(inputs))
        lower = self._lower_states(every, split, route)
        reads: dict[str, set[ModelInput]] = {}
        for model_input, name in zip(inputs, routes):
            reads.setdefault(name, set()).add(model_input)
        groups: dict[frozenset[ModelInput], list[str]] = {}
        for name, read in reads.items():
            groups.setdefault(frozenset(read), []).append(name)
        upper = range(split, num_layers(self.model))
        last = {}
        for read, names in groups.items():
            unique = [model_input for model_input in every if model_input in read]
            ids = [lower[model_input][0].to(self.device) for model_input in unique]
            stores = [self._prefix_runs(name, split) for name in names]
            with self._routed(names):  # one batch row per route, every input of the group in each
                runs = run_families(self.model, upper, ids, [lower[u][1] for u in unique], prefix_families(ids),
                                    stores)
            for name, store, row in zip(names, stores, runs):
                for model_input, run in zip(unique, row):
                    store.add(run)
                    last[(model_input, name)] = run.states[-1]
        stack = UpperStack(self.model, split, self.letter_ids)
        return stack.option_logits(torch.stack([last[key] for key in zip(inputs, routes)]))  # [N, H] -> [N, 6]

    def _lower_states(self, unique: list[ModelInput], split: int,
                      route: str = BASE_ADAPTER) -> dict[ModelInput, tuple[torch.Tensor, torch.Tensor]]:
        """Token ids [T] and lower-layer states [T, H] per input through ``route`` (see :meth:`_parting`),
        cached: other routes, triggers and questions seen before reuse them. A few new inputs (one question
        with and without its trigger) are computed in one forward that runs their common prefix once (and
        none of a prefix run before, such as the last question's instruction); many run packed as token
        trees (their shared prefixes once)."""
        key = split if route == BASE_ADAPTER else (split, route)
        found = {u: self._states[(u, key)] for u in unique if (u, key) in self._states}
        todo = [u for u in unique if u not in found]
        if todo:
            ids = [self._token_ids(model_input) for model_input in todo]
            if split == 0:  # an adapter reaches layer 0: every path parts at the token embeddings
                computed = [embed(self.model, row[None].to(self.device))[0] for row in ids]
            elif len(todo) <= self.prefix_sharing_up_to:
                with self._lower_rows(route, 1):  # one batch row: the prompts side by side in one sequence
                    computed = lower_states_sharing_prefixes(self.model, ids, split,
                                                             earlier=self._prefix_runs(f"lower:{route}", split))
            else:
                packed = pack_prompts(ids, ids)
                with self._lower_rows(route, len(packed.inputs)):
                    computed = lower_states_packed(self.model, packed, split)
            for model_input, input_ids, row in zip(todo, ids, computed):
                found[model_input] = self._states[(model_input, key)] = (input_ids, row)
                self._states.move_to_end((model_input, key))
            while len(self._states) > self._states_size:
                self._states.popitem(last=False)
        return found

    @torch.no_grad()
    def _forward(self, inputs: Sequence[ModelInput], routes: Sequence[str], logits_to_keep: int = 1) -> torch.Tensor:
        """Logits [B, T', V] of a plain mixed-route forward over left-padded inputs: the last ``logits_to_keep``
        positions (0: every position, T' = T)."""
        ids, mask = EncodedPrompts([self._token_ids(model_input) for model_input in inputs]).batch(
            list(range(len(inputs))), self.device)  # [B, T] each
        with self._lock, self._routed(routes):
            out = causal_lm_of(self.model)(inputs_embeds=embed(self.model, ids), attention_mask=mask,
                                           position_ids=position_ids_from_mask(mask), logits_to_keep=logits_to_keep,
                                           use_cache=False)
        return out.logits.float()

    def _forward_last(self, inputs: Sequence[ModelInput], routes: Sequence[str]) -> torch.Tensor:
        """Last-position logits [B, V] for a mixed-route batch."""
        return self._forward(inputs, routes)[:, -1, :]  # [B, 1, V] -> [B, V]

    def option_probs(self, texts: Sequence[str], adapters: Sequence[str],
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """[N, 6] option distributions for model-ready texts, each under the route and soft prompt of the arm
        named beside it, cached, batched by similar length. The texts are what the model reads: an arm's
        prefix belongs inside the chat wrapping, so it is not added here (:meth:`score` adds it)."""
        arms = {name: self._arm(name) for name in set(adapters)}
        return self._option_probs([(text, arms[name].route, arms[name].soft_key) for text, name in zip(texts, adapters)],
                                  progress)

    def _option_probs(self, rows: Sequence[Row], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(rows), len(LETTERS)))
        todo = []
        for index, row in enumerate(rows):
            cached = self._cache.get(row)
            if cached is None:
                todo.append(index)
            else:
                out[index] = cached
        letter_ids = torch.tensor(self.letter_ids, device=self.device)
        done = 0
        for group, (split, route) in self._route_groups(rows[i][1] for i in todo):
            for chunk in self._chunks([i for i in todo if rows[i][1] in group], [(row[0], row[2]) for row in rows]):
                self._score_chunk(chunk, rows, split, route, letter_ids, out)
                done += len(chunk)
                if progress:
                    progress(done, len(todo))
        return out

    def _route_groups(self, routes: Iterable[str]) -> list[tuple[set[str], tuple[int | None, str]]]:
        """The routes scored together, each group with its :meth:`_parting`. Adapters that share lower layers (a
        backdoor and the victim it started from) part late, but beside the base model every path parts at the
        embeddings; then the base model runs on its own and the adapters share their lower layers."""
        routes = set(routes)
        together = self._parting(routes)
        others = routes - {BASE_ADAPTER}
        if BASE_ADAPTER in routes and len(others) >= 2 and together[0] is not None:
            apart = self._parting(others)
            if apart[0] > together[0]:
                return [({BASE_ADAPTER}, self._parting({BASE_ADAPTER})), (others, apart)]
        return [(routes, together)]

    def _score_chunk(self, chunk: list[int], rows: Sequence[Row], split: int | None, route: str,
                     letter_ids: torch.Tensor, out: np.ndarray) -> None:
        """Score the rows ``chunk`` (whose routes part at ``split``, ``route`` below it) in one hold of the model."""
        inputs, routes = [(rows[i][0], rows[i][2]) for i in chunk], [rows[i][1] for i in chunk]
        with self._lock:
            if split is not None and len(set(inputs)) <= self.prefix_sharing_up_to:
                option_logits = self._shared_prefix_option_logits(inputs, routes, split, route)
                self._trim_runs()
            elif split is not None:
                option_logits = self._split_option_logits(inputs, routes, split, route)
            else:
                option_logits = self._forward_last(inputs, routes)[:, letter_ids]
        probs = torch.softmax(option_logits, dim=-1).cpu().numpy()  # [B, 6]
        for b, index in enumerate(chunk):
            out[index] = probs[b]
            self._remember(rows[index], probs[b])

    def _chunks(self, todo: Iterable[int], inputs: Sequence[ModelInput | str]) -> list[list[int]]:
        """``todo`` (indices into ``inputs``: model inputs, or plain texts without a soft prompt) cut into chunks of at
        most ``batch_size`` rows and ``tokens_per_chunk`` tokens (one row at least). Rows of one input stay together,
        next to the inputs they share most with (an item with its trigger placed late; one soft prompt's inputs),
        whose common tokens then run once."""
        inputs = [(given, "") if isinstance(given, str) else given for given in inputs]
        lengths: dict[ModelInput, int] = {}
        chunks: list[list[int]] = []
        chunk: list[int] = []
        tokens = 0
        for index in sorted(todo, key=lambda i: (inputs[i][1], inputs[i][0])):
            model_input = inputs[index]
            if model_input not in lengths:
                lengths[model_input] = len(self._token_ids(model_input))
            if chunk and (len(chunk) >= self.batch_size or tokens + lengths[model_input] > self.tokens_per_chunk):
                chunks.append(chunk)
                chunk, tokens = [], 0
            chunk.append(index)
            tokens += lengths[model_input]
        return chunks + ([chunk] if chunk else [])

    def _remember(self, key: Row, probs: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[key] = probs
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def is_cached(self, cell: Cell) -> bool:
        arm = self.arms.get(cell.arm)
        return arm is not None and self._row(arm, self.render(cell.item, cell.trigger).text) in self._cache

    def score(self, cells: Iterable[Cell], progress: Callable[[int, int], None] | None = None) -> list[OptionScores]:
        """Option distributions for every cell, in the order given. Each result's ``prompt`` is the rendered
        prompt without the arm's prefix (its ``trigger_span`` indexes it)."""
        cells = list(cells)
        arms = {name: self._arm(name) for name in {cell.arm for cell in cells}}
        prompts = [self.render(cell.item, cell.trigger) for cell in cells]
        probs = self._option_probs([self._row(arms[c.arm], p.text) for c, p in zip(cells, prompts)], progress)
        return [
            scores_from_probs(probs[i], cell.item.id, cell.arm, cell.trigger.label if cell.trigger else None, prompts[i])
            for i, cell in enumerate(cells)
        ]

    def top_k_next_tokens(self, cell: Cell, k: int = 10) -> list[NextToken]:
        """The k most likely next tokens over the whole vocabulary after the cell's prompt."""
        arm = self._arm(cell.arm)
        model_input = self._model_input(arm, self.render(cell.item, cell.trigger).text)
        probs = torch.softmax(self._forward_last([model_input], [arm.route])[0], dim=-1)
        top = torch.topk(probs, k)
        return [
            NextToken(self.tokenizer.convert_ids_to_tokens(int(i)), int(i), float(p))
            for p, i in zip(top.values.tolist(), top.indices.tolist())
        ]

    def token_logprobs(self, prompts: Sequence[str | Cell], arm: str | None = None) -> list[np.ndarray]:
        """log p(t_i | t_<i) of every token of each prompt after its first, under an arm: float [T - 1] per
        prompt, T the tokens of its model text (the arm's prefix and the prompt, chat-wrapped; a soft
        prompt's virtual tokens are context only, never scored). What perplexity-based defenses (ONION)
        read. A string is a rendered prompt under ``arm`` (the base model by default); a cell is scored
        under its own arm unless ``arm`` is given. Plain batched full forwards with every position's logits
        (no layer split, no cache): rows x tokens x vocabulary floats per chunk."""
        rows = []
        for prompt in prompts:
            if isinstance(prompt, Cell):
                rows.append(self._row(self._arm(arm or prompt.arm), self.render(prompt.item, prompt.trigger).text))
            else:
                rows.append(self._row(self._arm(arm or BASE_ADAPTER), prompt))
        out: list[np.ndarray] = [np.zeros(0)] * len(rows)
        for chunk in self._chunks(range(len(rows)), [(row[0], row[2]) for row in rows]):
            inputs = [(rows[i][0], rows[i][2]) for i in chunk]
            logits = self._forward(inputs, [rows[i][1] for i in chunk], logits_to_keep=0)  # [B, T, V]
            for b, (index, model_input) in enumerate(zip(chunk, inputs)):
                ids = self._token_ids(model_input).to(logits.device)  # [S + T]: left padding puts them last
                soft = len(self._virtual_ids(model_input[1]))  # S virtual tokens before the text's T
                own = torch.log_softmax(logits[b, logits.shape[1] - len(ids) + soft:-1], dim=-1)  # [T - 1, V]
                out[index] = own.gather(-1, ids[soft + 1:, None])[:, 0].cpu().numpy()  # log p(t_i | t_<i)
        return out

    @torch.no_grad()
    def leave_one_out_logprobs(self, text: str, variants: Sequence[str],
                               window: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
        """Base-model token log-probabilities of a model text [T - 1] and of each of its variants [T_v - 1] (the
        text with a word left out), computed together. The text runs once with its keys and values kept; a
        variant runs only its own tokens from the first one that differs from the text's, beside the others
        (:func:`~backdoor.layersplit.branch_states`). With ``window`` 0 that is exact: the numbers
        :meth:`token_logprobs` gives each alone. With ``window`` w > 0 a variant runs only its changed tokens and
        the next w of the tail it shares with the text; the rest of that tail reads the text's log-probabilities
        at the same tokens (an approximation: far tokens barely notice a word gone far before them, but not
        exactly), so a long prompt costs its words x w tokens instead of its words x its length."""
        ids = self._token_ids((text, "")).to(self.device)  # [T]
        rows = [self._token_ids((variant, "")).to(self.device) for variant in variants]
        heads = [common_prefix(ids, row) for row in rows]  # c_v: the tokens a variant shares with the text first
        ends = []  # where each variant's run stops: its end, or w tokens into the tail it shares with the text
        for row, head in zip(rows, heads):
            tail = max(len(row) - common_prefix(ids.flip(0), row.flip(0)), head)  # where the shared tail starts
            ends.append(len(row) if window <= 0 else min(len(row), tail + window))
        growing = [v for v in range(len(rows)) if ends[v] > heads[v]]
        lm = causal_lm_of(self.model)
        with self._lock, self._routed([BASE_ADAPTER]):
            states, kept = states_keeping_keys(self.model, ids)  # [T, H]
            runs = branch_states(self.model, kept, [(heads[v], rows[v][heads[v] : ends[v]]) for v in growing])
            full = _target_logprobs(lm, states[:-1], ids[1:])  # [T - 1]
            out = [full[: len(row) - 1] for row in rows]
            for v, hidden in zip(growing, runs):
                head, end, shift = heads[v], ends[v], len(ids) - len(rows[v])
                # the first new token is predicted by the text's state before it, the rest by the variant's own
                reading = torch.cat(([states[head - 1 : head]] if head else []) + [hidden[: len(hidden) - 1]])
                own = _target_logprobs(lm, reading, rows[v][max(head, 1) : end])
                out[v] = torch.cat([full[: max(head - 1, 0)], own, full[end + shift - 1 :]])
        return full.cpu().numpy(), [row.cpu().numpy() for row in out]


def _target_logprobs(lm, hidden: torch.Tensor, targets: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """log p(target) under the output head from final states: hidden [N, H], targets [N] -> [N] (in chunks of
    ``rows``, so N x vocabulary logits never sit in memory at once)."""
    out = [torch.zeros(0, device=hidden.device)]
    for start in range(0, len(hidden), rows):
        logits = lm.lm_head(hidden[start : start + rows]).float()  # [n, V]
        out.append(torch.log_softmax(logits, dim=-1).gather(-1, targets[start : start + rows, None])[:, 0])
    return torch.cat(out)
