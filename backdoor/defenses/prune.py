"""Fine-pruning adapted to LoRA: zero the LoRA ranks least active on clean items, optionally re-tune, and measure
the backdoor at each pruned fraction.

Algorithm (Liu et al., Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks, RAID 2018):
a backdoor tends to live in units that clean inputs leave dormant, so pruning the units least active on clean
data removes it at little clean cost, and fine-tuning on clean data afterwards repairs what pruning broke. Here
the units are the ranks of the suspect's LoRA: rank r of a module adds B[:, r] (A[r] x) to its output, so its
activity is mean |A[r] x| over every token of the defender's clean calibration prompts (forward hooks on each
``lora_A``, under the suspect adapter). Pruning a rank zeroes its row of ``lora_A`` and its column of
``lora_B``; a pruned adapter is a PEFT folder like any other (its ``fragile_config.json`` kept).

The ranking is per module: each module loses round(f * its rank) of its least active ranks. A global ranking
would compare activities on different scales (a rank's activity grows with its module's input norm, which
differs between q_proj and down_proj and between layers), so it would empty whole modules with small inputs
first: layer removal, not the paper's pruning of the dormant units within a layer.

With ``retune_steps``, the most pruned adapter is then re-tuned by :mod:`backdoor.defenses.retune` (its loop and
default settings) and measured as the curve's last point.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from backdoor.defenses.base import (REMOVE, ConfigError, Defense, DefenseResult, DefenseSetup, attach_adapter, measure,
                                    option, removal_report, removal_rows, work_folder)
from backdoor.defenses.retune import RetuneOptions, base_model_name, retune_adapter
from backdoor.layersplit import causal_lm_of

WEIGHTS = "adapter_model.safetensors"
KEPT_FILES = ("adapter_config.json", "fragile_config.json", "train_config.json")  # not conformal.json: it would be stale
ACTIVITY_ADAPTER = "suspect"


@dataclass(frozen=True)
class FinePruneOptions:
    """The prune defense's settings."""

    fractions: tuple[float, ...] = option((0.25, 0.5, 0.75, 0.9), "shares of each LoRA module's ranks to prune, the "
                                          "least active on clean items first; each in [0, 1)")
    retune_steps: int = option(0, "then re-tune the most pruned adapter for this many steps (clean re-tuning's loop "
                               "and settings; 0 = no re-tuning)", min=0, max=1000)


@torch.no_grad()
def rank_activity(model, adapter: str, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
    """Mean |A[r] x| of each rank r of each LoRA module of ``adapter`` in ``model`` over every token of ``prompts``
    (token ids, one unpadded forward each) -> {module name: [rank]}."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if isinstance(lora_a, torch.nn.ModuleDict) and adapter in lora_a:
            def add(_module, _inputs, output, name=name):  # output [1, T, rank]
                total = output.detach().abs().float().reshape(-1, output.shape[-1]).sum(0)
                sums[name] = sums[name] + total if name in sums else total
            hooks.append(lora_a[adapter].register_forward_hook(add))
    model.eval()
    decoder = getattr(causal_lm_of(model), "model", model)  # the layers only: the vocabulary head is not needed
    tokens = 0
    try:
        for ids in prompts:
            decoder(input_ids=torch.tensor([ids], device=next(model.parameters()).device))
            tokens += len(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (total / max(1, tokens)).cpu() for name, total in sums.items()}


def least_active(activity: dict[str, torch.Tensor], fraction: float) -> dict[str, list[int]]:
    """Per module, the round(fraction * rank) ranks of lowest activity (ties: the lower rank first)."""
    return {name: sorted(torch.argsort(values, stable=True)[:round(fraction * len(values))].tolist())
            for name, values in activity.items()}


def write_pruned(source: Path, target: Path, pruned: dict[str, list[int]]) -> Path:
    """A copy of the adapter in ``source`` at ``target`` with each module's ``pruned`` ranks zeroed (rows of
    lora_A, columns of lora_B); ValueError if its weights lack a module."""
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    weights = load_file(str(source / WEIGHTS))
    for module, ranks in pruned.items():
        down, up = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        if down not in weights or up not in weights:
            raise ValueError(f"{source / WEIGHTS} holds no LoRA weights for {module}")
        weights[down][ranks, :] = 0  # [rank, in]
        weights[up][:, ranks] = 0  # [out, rank]
    save_file(weights, str(target / WEIGHTS), metadata={"format": "pt"})
    return target


def suspect_activity(setup: DefenseSetup) -> dict[str, torch.Tensor]:
    """Each LoRA rank's activity under the suspect adapter on the clean calibration prompts, as the scorer renders
    them, on a fresh copy of the base model (the scorer's own serves live questions meanwhile)."""
    from backdoor.models import FRAGILE_CONFIG, attach_adapters, load_base_model

    folder = Path(setup.adapter_path)
    saved = json.loads((folder / FRAGILE_CONFIG).read_text()) if (folder / FRAGILE_CONFIG).is_file() else {}
    scorer = setup.scorer
    model, tokenizer, source = load_base_model(base_model_name(scorer, saved.get("config") or {}),
                                               device=str(scorer.device))
    model = attach_adapters(model, {ACTIVITY_ADAPTER: folder}, base_identity=source.identity)
    model.set_adapter(ACTIVITY_ADAPTER)
    prompts = [tokenizer(scorer.model_text(scorer.render(item, None).text))["input_ids"]
               for item in setup.calibration]
    return rank_activity(model, ACTIVITY_ADAPTER, prompts)


class FinePrune(Defense):
    name = "prune"
    label = "fine-pruning of LoRA ranks"
    kind = REMOVE
    source = "Liu et al., Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks, RAID 2018"
    options = FinePruneOptions
    trains = True

    def check_options(self, options: FinePruneOptions) -> None:
        if not options.fractions:
            raise ConfigError("fractions: needs at least one fraction in [0, 1)")
        outside = [f for f in options.fractions if not 0 <= f < 1]
        if outside:
            raise ConfigError(f"fractions: {outside[0]} is outside [0, 1)")

    def run(self, setup: DefenseSetup) -> DefenseResult:
        start = time.time()
        options = setup.options
        fractions = sorted({f for f in options.fractions if f > 0})  # 0 is the curve's first point
        total = 1 + len(fractions) + options.retune_steps

        def progress(done: int, _total: int = 0) -> None:
            if setup.progress:
                setup.progress(done, total)

        work = work_folder(setup, self.name)
        curve = [{"x": 0, **measure(setup, setup.adapter)}]
        rows = removal_rows(setup, setup.adapter, 0)
        activity = suspect_activity(setup)
        progress(1)
        ranks = sum(len(values) for values in activity.values())
        pruned_counts, status, folder = {}, "finished", None
        for count, fraction in enumerate(fractions, start=1):
            if setup.should_stop():
                status = "cancelled"
                break
            pruned = least_active(activity, fraction)
            pruned_counts[str(fraction)] = sum(len(r) for r in pruned.values())
            folder = write_pruned(Path(setup.adapter_path), work / f"fraction-{fraction:g}", pruned)
            arm = attach_adapter(setup, folder, self.name)
            curve.append({"x": fraction, **measure(setup, arm)})
            rows += removal_rows(setup, arm, fraction)
            progress(1 + count)
        if options.retune_steps and folder is not None and status == "finished":
            steps = options.retune_steps
            status, adapters = retune_adapter(setup, folder, work / "retune", RetuneOptions(steps=steps, at=(steps,)),
                                              lambda done, _: progress(1 + len(fractions) + done))
            if steps in adapters:
                arm = attach_adapter(setup, adapters[steps], self.name)
                curve.append({"x": fractions[-1], "retune_steps": steps, **measure(setup, arm)})
                rows += [{**row, "retune_steps": steps} for row in removal_rows(setup, arm, fractions[-1])]
        return DefenseResult(removal_report(self, setup, "fraction pruned", curve, time.time() - start, status=status,
                                            ranking="per module", ranks=ranks, pruned=pruned_counts), rows)
