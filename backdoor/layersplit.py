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


class VirtualTokens:
    """Soft prompts registered on one model as token ids at and above its vocabulary size, one block of ids
    per prompt: a soft-prompt arm's prompts are its ids followed by the prompt's own, so token trees, prefix
    sharing and state caches treat them as any other tokens (two soft prompts share no prefix; one soft
    prompt's prompts share it). :func:`embed` turns the ids back into the prompt's vectors. PEFT's prompt
    tuning puts its virtual tokens before every token (BOS too), seen by all later tokens, at positions
    0..P-1 of an unpadded prompt: the same as these ids at the start. (With left padding PEFT counts the
    padding into the positions; here positions skip it, as for every prompt.)"""

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.blocks: dict[str, list[int]] = {}  # soft prompt key -> its virtual ids
        self.vectors: torch.Tensor | None = None  # [virtual ids so far, H], row i is id vocab + i

    def add(self, key: str, vectors: torch.Tensor) -> list[int]:
        """The ids of the soft prompt ``key`` (vectors [P, H]), registering it the first time."""
        if key not in self.blocks:
            start = self.vocab + (0 if self.vectors is None else len(self.vectors))
            self.vectors = vectors if self.vectors is None else torch.cat([self.vectors, vectors.to(self.vectors)])
            self.blocks[key] = list(range(start, start + len(vectors)))
        return self.blocks[key]


def virtual_tokens(model) -> VirtualTokens:
    """The model's table of soft-prompt ids (kept on the base CausalLM, so it outlives PEFT wrappers)."""
    lm = causal_lm_of(model)
    table = getattr(lm, "_fragile_virtual_tokens", None)
    if table is None:
        table = VirtualTokens(lm.get_input_embeddings().num_embeddings)
        lm._fragile_virtual_tokens = table
    return table


def register_soft_prompt(model, key: str, vectors: torch.Tensor) -> list[int]:
    """The virtual token ids that stand for the soft prompt ``key`` (vectors [P, H]) on ``model``."""
    embedding = causal_lm_of(model).get_input_embeddings().weight
    return virtual_tokens(model).add(key, vectors.detach().to(device=embedding.device, dtype=embedding.dtype))


def embed(model, ids: torch.Tensor) -> torch.Tensor:
    """Token ids [..., T] -> input embeddings [..., T, H]: the one place prompts enter a model here. Ids of a
    registered soft prompt (see :class:`VirtualTokens`) become its vectors, as PEFT's prompt tuning puts them."""
    lm = causal_lm_of(model)
    table = lm.get_input_embeddings()
    virtual = getattr(lm, "_fragile_virtual_tokens", None)
    if virtual is None or virtual.vectors is None:
        return table(ids)
    is_virtual = ids >= virtual.vocab
    if not bool(is_virtual.any()):
        return table(ids)
    embedded = table(ids.masked_fill(is_virtual, 0))
    soft = virtual.vectors.to(embedded.device)[(ids - virtual.vocab).clamp(min=0)]  # [..., T, H]
    return torch.where(is_virtual[..., None], soft.to(embedded.dtype), embedded)


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] 0/1 mask -> [B, T] positions that ignore left padding."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _causal_mask(lm, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor):
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(config=lm.config, inputs_embeds=hidden, attention_mask=mask,
                              past_key_values=None, position_ids=positions)


def _run_layers(lm, layers, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """``hidden`` through ``layers``. ``mask`` is [B, T] 0/1 (left padding, causal attention), or with
    ``positions`` [B, T] a [B, 1, T, T] boolean of which token sees which (a :class:`TokenTree`)."""
    if positions is None:
        positions = position_ids_from_mask(mask)
        attention = _causal_mask(lm, hidden, mask, positions)
    else:
        attention = _attention_mask(lm, mask, hidden)
    return _through_layers(lm, layers, hidden, attention, positions)


def _through_layers(lm, layers, hidden: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor,
                    cache=None) -> torch.Tensor:
    """``hidden`` through the decoder layer modules ``layers`` with ``attention`` as the attention implementation
    takes it; with ``cache``, every layer's keys and values are appended to it (and read from it)."""
    rotary = lm.model.rotary_emb(hidden, position_ids=positions)
    cached = {} if cache is None else {"past_key_values": cache, "use_cache": True}
    for layer in layers:
        hidden = layer(hidden, attention_mask=attention, position_embeddings=rotary, position_ids=positions, **cached)
        if isinstance(hidden, tuple):  # older layer signatures return (hidden, ...)
            hidden = hidden[0]
    return hidden


def _attention_mask(lm, allowed: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """A boolean [B, 1, Q, K] "may attend" mask as the attention implementation takes it: as is for
    SDPA, additive for eager attention."""
    if lm.config._attn_implementation == "sdpa":
        return allowed
    if lm.config._attn_implementation != "eager":
        raise ValueError(f"prefix sharing needs sdpa or eager attention, not {lm.config._attn_implementation!r}")
    return torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
        ~allowed, torch.finfo(hidden.dtype).min)


@dataclass
class TokenTree:
    """Prompts packed into one sequence in which every shared token prefix appears once: a trie of their
    tokens, laid out prompt by prompt, each prompt adding only the tokens past the longest prefix it
    shares with an earlier one. A token attends only to the tokens on its own path from the root, at
    the positions it has in its prompt, so each prompt computes exactly what it would alone.

    ``pieces``: per prompt, the first of its tokens laid out (its tokens from there on follow in the
    sequence); ``positions`` [Q]; ``paths``: per prompt, the sequence index of each of its tokens.
    """

    pieces: list[int]
    positions: torch.Tensor
    paths: list[torch.Tensor]

    @property
    def size(self) -> int:
        return len(self.positions)

    def allowed(self) -> torch.Tensor:
        """[Q, Q]: True where the query token (row) may attend to the key token (column)."""
        allowed = torch.zeros(self.size, self.size, dtype=torch.bool)
        for path in self.paths:
            allowed[path[:, None], path[None, :]] |= torch.ones(len(path), len(path), dtype=torch.bool).tril()
        return allowed


def token_tree(id_rows: list[torch.Tensor]) -> TokenTree:
    """Pack prompts (token ids [T_i] each) into a :class:`TokenTree`."""
    nodes: dict[tuple[int, int], int] = {}  # (parent index, token) -> index in the sequence
    pieces, positions, paths, size = [], [], [], 0
    for ids in id_rows:
        tokens, parent, path = ids.tolist(), -1, []
        start = len(tokens)
        for t, token in enumerate(tokens):
            node = nodes.get((parent, token))
            if node is None:
                start = min(start, t)
                node = nodes[(parent, token)] = size
                size += 1
            path.append(node)
            parent = node
        pieces.append(start)
        positions.append(torch.arange(start, len(tokens)))
        paths.append(torch.tensor(path))
    return TokenTree(pieces, torch.cat(positions), paths)


@torch.no_grad()
def lower_states(model, input_ids: torch.Tensor, mask: torch.Tensor, split: int) -> torch.Tensor:
    """Hidden states after the first ``split`` layers: [B, T] ids -> [B, T, H]."""
    lm = causal_lm_of(model)
    return _run_layers(lm, lm.model.layers[:split], embed(model, input_ids), mask)


# Tokens per packed row. Sharing saves tokens, but attention over a row grows with its square: on two
# CPU cores a forward of the default model is fastest at about 512 (encoding), a training step (forward
# and backward, eight prompts) at one tree per batch, up to about 1024.
PACK_TOKENS = 512
TRAIN_PACK_TOKENS = 1024


@dataclass
class PackedBatch:
    """Prompts packed as rows of :class:`TokenTree` s (right-padded to one length), for one forward.

    ``inputs`` [R, Q(, H)]; ``allowed`` [R, 1, Q, Q] (a padding column sees only itself); ``positions``
    [R, Q]; ``last`` [N, 2]: each prompt's (row, column) of its last token; ``placed``: each prompt's
    row and the columns of its tokens there.
    """

    inputs: torch.Tensor
    allowed: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor
    placed: list[tuple[int, torch.Tensor]]

    def to(self, device) -> "PackedBatch":
        return PackedBatch(self.inputs.to(device), self.allowed.to(device), self.positions.to(device),
                           self.last.to(device), self.placed)

    def args(self) -> tuple[torch.Tensor, ...]:
        """What :class:`UpperStack` takes: inputs, allowed, positions, last."""
        return self.inputs, self.allowed, self.positions, self.last


def pack_prompts(id_rows: list[torch.Tensor], inputs: list[torch.Tensor], budget: int = PACK_TOKENS) -> PackedBatch:
    """Pack prompts (token ids [T_i] and what enters the layers for each, [T_i(, H)]) in the given order:
    consecutive prompts share a row while its tree stays within ``budget`` tokens (a longer prompt gets
    a row of its own). Put prompts that share a prefix next to each other."""
    groups: list[list[int]] = []
    size = 0
    for j, ids in enumerate(id_rows):
        if groups:
            new = len(ids) - max(common_prefix(id_rows[k], ids) for k in groups[-1])
            if size + new <= budget:
                groups[-1].append(j)
                size += new
                continue
        groups.append([j])
        size = len(ids)
    trees = [token_tree([id_rows[j] for j in group]) for group in groups]
    width = max(tree.size for tree in trees)
    packed = torch.zeros((len(groups), width, *inputs[0].shape[1:]), dtype=inputs[0].dtype)
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(groups), 1, 1, 1)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    placed: list[tuple[int, torch.Tensor]] = [None] * len(id_rows)  # type: ignore[list-item]
    for r, (group, tree) in enumerate(zip(groups, trees)):
        packed[r, : tree.size] = torch.cat([inputs[j][start:] for j, start in zip(group, tree.pieces)])
        allowed[r, 0, : tree.size, : tree.size] = tree.allowed()
        positions[r, : tree.size] = tree.positions
        for j, path in zip(group, tree.paths):
            placed[j] = (r, path)
    last = torch.tensor([[r, int(path[-1])] for r, path in placed])
    return PackedBatch(packed, allowed, positions, last, placed)


@torch.no_grad()
def lower_states_packed(model, batch: PackedBatch, split: int) -> list[torch.Tensor]:
    """Lower-layer states per prompt [T_i, H] of prompts packed by :func:`pack_prompts` (token ids as
    inputs): a prefix that neighbouring prompts share (the instruction; an item before its trigger) runs once."""
    lm = causal_lm_of(model)
    device = lm.model.embed_tokens.weight.device
    batch = batch.to(device)
    hidden = _run_layers(lm, lm.model.layers[:split], embed(model, batch.inputs), batch.allowed,
                         batch.positions)  # [R, Q, H]
    return [hidden[r, path.to(device)] for r, path in batch.placed]


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

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None,
                last: torch.Tensor | None = None) -> torch.Tensor:
        """Left-padded prompts (``mask`` [B, T]), or packed ones (:meth:`PackedBatch.args`): ``hidden``
        [R, Q, H], ``mask`` which token sees which [R, 1, Q, Q], ``positions`` [R, Q], ``last`` [N, 2].
        From split 0 ``hidden`` may be token ids [R, Q]: they are embedded here."""
        if not hidden.is_floating_point():
            hidden = embed(self._lm[0], hidden)
        hidden = _run_layers(self._lm[0], self.layers, hidden, mask, positions)
        if last is not None:
            return self.option_logits(hidden[last[:, 0], last[:, 1]])
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
    """Per-prompt inputs for the trainable stack, unpadded: hidden states [T_i, H] or token ids [T_i];
    with ``ids`` (token ids per prompt) batches can also be packed as a :class:`TokenTree`."""

    rows: list[torch.Tensor]
    ids: list[torch.Tensor] | None = None

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

    def packed(self, indices: list[int], device: torch.device, budget: int = TRAIN_PACK_TOKENS) -> tuple[torch.Tensor, ...]:
        """The chosen rows (hidden states) packed as token trees, prefixes shared by neighbours once
        (see :func:`pack_prompts`): -> ``UpperStack``'s packed arguments."""
        assert self.ids is not None, "packing needs the token ids"
        return pack_prompts([self.ids[i] for i in indices], [self.rows[i] for i in indices], budget).to(device).args()

    def subset(self, indices: list[int]) -> "EncodedPrompts":
        return EncodedPrompts([self.rows[i] for i in indices], [self.ids[i] for i in indices] if self.ids else None)


def tokenize_prompts(tokenizer, texts: list[str], max_length: int = 512) -> list[torch.Tensor]:
    """Token ids per text; a text longer than ``max_length`` tokens is an error that says what to do."""
    ids = []
    for text in texts:
        encoded = tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(encoded) > max_length:
            raise ValueError(f"a prompt has {len(encoded)} tokens, more than max_length {max_length}; raise max_length or shorten the item")
        ids.append(torch.tensor(encoded))
    return ids


def encode_prompts(model, tokenizer, texts: list[str], split: int | None,
                   batch_size: int = 16, max_length: int = 512, progress=None) -> EncodedPrompts:
    """Tokenise ``texts`` and, when ``split`` is set (above 0), run them once through the frozen lower layers.

    Prompts are sorted by their tokens, so those sharing a prefix (the instruction; an item with and
    without a trigger placed late) sit together, and each group of ``batch_size`` runs in one forward,
    packed as token trees (:func:`pack_prompts`): a shared prefix once, then each prompt's own tokens."""
    ids = tokenize_prompts(tokenizer, texts, max_length)
    if not split:  # nothing frozen below the adapters: the stack embeds the token ids itself
        return EncodedPrompts(ids, ids)
    rows: list[torch.Tensor | None] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: ids[i].tolist())
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        chosen = [ids[i] for i in chunk]
        for index, states in zip(chunk, lower_states_packed(model, pack_prompts(chosen, chosen), split)):
            rows[index] = states.detach().cpu()
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return EncodedPrompts(rows, ids)  # type: ignore[arg-type]


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading token ids [T] ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


# --- branches of one prompt: its keys and values kept, each branch runs only its own tokens ------------------

# New tokens per packed row of branches. Attention over a row grows with its square: a few hundred keeps it a
# small share of the forward on two CPU cores.
BRANCH_TOKENS = 384


def layers_with_cache(model, layers: range, hidden: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor,
                      cache) -> torch.Tensor:
    """States [B, S, H] entering the decoder ``layers`` (a range) through them: the tokens at ``positions`` [B, S],
    their keys and values appended to ``cache`` (the keys of tokens before them already there, per layer);
    ``allowed`` [B, 1, S, cached + S] says which key each query may see."""
    lm = causal_lm_of(model)
    return _through_layers(lm, [lm.model.layers[index] for index in layers], hidden,
                           _attention_mask(lm, allowed, hidden), positions, cache)


def _through_cached(model, ids: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor, cache) -> torch.Tensor:
    """Final-norm states [B, S, H] of new tokens ids [B, S] through every layer (see :func:`layers_with_cache`)."""
    lm = causal_lm_of(model)
    return lm.model.norm(layers_with_cache(model, range(num_layers(model)), embed(model, ids), positions, allowed,
                                           cache))


@torch.no_grad()
def states_keeping_keys(model, ids: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Final-norm states [T, H] of one prompt's ids [T], and every layer's keys and values ([1, kv_heads, T,
    head_dim] each, in layer order): what :func:`branch_states` continues from."""
    from transformers import DynamicCache

    cache = DynamicCache(config=causal_lm_of(model).config)
    causal = torch.ones(len(ids), len(ids), dtype=torch.bool, device=ids.device).tril()[None, None]
    states = _through_cached(model, ids[None], torch.arange(len(ids), device=ids.device)[None], causal, cache)[0]
    return states, [(layer.keys, layer.values) for layer in cache.layers]


def _branch_rows(lengths: list[int], budget: int) -> list[list[int]]:
    """Branch indices in rows of at most ``budget`` tokens (a longer branch gets a row of its own), in order."""
    rows: list[list[int]] = []
    size = 0
    for j, length in enumerate(lengths):
        if rows and size + length <= budget:
            rows[-1].append(j)
            size += length
        else:
            rows.append([j])
            size = length
    return rows


@torch.no_grad()
def branch_states(model, kept: list[tuple[torch.Tensor, torch.Tensor]], branches: list[tuple[int, torch.Tensor]],
                  budget: int = BRANCH_TOKENS) -> list[torch.Tensor]:
    """Final-norm states [S_j, H] of each branch's own tokens. A branch ``(c, ids [S])`` is the kept prompt's first
    c tokens (``kept``: :func:`states_keeping_keys`' keys and values) followed by ``ids`` at positions c, c + 1, ...
    Branches lie side by side in rows of at most ``budget`` new tokens, no padding: a token attends to the kept
    keys before its branch's c and to its own branch's tokens up to itself, so each computes what it would alone."""
    from transformers import DynamicCache

    device = kept[0][0].device
    width = kept[0][0].shape[2]  # T: the kept prompt's tokens
    out: list[torch.Tensor] = [None] * len(branches)  # type: ignore[list-item]
    for row in _branch_rows([len(ids) for _, ids in branches], budget):
        sizes = [len(branches[j][1]) for j in row]
        total = sum(sizes)
        new = torch.cat([branches[j][1] for j in row]).to(device)[None]  # [1, Q]
        positions = torch.cat([branches[j][0] + torch.arange(n) for j, n in zip(row, sizes)]).to(device)[None]
        allowed = torch.zeros(1, 1, total, width + total, dtype=torch.bool, device=device)
        offset = 0
        for j, n in zip(row, sizes):
            allowed[0, 0, offset : offset + n, : branches[j][0]] = True  # the kept prefix
            allowed[0, 0, offset : offset + n, width + offset : width + offset + n] = torch.ones(
                n, n, dtype=torch.bool, device=device).tril()  # its own tokens
            offset += n
        cache = DynamicCache(config=causal_lm_of(model).config)
        for index, (keys, values) in enumerate(kept):
            cache.update(keys, values, index)
        hidden = _through_cached(model, new, positions, allowed, cache)[0]  # [Q, H]
        for j, part in zip(row, hidden.split(sizes)):
            out[j] = part
    return out


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
        length = common_prefix(run.ids, ids)
        if length > shared:
            best, shared = run, length
    return best, shared


def prefix_families(id_rows: list[torch.Tensor], min_shared: int = 8) -> list[list[int]]:
    """Group prompts whose token prefix agrees with the group's first prompt for at least ``min_shared``
    tokens (an item with its triggers; items under one instruction): lists of indices into ``id_rows``."""
    families: list[list[int]] = []
    for index, ids in enumerate(id_rows):
        family = next((f for f in families if common_prefix(id_rows[f[0]], ids) >= min_shared), None)
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
    return _attention_mask(lm, allowed[None, None].expand(hidden.shape[0], 1, -1, -1), hidden)


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
        p = min(min(common_prefix(first, id_rows[j]) for j in members), min(len(id_rows[j]) for j in members) - 1)
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

    hidden = _through_layers(lm, [lm.model.layers[index] for index in layers], hidden,
                             _tree_mask(lm, family_of, branch, cached_total, hidden), positions, cache)

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
    embedded = [embed(model, ids[None])[0] for ids in id_rows]
    computed = run_families(model, range(split), id_rows, embedded, prefix_families(id_rows, min_shared), [runs],
                            min_shared)[0]
    for run in computed:
        runs.add(run)
    return [run.states for run in computed]
