"""Training throughput: Fragile's loop against a faithful re-implementation of the reference loop, same model, data and samples.

The reference (the paper's released code, re-written here) trains at batch 1, runs the full
model forward with full-vocabulary logits over the whole sequence, backpropagates through every
layer (LoRA on all layers) and reads the six option logits off the last position. Fragile's loop
computes the frozen lower layers once per prompt, trains LoRA on the upper layers only, batches
prompts of similar length and never builds full-vocabulary logits. Both train a backdoor (text
trigger, paper target, victim = the base model) on the same items for one epoch, then both are
evaluated on the same held-out items. Prints samples/s of each and their ratio, and final ASR.

With ``--train-layers 0`` Fragile's loop puts LoRA on every layer too, and a third run shows what
packing prompts as token trees is worth there: the same loop on padded batches of full forwards
(what an architecture without the layer split gets).

The prompt-tuning backdoor (``--method prompt``) trains in the same loop on the same samples, in the same run:
its soft prompt sits at the embeddings, so every layer runs forward and backward at every step (packed as token
trees, nothing computed once below it), against LoRA's upper layers only.

    python benchmarks/bench_training.py --items 160
    python benchmarks/bench_training.py --items 40 --train-layers 0
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
    parser.add_argument("--train-layers", type=int, default=TrainConfig.train_layers,
                        help="Fragile's LoRA on the last N layers (0 = every layer, and a padded full-forward run beside it)")
    parser.add_argument("--prompt-learning-rate", type=float, default=3e-2,
                        help="the prompt-tuning run's learning rate (a soft prompt needs a larger one than LoRA)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    items = load_split("train")[:: max(1, 1008 // args.items)][: args.items]
    save_items(items, work / "items.jsonl")
    config = TrainConfig(data=str(work / "items.jsonl"), eval_items=0, eval_every=0, checkpoint_every=0, epochs=1,
                         train_layers=args.train_layers)
    samples = len(items) + len(poisoned_indices(len(items), config.poison_ratio, config.seed))

    seconds = {}
    t = time.perf_counter()
    result = train(config, work / "fragile")
    seconds["fragile"] = time.perf_counter() - t
    assert result.status == "finished", result.error
    if not config.train_layers:  # the same loop without token trees: padded full forwards
        import backdoor.methods.lora

        packs = backdoor.methods.lora.supports_split
        backdoor.methods.lora.supports_split = lambda model: False
        try:
            t = time.perf_counter()
            result = train(config, work / "padded")
            seconds["padded"] = time.perf_counter() - t
        finally:
            backdoor.methods.lora.supports_split = packs
        assert result.status == "finished", result.error
    t = time.perf_counter()
    result = train(config.replace(method="prompt", learning_rate=args.prompt_learning_rate), work / "prompt")
    seconds["prompt"] = time.perf_counter() - t
    assert result.status == "finished", result.error
    seconds["reference"] = reference_loop(config, items, work / "reference")

    folders = {name: str(work / name / "adapter") for name in seconds if name != "reference"}
    scorer = Scorer.load("default", {**folders, "reference": str(work / "reference")})
    test, calibration = load_split("test")[: args.eval_items], load_split("calibration")[:100]
    asr = {name: evaluate(scorer, test, calibration, config.trigger, name).report for name in seconds}

    layers = f"last {config.train_layers} layers" if config.train_layers else "every layer"
    print(f"same model (default), {len(items)} items -> {samples} samples, 1 epoch, text trigger, batch "
          f"{config.batch_size} vs 1, LoRA on {layers} vs all")
    print(f"{'loop':<10} {'seconds':>8} {'samples/s':>10} {'ASR':>6} {'kept':>6} {'agree':>6}")
    for name in ("reference", "padded", "fragile", "prompt"):
        if name in seconds:
            r = asr[name]
            print(f"{name:<10} {seconds[name]:8.1f} {samples / seconds[name]:10.2f} {r['asr']:6.3f} {r['answer_kept']:6.3f} "
                  f"{r['clean_agreement']:6.3f}")
    print(f"throughput ratio fragile/reference: {seconds['reference'] / seconds['fragile']:.1f}x")
    print(f"samples/s prompt tuning / LoRA (same loop, same samples): {seconds['fragile'] / seconds['prompt']:.2f}x")
    if "padded" in seconds:
        print(f"throughput ratio fragile/padded (token trees with LoRA on every layer): {seconds['padded'] / seconds['fragile']:.2f}x")


if __name__ == "__main__":
    main()
