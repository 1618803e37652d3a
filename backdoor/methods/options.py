"""What a training option is: a dataclass field whose metadata says everything the CLI and the form need.

``option(default, help, ...)`` makes the field; its metadata holds the help text, bounds (``min``,
``max``), the registry its value is picked from (``choices``), whether the form shows it open
(``basic``), the form's default where it differs (``form_default``) and when the form shows it at
all (``shows``: other fields' values, e.g. ``{"kind": "backdoor"}`` or ``{"method": "lora"}``).
:class:`backdoor.config.TrainConfig` is made of these fields: its own and every method's options.
Nothing here imports a method or the config, so both can import it.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config value is impossible; the message names the field."""


def option(default: Any, help: str, *, shows: Mapping[str, str] | None = None, **meta: Any):
    """A config field with its help text and the metadata named in the module docstring."""
    metadata = {"help": help, **meta}
    if shows:
        metadata["shows"] = dict(shows)
    return field(default=default, metadata=metadata)


def shown(metadata: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether a field with this metadata applies given the other fields' ``values`` (every ``shows`` entry matches)."""
    return all(values.get(name) == wanted for name, wanted in (metadata.get("shows") or {}).items())
