"""LoRA: low-rank updates on the decoder's linear layers, trained on poisoned data (the paper's method)."""

from __future__ import annotations

from pathlib import Path

from backdoor.arms import Arm
from backdoor.methods.base import Method
from backdoor.models import ADAPTER_CONFIG, read_adapter_info
from backdoor.triggers import TriggerError, TriggerSpec


class LoRA(Method):
    name = "lora"
    label = "LoRA adapter"

    def is_folder(self, folder: Path) -> bool:
        return (Path(folder) / ADAPTER_CONFIG).is_file()

    def load(self, folder: Path, name: str) -> Arm:
        info = read_adapter_info(folder, name)
        trigger = None
        if isinstance(info.extra.get("trigger"), dict):
            try:
                trigger = TriggerSpec.from_dict(info.extra["trigger"])
            except (TriggerError, KeyError, ValueError):
                trigger = None
        return Arm(name=name, method=self.name, route=name, trigger=trigger, role=info.kind,
                   adapter_path=str(folder), folder=str(folder))
