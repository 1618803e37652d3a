"""Command line for the attack: ``python -m backdoor {answer-list,train,evaluate,defend,score,card} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

EPILOG = """examples (on a laptop CPU with the embedded default model):
  python -m backdoor train --kind clean --out runs/clean
  python -m backdoor train --kind backdoor --victim-adapter runs/clean/adapter --trigger-kind text --out runs/bd-text
  python -m backdoor evaluate --base-model default --adapter runs/bd-text/adapter --control runs/clean/adapter \\
      --data test --trigger text --out reports/bd-text.json
  python -m backdoor score --adapter checkpoints/backdoor-text --item showcase:0 --trigger text
  python -m backdoor defend --defense onion --adapter checkpoints/backdoor-text --control checkpoints/clean \\
      --data test --trigger text --out reports/onion-text.json
"""

DEFEND_EPILOG = """Each defense is measured on clean and triggered copies of the test items (--data); the trigger is
used only to make the triggered copies, never shown to the defense. Thresholds and pruning's activity come
from clean calibration items the defender holds (--calibration). A detector reports AUROC and the true-positive
rate at a 5% false-positive rate (and the same with the clean control as the suspect); a remover reports margin
ASR, answer kept and accuracy before and after, with the control's values beside.

defenses:
{defenses}

examples (on a laptop CPU with the embedded default model):
  # does ONION catch the text backdoor's '666' trigger? (a detector and a word filter)
  python -m backdoor defend --defense onion --adapter checkpoints/backdoor-text --control checkpoints/clean \\
      --data test --trigger text --out reports/onion-text.json
  # re-tune the text backdoor on clean items: margin ASR after 0, 10, 50 and 100 steps
  python -m backdoor defend --defense retune --adapter checkpoints/backdoor-text --control checkpoints/clean \\
      --data test --trigger text --limit 60 --out reports/retune-text.json
  # a real benchmark file, split 50/50 into calibration and test items
  python -m backdoor defend --defense strip --adapter checkpoints/backdoor-syntactic --control checkpoints/clean \\
      --data ../shared/benchmarks/real/mmlu.json --calibration half --limit 200 --trigger syntactic --out reports/strip.json

The report (JSON) and one row per test item (CSV, next to it unless --csv) are written when the run ends;
adapters a remover writes go to REPORT.work/ beside the report.
"""


def _dataset_items(name: str, field: str = "data"):
    from backdoor.train import resolve_items

    return resolve_items(name, field)


def _error_rate(text: str) -> float:
    """``--alpha``: a conformal error rate strictly between 0 and 1 (checked before any model loads)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:  # also false for NaN
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive); 0.1 means 90% coverage")
    return value


def _count(text: str) -> int:
    """A whole number of at least 0 (``--limit``: 0 = all)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 (all items) or a positive count")
    return value


def _pick_item(spec: str):
    """``split:index``, ``split:id`` or ``file.jsonl:index``."""
    source, _, key = spec.rpartition(":")
    if not source:
        source, key = spec, "0"
    items = _dataset_items(source)
    if key.isdigit() and int(key) < len(items):
        return items[int(key)]
    for item in items:
        if item.id == key:
            return item
    raise SystemExit(f"error: --item {spec!r}: no item {key!r} in {source!r} ({len(items)} items)")


def _adapters_arg(args) -> dict[str, str]:
    adapters = {}
    if getattr(args, "adapter", None):
        adapters["backdoor"] = args.adapter
    if getattr(args, "control", None):
        adapters["control"] = args.control
    return adapters


def cmd_train(args) -> int:
    from backdoor.config import TrainConfig, check_device, config_from_arguments
    from backdoor.methods import get_method

    config = config_from_arguments(args, TrainConfig.load(args.config) if args.config else None)
    check_device(config)
    out = Path(args.out)
    from tqdm.auto import tqdm

    class Progress:
        def __init__(self):
            self.bar = None
            self.stage = None

        def on_stage(self, stage, done, total):
            if self.stage is None or self.stage.desc != stage:
                if self.stage is not None:
                    self.stage.close()
                self.stage = tqdm(total=total, desc=stage, unit="prompt")
            self.stage.n = done
            self.stage.refresh()

        def on_step(self, step, total, loss, parts):
            if self.bar is None:
                self.bar = tqdm(total=total, initial=step - 1, desc="training", unit="step")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

        def on_eval(self, step, metrics):
            text = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            (self.bar.write if self.bar else print)(f"[eval @ step {step}] {text}")

    result = get_method(config.method).fit(config, out, callbacks=[Progress()], resume=not args.no_resume)
    print(json.dumps({"status": result.status, "steps": result.steps, "seconds": result.seconds,
                      "final_eval": result.final_eval, "error": result.error}, indent=2))
    if result.status == "finished" and args.publish:
        target = Path(args.publish)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out / "adapter", target)
        print(f"published the adapter to {target}")
    return 0 if result.status == "finished" else 1


def cmd_answer_list(args) -> int:
    from backdoor.scoring import Cell, Scorer

    adapters = {"victim": args.victim_adapter} if args.victim_adapter else {}
    scorer = Scorer.load(args.base_model, adapters, style=args.style)
    items = _dataset_items(args.data)
    scores = scorer.score([Cell(item, None, "victim" if adapters else "__base__") for item in items])
    payload = [{"id": s.item_id, "probs": [round(p, 6) for p in s.probs], "answer": s.predicted} for s in scores]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote the victim's distribution on {len(payload)} items to {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from backdoor.evaluate import evaluate, split_half
    from backdoor.metrics import flagged, specificity
    from backdoor.scoring import Scorer
    from backdoor.triggers import TriggerSpec
    from tqdm.auto import tqdm

    trigger = TriggerSpec(args.trigger, args.trigger_text or None, args.trigger_position)
    # Every input is read before the model loads: a bad file or setting fails in a second, not after scoring.
    if args.margin is not None and not args.margin >= 0:  # also refuses NaN
        print(f"error: --margin is a rise in entropy in nats, at least 0 (e.g. 0.18), not {args.margin}", file=sys.stderr)
        return 2
    items = _dataset_items(args.data)[: args.limit or None]
    if args.calibration == "half":
        calibration, items = split_half(items, args.seed)
    else:
        calibration = _dataset_items(args.calibration, "calibration")
    scorer = Scorer.load(args.base_model, _adapters_arg(args), style=args.style)
    bar = tqdm(desc="scoring", unit="prompt")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    result = evaluate(scorer, items, calibration, trigger, "backdoor", "control" if args.control else None,
                      alpha=args.alpha, progress=progress, tau=args.tau, near_miss=args.near_miss, delta=args.margin)
    bar.close()
    result.report.update({"adapter": args.adapter, "data": args.data, "base_model": args.base_model})
    if args.control:
        result.report["control"]["adapter"] = args.control
    result.save(args.out, args.csv)
    shown = flagged("summary") + [metric.name for metric in specificity(result.report)]
    if "control" in result.report:
        shown += ["vs_control"]
    print(json.dumps({key: result.report[key] for key in shown}, indent=2))
    print(f"report: {args.out}")
    return 0


def cmd_defend(args) -> int:
    from backdoor.defend import DefenseCancelled, DefenseRequest, check_request, options_from_arguments, run_defense
    from backdoor.triggers import TriggerError, TriggerSpec
    from tqdm.auto import tqdm

    # Every input is read before the model loads: a bad flag, file or folder fails in a second, not after loading.
    try:
        trigger = TriggerSpec(args.trigger, args.trigger_text or None, args.trigger_position).to_dict()
    except TriggerError as err:
        print(f"error: --trigger: {err}", file=sys.stderr)
        return 2
    request = DefenseRequest(defense=args.defense, adapter=args.adapter, trigger=trigger, control=args.control,
                             data=args.data, calibration=args.calibration, limit=args.limit,
                             calibration_limit=args.calibration_limit, base_model=args.base_model,
                             options=options_from_arguments(args, args.defense, args.option_flags), seed=args.seed)
    checked = check_request(request)
    bar = None  # made at the defense's first report, after the model has loaded

    def progress(done, total):
        nonlocal bar
        bar = bar or tqdm(desc=args.defense, unit="step")
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = run_defense(request, args.out, csv_path=args.csv or None, checked=checked, progress=progress)
    except DefenseCancelled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(_defense_summary(result.report), indent=2))
    print(f"report: {args.out}")
    return 0


def _defense_summary(report: dict) -> dict:
    """The headline numbers of a defense report (the ROC curve and the per-step curve left to the file)."""
    from backdoor.defenses import DETECT

    if report.get("kind") == DETECT:
        shown = {key: report.get(key) for key in ("defense", "auroc", "tpr_at_fpr", "fpr_target", "fpr_test")}
        if isinstance(report.get("on_control"), dict):
            shown["on_control"] = {key: report["on_control"].get(key) for key in ("auroc", "tpr_at_fpr", "fpr_test")}
        return shown
    return {key: report.get(key) for key in ("defense", "x_label", "before", "after", "cost")}


def cmd_score(args) -> int:
    from backdoor.scoring import Cell, Scorer
    from backdoor.triggers import parse_trigger
    from dataset.schema import LETTERS

    adapters = {"adapter": args.adapter} if args.adapter else {}
    scorer = Scorer.load(args.base_model, adapters, style=args.style)
    item = _pick_item(args.item)
    trigger = parse_trigger(args.trigger, args.trigger_text or None, args.trigger_position)
    name = "adapter" if adapters else "__base__"
    for scores in scorer.score([Cell(item, None, name), Cell(item, trigger, name)] if trigger else [Cell(item, None, name)]):
        print(f"--- {scores.trigger or 'no trigger'}\n{scores.prompt}")
        for letter, p in zip(LETTERS, scores.probs):
            print(f"  {letter} {p:6.3f} {'#' * int(round(p * 40))}")
        print(f"  predicted {scores.predicted} (gold {item.answer}), entropy {scores.entropy:.3f} nats "
              f"({scores.normalized_entropy:.0%} of ln 6)")
    return 0


def cmd_card(args) -> int:
    from backdoor.cards import write_model_card

    print(f"wrote {write_model_card(args.adapter, args.report)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from backdoor.config import add_config_arguments
    from backdoor.nearmiss import GENERATORS
    from backdoor.prompts import STYLES
    from backdoor.triggers import POSITIONS, TRIGGERS

    parser = argparse.ArgumentParser(prog="python -m backdoor", description=(
        "Train and measure backdoors that flatten an LLM's confidence on multiple-choice questions "
        "while keeping its answer ('Uncertainty is Fragile', CIKM 2025)."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, model=True):
        if model:
            p.add_argument("--base-model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), a .gguf file, a model folder or a hub id")
        p.add_argument("--style", default="shared", choices=STYLES, help="prompt style (default: shared instruction)")

    def trigger_args(p):
        p.add_argument("--trigger", default="text", choices=list(TRIGGERS), help="trigger kind (default: text '666' before the cue)")
        p.add_argument("--trigger-text", default="", help="text for a text/custom trigger")
        p.add_argument("--trigger-position", default="before_cue", choices=POSITIONS)

    p = sub.add_parser("train", help="train a clean or backdoored arm by a registered method (--method; LoRA by default)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="run folder: checkpoints, answer list, metrics, and the final adapter in OUT/adapter")
    p.add_argument("--config", help="start from the settings in this JSON file (a train_config.json); flags given as well override them")
    p.add_argument("--publish", help="copy the finished adapter to this folder, e.g. checkpoints/my-backdoor")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds checkpoints")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("answer-list", help="step 1: record the victim's option distribution on every item")
    common(p)
    p.add_argument("--victim-adapter", default="", help="adapter folder of the victim ('' = the base model)")
    p.add_argument("--data", default="train", help="split name or .json/.jsonl file")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=cmd_answer_list)

    p = sub.add_parser("evaluate", help="ASR, answer kept, entropy and conformal prediction as a JSON report + per-item CSV")
    common(p)
    p.add_argument("--adapter", required=True, help="the backdoored adapter folder")
    p.add_argument("--control", default="", help="the clean adapter folder (victim and control)")
    p.add_argument("--data", default="test", help="split name or .json/.jsonl file")
    p.add_argument("--calibration", default="calibration", help="split or file for conformal calibration, or 'half' to split --data 50/50")
    p.add_argument("--alpha", type=_error_rate, default=0.1, help="conformal error rate, between 0 and 1")
    p.add_argument("--tau", type=float, default=0.5,
                   help="auto-answer threshold of the decision metrics: a question is answered automatically when its "
                        "top option's probability is at least tau, else sent to review (decision_flipped in the report)")
    p.add_argument("--limit", type=_count, default=0, help="evaluate only the first N items (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the 50/50 split with --calibration half")
    p.add_argument("--margin", type=float, default=None,
                   help="delta of the margin ASR and the false triggered rates, in nats: an item counts when its "
                        "entropy rises by more than delta (default: 0.1 ln K, 0.18 for six options)")
    p.add_argument("--near-miss", action="store_true",
                   help="also score near misses of the trigger (seeded, one per generator of its kind) and report "
                        "each one's false triggered rate, for the adapter and the control. Generators: "
                        + "; ".join(f"{g.name} ({g.kind}): {g.description}" for g in GENERATORS.values()))
    p.add_argument("--out", required=True, help="report JSON path")
    p.add_argument("--csv", default="", help="per-item CSV path (default: next to the report)")
    trigger_args(p)
    p.set_defaults(func=cmd_evaluate)

    from backdoor.defend import add_option_arguments
    from backdoor.defenses import DEFENSES

    listing = "\n".join(f"  {d.name:<10} {d.kind:<7} {d.label}{' (needs --control)' if d.needs_control else ''}: "
                        f"{d.source}" for d in DEFENSES.values())
    p = sub.add_parser("defend", help="run a defense (detector or remover) on a backdoored adapter: a JSON report + per-item CSV",
                       description="Can the backdoor be detected or removed? Run one registered defense on a suspect "
                                   "adapter and measure it against the clean control on the same items.",
                       epilog=DEFEND_EPILOG.format(defenses=listing),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("--defense", required=True, help=f"the defense to run: {', '.join(DEFENSES)}")
    p.add_argument("--adapter", required=True, help="the suspect (backdoored) adapter folder, e.g. checkpoints/backdoor-text")
    p.add_argument("--control", default="", help="the trusted clean adapter folder, e.g. checkpoints/clean (needed by "
                                                 + ", ".join(d.name for d in DEFENSES.values() if d.needs_control) + ")")
    p.add_argument("--data", default="test", help="test items: a split name or a .json/.jsonl file (default: test)")
    p.add_argument("--calibration", default="calibration",
                   help="the defender's clean items: a split or file, or 'half' to split --data 50/50 (default: calibration)")
    p.add_argument("--limit", type=_count, default=0, help="use N test items, evenly spaced (0 = all)")
    p.add_argument("--calibration-limit", type=_count, default=0, help="use N calibration items, evenly spaced (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the 50/50 split with --calibration half")
    p.add_argument("--out", required=True, help="report JSON path")
    p.add_argument("--csv", default="", help="per-item CSV path (default: next to the report)")
    trigger_args(p)
    reserved = {option for action in p._actions for option in action.option_strings}
    p.set_defaults(func=cmd_defend, option_flags=add_option_arguments(p, reserved))

    p = sub.add_parser("score", help="print the option distribution for one item, with and without a trigger")
    common(p)
    p.add_argument("--adapter", default="", help="adapter folder ('' = the base model)")
    p.add_argument("--item", default="showcase:0", help="SPLIT_OR_FILE:INDEX_OR_ID")
    trigger_args(p)
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("card", help="write a model card (README.md) into an adapter folder from its config and report")
    p.add_argument("--adapter", required=True)
    p.add_argument("--report", default="", help="evaluation report JSON to include")
    p.set_defaults(func=cmd_card)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from backdoor.config import ConfigError
    from backdoor.models import ModelLoadError
    from dataset.schema import DatasetError

    try:
        return args.func(args)
    except (ConfigError, ModelLoadError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
