"""Conformal thresholds kept beside an adapter: calibrating several adapters in one pass, and a file that says what they were calibrated on.

A thresholds file (``conformal.json`` in an adapter folder) holds the LAC and APS thresholds per
error rate alpha, and the :class:`CalibrationSource` they came from: the base model, the adapter's
weights (a content hash, so a copy of the folder elsewhere still matches and a retrained one never
does), the prompt format, and the calibration items (name, count and a content hash). A reader uses
the thresholds only when every one of those matches what it would calibrate on now.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from backdoor import uncertainty
from backdoor.models import ADAPTER_CONFIG, BASE_ADAPTER, WEIGHT_FILES
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "conformal.json"  # inside an adapter folder
BASE_THRESHOLDS_FILE = "base-model.conformal.json"  # directly in the adapters folder: the base model's own
SHIPPED_ALPHAS = (0.05, 0.1, 0.2)
FORMAT = 1
CHUNK_ITEMS = 4  # calibration items per Scorer call, so live requests get the model between chunks

_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, modification time) so a 10 MB adapter is hashed once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _digests_lock:
        _digests[key] = digest.hexdigest()
    return _digests[key]


def adapter_sha256(folder: str | os.PathLike[str]) -> str:
    """Content hash of an adapter: its weight file and the LoRA settings that scale it (not the folder's path or dates)."""
    folder = Path(folder)
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder} holds no {' or '.join(WEIGHT_FILES)}")
    settings = json.loads((folder / ADAPTER_CONFIG).read_text())
    settings.pop("base_model_name_or_path", None)  # a path or hub id; the base model is compared on its own
    settings.pop("revision", None)
    canonical = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(f"{file_sha256(weights)}\n{canonical}".encode()).hexdigest()


def items_sha256(items: Sequence[Item]) -> str:
    """Content hash of calibration items: everything that reaches the prompt, and the gold answer."""
    rows = [[item.id, item.task, item.context, item.question, sorted(item.choices.items()), item.answer]
            for item in items]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class CalibrationSource:
    """What a set of thresholds was calibrated on. ``adapter`` and ``split`` are names for people; the hashes decide."""

    base_model: str  # the base model's identity (as written into every adapter's config)
    adapter: str  # folder name, or __base__ for the base model alone
    adapter_sha256: str | None  # None for the base model
    style: str  # prompt style
    chat: bool  # chat template applied
    split: str  # calibration split name
    items: int
    items_sha256: str

    def matches(self, other: "CalibrationSource") -> bool:
        """Same model, weights, prompt format and items (names aside): thresholds of one apply to the other."""
        return (self.base_model, self.adapter_sha256, self.style, self.chat, self.items, self.items_sha256) == (
            other.base_model, other.adapter_sha256, other.style, other.chat, other.items, other.items_sha256)

    def cache_key(self) -> str:
        """A file-name-safe key of what :meth:`matches` compares."""
        fields = [self.base_model, self.adapter_sha256, self.style, self.chat, self.items, self.items_sha256]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]


def source_for(base_model: str, adapter: str, adapter_folder: str | os.PathLike[str] | None, style: str, chat: bool,
               split: str, items: Sequence[Item], items_digest: str | None = None) -> CalibrationSource:
    """The source for ``adapter`` (its folder, or None for the base model) calibrated on ``items`` now;
    ``items_digest``, when the caller already has ``items_sha256(items)``, saves hashing them again."""
    digest = adapter_sha256(adapter_folder) if adapter_folder is not None and adapter != BASE_ADAPTER else None
    return CalibrationSource(base_model, adapter, digest, style, bool(chat), split, len(items),
                             items_digest or items_sha256(items))


def _alpha_key(alpha: float) -> str:
    return f"{float(alpha):g}"


@dataclass(frozen=True)
class ConformalThresholds:
    """LAC and APS thresholds per alpha (keys like ``"0.1"``), and what they were calibrated on."""

    source: CalibrationSource
    lac: Mapping[str, float]
    aps: Mapping[str, float]

    @property
    def alphas(self) -> list[float]:
        return sorted(float(a) for a in self.lac)

    def threshold(self, alpha: float, method: str = "lac") -> float | None:
        """The threshold at ``alpha``, or None when this file was not calibrated at that error rate."""
        table = {"lac": self.lac, "aps": self.aps}[method]
        for key, value in table.items():
            if math.isclose(float(key), alpha, rel_tol=0, abs_tol=1e-9):
                return float(value)
        return None

    def to_json(self) -> dict:
        return {"format": FORMAT,
                "note": "Conformal thresholds (LLM-Uncertainty-Bench LAC and APS) per error rate alpha; used only "
                        "while every field of 'source' matches. Regenerate: python scripts/calibrate_shipped.py",
                "source": asdict(self.source), "lac": dict(self.lac), "aps": dict(self.aps)}

    @classmethod
    def from_json(cls, data: dict) -> "ConformalThresholds":
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown thresholds file format {data.get('format')!r}")
        source = CalibrationSource(**data["source"])
        lac = {_alpha_key(float(a)): float(t) for a, t in data["lac"].items()}
        aps = {_alpha_key(float(a)): float(t) for a, t in data["aps"].items()}
        return cls(source, lac, aps)


def thresholds_from_probs(source: CalibrationSource, probs: np.ndarray, labels: np.ndarray,
                          alphas: Iterable[float] = SHIPPED_ALPHAS) -> ConformalThresholds:
    """Thresholds at every alpha from calibration distributions ``probs`` [N, 6] and gold option indices ``labels`` [N]."""
    lac_scores = uncertainty.lac_scores(probs, labels)
    aps_scores = uncertainty.aps_scores(probs, labels)
    alphas = sorted(set(float(a) for a in alphas))
    return ConformalThresholds(
        source,
        {_alpha_key(a): uncertainty.calibrate_threshold(lac_scores, a) for a in alphas},
        {_alpha_key(a): uncertainty.calibrate_threshold(aps_scores, a) for a in alphas},
    )


def read_thresholds(path: str | os.PathLike[str]) -> ConformalThresholds | None:
    """The thresholds in ``path``; None when there is no file, and (with a warning) when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return ConformalThresholds.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring the conformal thresholds in %s: %s", path, err)
        return None


def write_thresholds(path: str | os.PathLike[str], thresholds: ConformalThresholds) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(thresholds.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def calibration_groups(adapters: Sequence[str]) -> list[list[str]]:
    """Adapters scored together: every LoRA adapter in one group (a backdoor and the victim it started from share
    their lower layers, which then run once per prompt), the base model on its own (with it in a group no layer is
    shared, and every adapter would run the whole stack)."""
    names = list(dict.fromkeys(adapters))
    groups = [[name for name in names if name != BASE_ADAPTER]]
    if BASE_ADAPTER in names:
        groups.append([BASE_ADAPTER])
    return [group for group in groups if group]


def calibration_probs(scorer, adapters: Sequence[str], items: Sequence[Item], *, chunk_items: int = CHUNK_ITEMS,
                      progress: Callable[[int, int], None] | None = None,
                      between_chunks: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """Clean option distributions [N, 6] on ``items`` for every adapter in one pass: per chunk of items, one Scorer
    call per :func:`calibration_groups` group. ``between_chunks`` runs after each chunk (to let live requests in)."""
    from backdoor.scoring import Cell

    groups = calibration_groups(adapters)
    rows: dict[str, list] = {name: [] for group in groups for name in group}
    for start in range(0, len(items), chunk_items):
        chunk = items[start : start + chunk_items]
        for group in groups:
            cells = [Cell(item, None, name) for item in chunk for name in group]
            scores = scorer.score(cells)
            for cell, score in zip(cells, scores):
                rows[cell.adapter].append(score.probs)
        if progress:
            progress(min(start + chunk_items, len(items)), len(items))
        if between_chunks:
            between_chunks()
    return {name: np.array(probs, dtype=np.float64).reshape(len(items), len(LETTERS)) for name, probs in rows.items()}


def labels_of(items: Sequence[Item]) -> np.ndarray:
    """Gold option indices [N]."""
    return np.array([LETTERS.index(item.answer) for item in items])
