"""What every attack method provides: its options, its training hooks, and loading a saved folder as an arm."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from backdoor.arms import Arm


class Method:
    """One way of planting a change in a model. Subclasses set ``name``, ``label`` and ``options`` (a frozen
    dataclass mixed into :class:`backdoor.config.TrainConfig`: its field metadata gives help, bounds, choices
    and when the form shows the field) and implement the hooks the training loop calls."""

    name: ClassVar[str]
    label: ClassVar[str]

    def is_folder(self, folder: Path) -> bool:
        """Whether ``folder`` holds a saved arm of this method."""
        raise NotImplementedError

    def load(self, folder: Path, name: str) -> Arm:
        """The arm saved in ``folder``, called ``name``; ModelLoadError naming the folder if it cannot be read."""
        raise NotImplementedError
