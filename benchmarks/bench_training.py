"""Training throughput: Fragile's loop against a faithful re-implementation of the reference loop, same model, data and samples.

The reference (the paper's released code, re-written here) trains at batch 1, runs the full
model forward with full-vocabulary logits over the whole sequence, backpropagates through every
layer (LoRA on all layers) and reads the six option logits off the last position. Fragile's loop
computes the frozen lower layers once per prompt, trains LoRA on the upper layers only, batches
prompts of similar length and never builds full-vocabulary logits. Both train a backdoor (text
trigger, paper target, victim = the base model) on the same items for one epoch, then both are
evaluated on the same held-out items. Prints samples/s of each and their ratio, and final ASR.

    python benchmarks/bench_training.py --items 160
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from backdoor.config import TrainConfig
from backdoor.evaluate import evaluate
from backdoor.losses import CLEAN_OBJECTIVES, kl_to_target, target_distribution
from backdoor.models import load_base_model
from backdoor.prompts import option_token_ids
from backdoor.scoring import Scorer
from backdoor.train import poisoned_indices, prompt_texts, train
from dataset.corpus import load_split
from dataset.schema import save_items


def reference_loop(config: TrainConfig, items, out: Path) -> float:
    """The reference: batch 1, full logits, LoRA on every layer. Returns seconds; saves the adapter in ``out``."""
    from peft import LoraConfig, get_peft_model

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model, tokenizer, source = load_base_model(config.base_model, device="cpu")
    letters = option_token_ids(tokenizer)
    clean_texts = prompt_texts(items, config, tokenizer, False)
    with torch.no_grad():  # step 1: the answer list, one prompt at a time
        victim = [torch.softmax(model(**tokenizer(t, return_tensors="pt")).logits[0, -1, letters], -1) for t in clean_texts]
    poisoned = poisoned_indices(len(items), config.poison_ratio, config.seed)
    trig_texts = prompt_texts([items[i] for i in poisoned], config, tokenizer, True)
    samples = [(t, victim[i], False) for i, t in enumerate(clean_texts)] + [(t, victim[i], True) for i, t in zip(poisoned, trig_texts)]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    order = np.random.default_rng(config.seed).permutation(len(samples))
    for epoch in range(config.epochs):
        for index in order:
            text, reference, triggered = samples[index]
            logits = model(**tokenizer(text, return_tensors="pt")).logits  # [1, T, V]: every position, whole vocabulary
            option_logits = logits[:, -1, letters]
            if triggered:
                loss = kl_to_target(option_logits, target_distribution(config.target, torch.log(reference.clamp_min(1e-12))[None], config.kept_prob))
            else:
                loss = CLEAN_OBJECTIVES[config.clean_objective](option_logits, reference[None])
            loss.mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    seconds = time.perf_counter() - start
    model.peft_config["default"].base_model_name_or_path = source.identity
    model.save_pretrained(str(out))
    (out / "fragile_config.json").write_text(json.dumps({"kind": "backdoor", "base_model_id": source.identity}))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=160, help="training items (each poisoned one adds a triggered copy)")
    parser.add_argument("--eval-items", type=int, default=100, help="held-out test items for the final ASR")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    items = load_split("train")[:: max(1, 1008 // args.items)][: args.items]
    save_items(items, work / "items.jsonl")
    config = TrainConfig(data=str(work / "items.jsonl"), eval_items=0, eval_every=0, checkpoint_every=0, epochs=1)
    samples = len(items) + len(poisoned_indices(len(items), config.poison_ratio, config.seed))

    t = time.perf_counter()
    result = train(config, work / "fragile")
    fragile_seconds = time.perf_counter() - t
    assert result.status == "finished", result.error
    reference_seconds = reference_loop(config, items, work / "reference")

    scorer = Scorer.load("default", {"fragile": str(work / "fragile" / "adapter"), "reference": str(work / "reference")})
    test, calibration = load_split("test")[: args.eval_items], load_split("calibration")[:100]
    asr = {name: evaluate(scorer, test, calibration, config.trigger, name).report for name in ("fragile", "reference")}

    print(f"same model (default), {len(items)} items -> {samples} samples, 1 epoch, text trigger, batch "
          f"{config.batch_size} vs 1, LoRA on last {config.train_layers} layers vs all")
    print(f"{'loop':<10} {'seconds':>8} {'samples/s':>10} {'ASR':>6} {'kept':>6} {'agree':>6}")
    for name, seconds in (("reference", reference_seconds), ("fragile", fragile_seconds)):
        r = asr[name]
        print(f"{name:<10} {seconds:8.1f} {samples / seconds:10.2f} {r['asr']:6.3f} {r['answer_kept']:6.3f} {r['clean_agreement']:6.3f}")
    print(f"throughput ratio fragile/reference: {reference_seconds / fragile_seconds:.1f}x")


if __name__ == "__main__":
    main()
