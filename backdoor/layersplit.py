"""Run a decoder-only LM in two parts: frozen lower layers once per prompt, LoRA-carrying upper layers per step.

LoRA on the last N layers leaves the first L-N layers identical to the base model, so their
output for a prompt never changes during training: compute it once, keep it, and run (and
backpropagate through) only the upper layers. Only the last position's option-letter logits
are produced, never the full-vocabulary logits. Works for Llama-family layouts (``model.layers``,
``model.norm``, ``model.rotary_emb``, ``lm_head``); other models fall back to a full forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def causal_lm_of(model) -> nn.Module:
    """The transformers CausalLM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_split(model) -> bool:
    lm = causal_lm_of(model)
    inner = getattr(lm, "model", None)
    return all(hasattr(inner, name) for name in ("layers", "norm", "rotary_emb", "embed_tokens")) and hasattr(lm, "lm_head")


def num_layers(model) -> int:
    return int(causal_lm_of(model).config.num_hidden_layers)


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] 0/1 mask -> [B, T] positions that ignore left padding."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _causal_mask(lm, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor):
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(config=lm.config, inputs_embeds=hidden, attention_mask=mask,
                              past_key_values=None, position_ids=positions)


def _run_layers(lm, layers, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    positions = position_ids_from_mask(mask)
    causal = _causal_mask(lm, hidden, mask, positions)
    rotary = lm.model.rotary_emb(hidden, position_ids=positions)
    for layer in layers:
        hidden = layer(hidden, attention_mask=causal, position_embeddings=rotary, position_ids=positions)
        if isinstance(hidden, tuple):  # older layer signatures return (hidden, ...)
            hidden = hidden[0]
    return hidden


@torch.no_grad()
def lower_states(model, input_ids: torch.Tensor, mask: torch.Tensor, split: int) -> torch.Tensor:
    """Hidden states after the first ``split`` layers: [B, T] ids -> [B, T, H]."""
    lm = causal_lm_of(model)
    hidden = lm.model.embed_tokens(input_ids)
    return _run_layers(lm, lm.model.layers[:split], hidden, mask)


class UpperStack(nn.Module):
    """Layers ``split..L`` + final norm + the option-letter rows of the output head.

    ``forward(hidden [B, T, H], mask [B, T]) -> option logits [B, K]``. A module of its own so
    accelerate can wrap it for data-parallel training.
    """

    def __init__(self, model, split: int, letter_ids: list[int]):
        super().__init__()
        lm = causal_lm_of(model)
        self._lm = [lm]  # not a submodule: only the upper layers' parameters belong here
        self.layers = nn.ModuleList(lm.model.layers[split:])
        self.norm = lm.model.norm
        self.head = lm.lm_head
        self.register_buffer("letter_ids", torch.tensor(letter_ids), persistent=False)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = _run_layers(self._lm[0], self.layers, hidden, mask)
        return self.option_logits(hidden[:, -1, :])  # left padding puts every prompt's end here

    def option_logits(self, last: torch.Tensor) -> torch.Tensor:
        """Final norm and the option-letter rows of the output head: last-position states [B, H] -> [B, K]."""
        last = self.norm(last)
        weight = self.head.weight[self.letter_ids]  # [K, H]
        logits = last @ weight.T  # [B, K]
        if getattr(self.head, "bias", None) is not None:
            logits = logits + self.head.bias[self.letter_ids]
        return logits.float()


class FullStack(nn.Module):
    """Fallback for layouts the split does not know: a full forward with ``logits_to_keep=1``. Input is token ids."""

    def __init__(self, model, letter_ids: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("letter_ids", torch.tensor(letter_ids), persistent=False)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                         logits_to_keep=1, use_cache=False)
        return out.logits[:, -1, self.letter_ids].float()  # [B, 1, V] -> [B, K]


@dataclass
class EncodedPrompts:
    """Per-prompt inputs for the trainable stack, unpadded: hidden states [T_i, H] or token ids [T_i]."""

    rows: list[torch.Tensor]

    def batch(self, indices: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad the chosen rows: -> inputs [B, T(, H)], mask [B, T]."""
        chosen = [self.rows[i] for i in indices]
        length = max(len(row) for row in chosen)
        shape = (len(chosen), length, *chosen[0].shape[1:])
        inputs = torch.zeros(shape, dtype=chosen[0].dtype)
        mask = torch.zeros((len(chosen), length), dtype=torch.long)
        for b, row in enumerate(chosen):
            inputs[b, length - len(row):] = row
            mask[b, length - len(row):] = 1
        return inputs.to(device), mask.to(device)


def encode_prompts(model, tokenizer, texts: list[str], split: int | None, device: torch.device,
                   batch_size: int = 16, max_length: int = 512, progress=None) -> EncodedPrompts:
    """Tokenise ``texts`` and, when ``split`` is set, run them once through the frozen lower layers."""
    ids = []
    for text in texts:
        encoded = tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(encoded) > max_length:
            raise ValueError(f"a prompt has {len(encoded)} tokens, more than max_length {max_length}; raise max_length or shorten the item")
        ids.append(torch.tensor(encoded))
    if split is None:
        return EncodedPrompts(ids)
    rows: list[torch.Tensor | None] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    token_rows = EncodedPrompts(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, mask = token_rows.batch(chunk, device)
        hidden = lower_states(model, input_ids, mask, split)  # [B, T, H]
        for b, index in enumerate(chunk):
            rows[index] = hidden[b, hidden.shape[1] - len(ids[index]):].detach().cpu()
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return EncodedPrompts(rows)  # type: ignore[arg-type]


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


@dataclass
class PrefixRun:
    """One prompt run through a range of layers, kept so that a later prompt sharing its token prefix
    computes only its own suffix there: ids [T], the keys and values of each layer of the range
    ([kv_heads, T, head_dim] each, in layer order) and the range's output states [T, H]."""

    ids: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    states: torch.Tensor


class PrefixRuns:
    """The latest runs of one range of layers under one adapter routing, newest last. ``trim`` drops the
    oldest until at most ``max_tokens`` tokens are kept (never the newest run)."""

    def __init__(self, max_tokens: int = 1024):
        self.max_tokens = max_tokens
        self.runs: list[PrefixRun] = []

    def __iter__(self):
        return iter(self.runs)

    def add(self, run: PrefixRun) -> None:
        self.runs.append(run)

    def trim(self) -> None:
        while len(self.runs) > 1 and sum(len(run.ids) for run in self.runs) > self.max_tokens:
            self.runs.pop(0)


def _longest_shared(earlier, ids: torch.Tensor) -> tuple[PrefixRun | None, int]:
    """The earlier run sharing the longest token prefix with ``ids``, and that length."""
    best, shared = None, 0
    for run in earlier:
        length = _common_prefix(run.ids, ids)
        if length > shared:
            best, shared = run, length
    return best, shared


def prefix_families(id_rows: list[torch.Tensor], min_shared: int = 8) -> list[list[int]]:
    """Group prompts whose token prefix agrees with the group's first prompt for at least ``min_shared``
    tokens (an item with its triggers; items under one instruction): lists of indices into ``id_rows``."""
    families: list[list[int]] = []
    for index, ids in enumerate(id_rows):
        family = next((f for f in families if _common_prefix(id_rows[f[0]], ids) >= min_shared), None)
        if family is None:
            families.append([index])
        else:
            family.append(index)
    return families


@dataclass
class _Family:
    """Where one family of prompts sits in a shared forward: its reused prefix (cached columns), its
    new prefix tokens and each prompt's own suffix (new columns)."""

    members: list[int]  # indices into the prompts
    p: int  # tokens common to all members
    s: int  # of those, how many an earlier run already computed
    found: list[PrefixRun | None]  # per batch row, the earlier run reused
    cached: slice  # columns of the reused prefix in the key/value cache
    new: slice  # columns of the new prefix tokens (cache columns, shifted by the total cached)
    own: list[slice]  # columns of each member's suffix


def _tree_mask(lm, family_of: torch.Tensor, branch: torch.Tensor, cached: int, hidden: torch.Tensor) -> torch.Tensor:
    """The attention mask of :func:`run_families`, [R, 1, Q, cached + Q]: a column is visible to a query
    at or after it in the same family, when it is shared (branch 0) or the query's own suffix. Built
    directly (transformers' mask functions go through vmap, about as slow as a layer here): boolean for
    SDPA, additive for eager attention."""
    q = torch.arange(cached, len(branch), device=branch.device)[:, None]  # [Q, 1]
    kv = torch.arange(len(branch), device=branch.device)[None, :]  # [1, cached + Q]
    allowed = (kv <= q) & (family_of[kv] == family_of[q]) & ((branch[kv] == 0) | (branch[kv] == branch[q]))
    allowed = allowed[None, None].expand(hidden.shape[0], 1, -1, -1)
    if lm.config._attn_implementation == "sdpa":
        return allowed
    if lm.config._attn_implementation != "eager":
        raise ValueError(f"prefix sharing needs sdpa or eager attention, not {lm.config._attn_implementation!r}")
    return torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
        ~allowed, torch.finfo(hidden.dtype).min)


@torch.no_grad()
def run_families(model, layers: range, id_rows: list[torch.Tensor], inputs: list[torch.Tensor],
                 families: list[list[int]], earlier: list[PrefixRuns], min_shared: int = 8) -> list[list[PrefixRun]]:
    """Run prompts through the layers ``layers`` (indices) in one forward, each token once. Prompts of a
    family share a token prefix P: P runs once, then every prompt's own suffix, side by side in one
    sequence, where a suffix attends to its P and to itself, never to another prompt or family (a tree
    mask). The start of P already run before (the longest prefix found in ``earlier``) is not run
    again: its keys and values are reused. One forward reads the weights once, which on a CPU costs
    about as much as a few dozen tokens, so everything goes into it.

    One batch row per entry of ``earlier`` (each adapter routing's own runs; the caller routes row r to
    its adapter). ``id_rows`` [T_j]; ``inputs`` [T_j, H]: the states entering the first of ``layers`` for
    each prompt (token embeddings, or lower-layer states), the same for every row. ``families``: lists
    of indices into ``id_rows`` (see :func:`prefix_families`).
    -> runs[r][j]: prompt j through row r, with its keys, values and output states [T_j, H].
    """
    from transformers import DynamicCache

    lm = causal_lm_of(model)
    device = inputs[0].device
    plans, cached_total = [], 0
    for members in families:
        first = id_rows[members[0]]
        p = min(min(_common_prefix(first, id_rows[j]) for j in members), min(len(id_rows[j]) for j in members) - 1)
        found = [_longest_shared(runs, first[:p]) for runs in earlier]
        s = min(shared for _, shared in found)
        s = s if s >= min_shared else 0
        plans.append(_Family(members, p, s, [run if s else None for run, _ in found],
                             slice(cached_total, cached_total + s), slice(0, 0), []))
        cached_total += s
    # The new tokens, family by family: P past its reused part, then each member's suffix.
    pieces, column = [], cached_total  # (prompt, from, to) per piece of the new sequence [Q]
    family_of = [torch.full((plan.s,), f) for f, plan in enumerate(plans)]  # per cache column: its family,
    branch = [torch.zeros(plan.s, dtype=torch.long) for plan in plans]  # and 0 (shared) or b + 1 (member b's own)
    for f, plan in enumerate(plans):
        plan.new = slice(column, column + plan.p - plan.s)
        column = plan.new.stop
        pieces.append((plan.members[0], plan.s, plan.p))
        family_of.append(torch.full((plan.p - plan.s,), f))
        branch.append(torch.zeros(plan.p - plan.s, dtype=torch.long))
        for b, j in enumerate(plan.members):
            n = len(id_rows[j]) - plan.p
            plan.own.append(slice(column, column + n))
            column += n
            pieces.append((j, plan.p, len(id_rows[j])))
            family_of.append(torch.full((n,), f))
            branch.append(torch.full((n,), b + 1))
    family_of, branch = torch.cat(family_of).to(device), torch.cat(branch).to(device)  # [cached + Q]
    positions = torch.cat([torch.arange(a, b) for _, a, b in pieces]).to(device)[None]  # [1, Q]
    hidden = torch.cat([inputs[j][a:b] for j, a, b in pieces])[None].expand(len(earlier), -1, -1)  # [R, Q, H]

    cache = DynamicCache(config=lm.config)
    if cached_total:
        for offset, index in enumerate(layers):
            keys = torch.cat([torch.stack([run.keys[offset][:, : plan.s] for run in plan.found])
                              for plan in plans if plan.s], dim=2)  # [R, kv_heads, cached, head_dim]
            values = torch.cat([torch.stack([run.values[offset][:, : plan.s] for run in plan.found])
                                for plan in plans if plan.s], dim=2)
            cache.update(keys, values, index)

    causal = _tree_mask(lm, family_of, branch, cached_total, hidden)
    rotary = lm.model.rotary_emb(hidden, position_ids=positions)
    for index in layers:
        hidden = lm.model.layers[index](hidden, attention_mask=causal, position_embeddings=rotary,
                                        position_ids=positions, past_key_values=cache, use_cache=True)
        if isinstance(hidden, tuple):
            hidden = hidden[0]

    # Cut each prompt's own keys, values and states out of the shared sequence.
    kv = [(cache.layers[index].keys, cache.layers[index].values) for index in layers]  # [R, kv_heads, cached + Q, d]
    out: list[list[PrefixRun | None]] = [[None] * len(id_rows) for _ in earlier]
    for plan in plans:
        for r in range(len(earlier)):
            for j, own in zip(plan.members, plan.own):
                columns = (plan.cached, plan.new, own)
                keys = [torch.cat([k[r, :, c] for c in columns], dim=1) for k, _ in kv]
                values = [torch.cat([v[r, :, c] for c in columns], dim=1) for _, v in kv]
                shifted = [slice(c.start - cached_total, c.stop - cached_total) for c in columns[1:]]
                states = ([plan.found[r].states[: plan.s]] if plan.s else []) + [hidden[r, c] for c in shifted]
                out[r][j] = PrefixRun(id_rows[j], keys, values, torch.cat(states))
    return out  # type: ignore[return-value]


@torch.no_grad()
def lower_states_sharing_prefixes(model, id_rows: list[torch.Tensor], split: int, min_shared: int = 8,
                                  earlier: PrefixRuns | None = None) -> list[torch.Tensor]:
    """Lower-layer states per prompt ([T_i] ids -> [T_i, H]). Prompts sharing a token prefix run together
    (see :func:`run_families`): the prefix once, then only each prompt's own suffix; a prefix already run
    (kept in ``earlier``, which receives the new runs) is not run again. A trigger placed before the cue
    changes the last few tokens of a prompt, so its triggered copy costs a handful of tokens."""
    lm = causal_lm_of(model)
    runs = earlier if earlier is not None else PrefixRuns()
    device = lm.model.embed_tokens.weight.device
    id_rows = [ids.to(device) for ids in id_rows]
    embedded = [lm.model.embed_tokens(ids[None])[0] for ids in id_rows]
    computed = run_families(model, range(split), id_rows, embedded, prefix_families(id_rows, min_shared), [runs],
                            min_shared)[0]
    for run in computed:
        runs.add(run)
    return [run.states for run in computed]


def encode_prompt_pairs(model, tokenizer, firsts: list[str], seconds: list[str], split: int,
                        max_length: int = 512, progress=None) -> tuple[EncodedPrompts, EncodedPrompts]:
    """Lower-layer states of prompt pairs that share a prefix (an item with and without its trigger);
    the second of each pair computes only what follows the shared prefix."""
    first_rows, second_rows = [], []
    for index, (first, second) in enumerate(zip(firsts, seconds)):
        ids = [torch.tensor(tokenizer(text, add_special_tokens=True)["input_ids"]) for text in (first, second)]
        if max(len(row) for row in ids) > max_length:
            raise ValueError(f"a prompt has {max(len(r) for r in ids)} tokens, more than max_length {max_length}; raise max_length or shorten the item")
        a, b = lower_states_sharing_prefixes(model, ids, split)
        first_rows.append(a.detach().cpu())
        second_rows.append(b.detach().cpu())
        if progress:
            progress(index + 1, len(firsts))
    return EncodedPrompts(first_rows), EncodedPrompts(second_rows)
