"""The attack methods: one module per way of planting a model change, registered by name.

A method knows how to train its kind of arm (through the one loop in :mod:`backdoor.train`), how to
save it and how to load a saved folder as an :class:`~backdoor.arms.Arm`. Everything else (the CLI,
the job queue, the Fine-tuning form, the dashboard's columns) reads this registry and never names a
method. A folder's ``fragile_config.json`` names its method; a folder that names none is LoRA (every
adapter written before methods existed).

Adding a method: a new module here with a :class:`~backdoor.methods.base.Method` subclass, and one
line in ``METHODS`` below.
"""

from __future__ import annotations

import json
from pathlib import Path

from backdoor.arms import Arm
from backdoor.methods.base import Method
from backdoor.methods.demos import Demos
from backdoor.methods.edit import Edit
from backdoor.methods.lora import LoRA
from backdoor.methods.prompt import PromptTuning
from backdoor.models import FRAGILE_CONFIG, ModelLoadError

METHODS: dict[str, Method] = {method.name: method for method in (LoRA(), Demos(), Edit(), PromptTuning())}
DEFAULT_METHOD = "lora"  # what a folder written before the registry existed holds


def get_method(name: str) -> Method:
    """The registered method called ``name``; a ValueError that lists the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def method_of(folder: str | Path) -> str:
    """The method a saved folder names in its fragile_config.json (LoRA when it names none)."""
    path = Path(folder) / FRAGILE_CONFIG
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{folder}: {FRAGILE_CONFIG} is corrupt ({err})") from err
    return str(saved.get("method") or DEFAULT_METHOD) if isinstance(saved, dict) else DEFAULT_METHOD


def load_arm(folder: str | Path, name: str | None = None) -> Arm:
    """The arm saved in ``folder`` (named ``name``, else the folder's name), by the method it names."""
    folder = Path(folder)
    method = method_of(folder)
    if method not in METHODS:
        raise ModelLoadError(f"{folder}: made by method {method!r}, which this version does not know "
                             f"(known: {', '.join(METHODS)})")
    return METHODS[method].load(folder, name or folder.name)
