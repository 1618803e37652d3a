"""The six-option item of LLM-Uncertainty-Bench, its validation, and JSON / JSONL reading and writing.

An item has an id, a source, one of five tasks, a context (may be empty), a question, six
choices A-F (E is "I don't know", F is "None of the above") and the letter of the answer.
Malformed input is reported with the file, the item's index, the field and what is wrong;
nothing is dropped or repaired silently.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")
OPTION_E = "I don't know"
OPTION_F = "None of the above"

# Canonical task names as the benchmark writes them, with the short codes people type.
TASKS: dict[str, str] = {
    "question answering": "qa",
    "reading comprehension": "rc",
    "commonsense inference": "ci",
    "dialogue response selection": "drs",
    "document summarization": "ds",
}
_TASK_ALIASES: dict[str, str] = {
    **{name: name for name in TASKS},
    **{code: name for name, code in TASKS.items()},
    "document summarisation": "document summarization",
    "dialogue": "dialogue response selection",
    "summarization": "document summarization",
}


class DatasetError(ValueError):
    """A dataset file or item is malformed; the message names where and what."""


def canonical_task(name: str) -> str:
    """Map a task name or short code (``qa``, ``rc``, ``ci``, ``drs``, ``ds``) to its canonical name."""
    key = str(name).strip().lower()
    if key not in _TASK_ALIASES:
        raise DatasetError(
            f"unknown task {name!r}; expected one of {sorted(TASKS)} or a code {sorted(TASKS.values())}"
        )
    return _TASK_ALIASES[key]


@dataclass(frozen=True)
class Item:
    """One six-option multiple-choice item."""

    id: str
    source: str
    task: str
    context: str
    question: str
    choices: Mapping[str, str] = field(hash=False)
    answer: str

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "task": self.task,
            "context": self.context,
            "question": self.question,
            "choices": {letter: self.choices[letter] for letter in LETTERS},
            "answer": self.answer,
        }

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]


def _validate(item: Item) -> None:
    def fail(field_name: str, problem: str) -> None:
        raise DatasetError(f"item {item.id!r}: field '{field_name}' {problem}")

    if not isinstance(item.id, str) or not item.id.strip():
        fail("id", "must be a non-empty string")
    if item.task not in TASKS:
        fail("task", f"is {item.task!r}; expected one of {sorted(TASKS)}")
    for name in ("source", "context", "question"):
        if not isinstance(getattr(item, name), str):
            fail(name, "must be a string")
    if not item.question.strip():
        fail("question", "is empty; every item needs a question")
    if not isinstance(item.choices, Mapping):
        fail("choices", "must be an object with keys A-F")
    missing = [letter for letter in LETTERS if letter not in item.choices]
    if missing:
        fail("choices", f"is missing option(s) {', '.join(missing)}; six options A-F are required")
    extra = sorted(set(item.choices) - set(LETTERS))
    if extra:
        fail("choices", f"has unexpected key(s) {extra}; only A-F are allowed")
    for letter in LETTERS:
        text = item.choices[letter]
        if not isinstance(text, str) or not text.strip():
            fail(f"choices.{letter}", "is empty; every option needs text")
    if item.answer not in LETTERS:
        fail("answer", f"is {item.answer!r}; expected one letter A-F")


def item_from_dict(raw: Mapping[str, Any], *, where: str = "item") -> Item:
    """Build an :class:`Item` from a benchmark-style dict; errors are prefixed with ``where``."""
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: expected an object, got {type(raw).__name__}")
    for key in ("question", "choices", "answer"):
        if key not in raw:
            raise DatasetError(f"{where}: field '{key}' is missing")
    try:
        task = canonical_task(raw.get("task", ""))
    except DatasetError as err:
        raise DatasetError(f"{where}: field 'task' {err}") from None
    choices = raw["choices"]
    if isinstance(choices, Mapping):
        choices = {str(k).strip().upper(): v for k, v in choices.items()}
    try:
        return Item(
            id=str(raw.get("id", "")).strip(),
            source=str(raw.get("source", "")),
            task=task,
            context=raw.get("context") or "",
            question=raw["question"] if isinstance(raw["question"], str) else str(raw["question"]),
            choices=choices,
            answer=str(raw["answer"]).strip().upper(),
        )
    except DatasetError as err:
        raise DatasetError(f"{where}: {err}") from None


def load_items(path: str | os.PathLike[str]) -> list[Item]:
    """Read items from a ``.json`` list or a ``.jsonl`` file, validating every one.

    Raises DatasetError naming the file, the item index and the field for malformed input,
    and for duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file; pass a .json or .jsonl file of six-option items")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a text file (byte {err.start} is not UTF-8); pass a .json or .jsonl file "
                           "of six-option items") from None
    records: list[Any]
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            records = loaded["items"] if isinstance(loaded, dict) and "items" in loaded else loaded
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of items")
    items = [item_from_dict(raw, where=f"{path} item {index}") for index, raw in enumerate(records)]
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise DatasetError(f"{path} item {index}: field 'id' {item.id!r} repeats item {seen[item.id]}")
        seen[item.id] = index
    if not items:
        raise DatasetError(f"{path}: holds no items")
    return items


def save_items(items: Iterable[Item], path: str | os.PathLike[str]) -> Path:
    """Write items atomically as ``.json`` (a list) or ``.jsonl``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [item.to_dict() for item in items]
    if path.suffix == ".jsonl":
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dicts)
    else:
        payload = json.dumps(dicts, ensure_ascii=False, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(payload)
    os.chmod(tmp, 0o644)  # mkstemp makes the file private; corpus files are read by other users (a Space runs as uid 1000)
    os.replace(tmp, path)
    return path
