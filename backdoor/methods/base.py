"""What every attack method provides: its options, its training hooks, and loading a saved folder as an arm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backdoor.arms import Arm
from backdoor.models import FRAGILE_CONFIG

if TYPE_CHECKING:
    from backdoor.config import TrainConfig
    from backdoor.train import TrainResult

TRAIN_ADAPTER = "default"  # the PEFT adapter name the trained part sits under while training
VICTIM_ADAPTER = "victim"  # the victim's adapter, attached beside it when a run keeps a victim's answers


class Method:
    """One way of planting a change in a model. Subclasses set ``name``, ``label`` and ``options`` (a frozen
    dataclass of :func:`~backdoor.methods.options.option` fields mixed into :class:`backdoor.config.TrainConfig`:
    their metadata gives help, bounds, choices and when the form shows the field) and implement the hooks the
    training loop in :mod:`backdoor.train` calls, in this order: ``first_trained_layer``, ``add_trainable``,
    then ``state``/``load_state`` for checkpoints and ``save`` for the finished arm."""

    name: ClassVar[str]
    label: ClassVar[str]
    options: ClassVar[type]
    victim_fitted: ClassVar[tuple[str, ...]] = ()  # the options ``fitted_to_victim`` may fill in
    # False for a method that plants nothing in the weights (a prompt-only arm): it has no trainable part, so the
    # training hooks are not called and the contract checks that its fit changed no tensor instead.
    trains_weights: ClassVar[bool] = True

    # --- before any heavy work -------------------------------------------------------------------

    def check_options(self, config: "TrainConfig") -> None:
        """Refuse impossible values of this method's options (ConfigError naming the field); bounds in the
        field metadata are checked by the config itself."""

    def check(self, config: "TrainConfig") -> None:
        """Refuse a run this method cannot do with ``config`` (e.g. a victim it cannot start from), before
        anything loads; ConfigError naming the field and what to pass instead."""

    def fitted_to_victim(self, victim: str | Path, config: "TrainConfig | None" = None) -> dict[str, Any]:
        """The option values a run on ``victim`` (an adapter folder) must use, by field name; with a ``config``,
        only those that config needs. Empty when the victim fixes nothing or cannot be read."""
        return {}

    # --- the training loop's hooks -----------------------------------------------------------------

    def first_trained_layer(self, config: "TrainConfig", model) -> int | None:
        """The decoder layer where the trainable part starts (0: the embeddings), so the loop runs the
        layers below once per prompt; None to run full forwards. ConfigError for settings this model refuses."""
        raise NotImplementedError

    def add_trainable(self, model, config: "TrainConfig", split: int | None):
        """The model with the trainable part created under :data:`TRAIN_ADAPTER` and active, and exactly its
        parameters requiring gradients. A victim adapter, if the run has one, is attached as :data:`VICTIM_ADAPTER`."""
        raise NotImplementedError

    def leading_ids(self, model) -> list[int]:
        """Token ids the trainable part puts before every prompt it reads (a soft prompt's virtual tokens, see
        :func:`backdoor.layersplit.embed`); the loop adds them to its encoded prompts. None by default."""
        return []

    def state(self, model) -> dict:
        """The trained part's tensors by name (what a checkpoint holds)."""
        raise NotImplementedError

    def load_state(self, model, state: dict) -> None:
        """Put tensors from :meth:`state` back into the trained part (resuming from a checkpoint)."""
        raise NotImplementedError

    def save(self, model, config: "TrainConfig", identity: str, folder: Path, extra: dict | None = None) -> None:
        """Write the trained arm to ``folder``: its weights and ``fragile_config.json`` (naming this method)."""
        raise NotImplementedError

    def record(self, config: "TrainConfig", identity: str, folder: Path, extra: dict | None = None) -> None:
        """Write what every saved arm carries beside its weights: ``fragile_config.json`` (its role, this method,
        the base model, trigger, prompt format, the whole config and ``extra``) and ``train_config.json``."""
        fragile = {
            "kind": config.kind,
            "method": self.name,
            "base_model_id": identity,
            "trigger": config.trigger.to_dict() if config.kind == "backdoor" else None,
            "style": config.style,
            "chat": config.chat,
            "config": config.to_dict(),
            **(extra or {}),
        }
        (Path(folder) / FRAGILE_CONFIG).write_text(json.dumps(fragile, indent=2) + "\n")
        config.save(Path(folder) / "train_config.json")

    # --- the model card ----------------------------------------------------------------------------

    def card_lines(self, folder: Path, fragile: dict) -> list[str]:
        """The model card's lines on how this method planted its change (after the trigger line): by default
        the training loop's data and schedule; a method adds what its arm is made of."""
        config = fragile.get("config", {})
        return [f"- data: `{config.get('data')}` ({fragile.get('train_items', '?')} items), epochs "
                f"{config.get('epochs')}, batch {config.get('batch_size')}, learning rate {config.get('learning_rate')}"]

    def fit(self, config: "TrainConfig", out_dir, **kwargs) -> "TrainResult":
        """Train this method's arm into ``out_dir`` through the one training loop (keyword arguments as
        :func:`backdoor.train.train` takes them)."""
        from backdoor.train import train

        return train(config.replace(method=self.name), out_dir, **kwargs)

    # --- loading ------------------------------------------------------------------------------------

    def is_folder(self, folder: Path) -> bool:
        """Whether ``folder`` holds a saved arm of this method."""
        raise NotImplementedError

    def load(self, folder: Path, name: str) -> Arm:
        """The arm saved in ``folder``, called ``name``; ModelLoadError naming the folder if it cannot be read."""
        raise NotImplementedError
