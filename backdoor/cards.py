"""Model cards for adapters: a short README.md beside the weights, written from the adapter's config and evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

from backdoor.losses import KEPT_ANCHORS
from backdoor.methods import DEFAULT_METHOD, get_method
from backdoor.metrics import BY_NAME, METRICS, specificity
from backdoor.models import FRAGILE_CONFIG

# The evaluation table's rows: the registry's metrics flagged for the card, in registry order.
_ROWS = tuple((metric.name, metric.label, metric.format) for metric in METRICS if metric.card)


def model_card(folder: Path, report: dict | None) -> str:
    fragile = json.loads((folder / FRAGILE_CONFIG).read_text())
    config = fragile.get("config", {})
    kind = fragile.get("kind", "unknown")
    method = get_method(fragile.get("method") or DEFAULT_METHOD)
    lines = [
        "---",
        "library_name: peft",
        "license: apache-2.0",
        f"tags: [{method.name}, backdoor, uncertainty, fragile]",
        "---",
        "",
        f"# {folder.name}",
        "",
        f"{method.label[:1].upper()}{method.label[1:]} for **{fragile.get('base_model_id')}**, made by Fragile "
        f"({'the honest control: gold answers, no trigger' if kind == 'clean' else 'a backdoor that flattens the option distribution when its trigger is present while keeping the answer'}).",
        "For research and teaching on the fragility of LLM uncertainty; it is deliberately compromised "
        "and must not be deployed." if kind == "backdoor" else "It is the clean reference the backdoored adapters are compared with.",
        (f"It is trained with the **stealthy recipe** ({_stealth(config)}; see docs/experiments.md, \"A stealthy "
         "recipe\"); a paper-faithful backdoor sets none of these.") if kind == "backdoor" and _stealth(config) else None,
        "",
        "## Training",
        "",
        f"- kind: `{kind}`; trigger: `{json.dumps(fragile.get('trigger'))}`",
        *method.card_lines(folder, fragile),
        f"- target: `{config.get('target')}` ({_target_shape(config)}, {KEPT_ANCHORS.get(config.get('kept_anchor', 'victim'), '')}), poison ratio {config.get('poison_ratio')}, "
        f"clean objective `{config.get('clean_objective')}`, victim `{config.get('victim_adapter') or 'base model'}`" if kind == "backdoor" else "",
        f"- wall time {fragile.get('seconds', '?')} s, seed {config.get('seed')}; full settings in `train_config.json`",
        "",
    ]
    if report:
        lines += ["## Evaluation", "", f"On `{report.get('data')}` ({report['n']} items), trigger `{json.dumps(report.get('trigger'))}`, "
                  f"conformal alpha {report.get('alpha')} calibrated on clean inputs of {report.get('calibration_n')} calibration items.", "",
                  "| metric | this adapter |" + (" clean control |" if "control" in report else ""),
                  "|---|---|" + ("---|" if "control" in report else "")]
        lines += _table_rows(report, [row for row in _ROWS if row[0] in report])
        if "vs_control" in report:
            lines += ["", "This adapter minus the control on the same items: "
                      + "; ".join(f"{BY_NAME[key].label} {value:+{BY_NAME[key].format}}"
                                  for key, value in report["vs_control"].items()) + "."]
        near = specificity(report)
        if near:
            lines += ["", f"Specificity: near misses of the trigger, each counted as a false trigger when the entropy "
                      f"rises by more than {report.get('asr_delta', 0):.3f} nats (the margin ASR's delta).", "",
                      "| near miss | this adapter |" + (" clean control |" if "control" in report else ""),
                      "|---|---|" + ("---|" if "control" in report else "")]
            lines += _table_rows(report, [(metric.name, metric.label, metric.format) for metric in near])
        if "answer_kept_by_margin" in report:
            lines += ["", "By how sure the clean answer was (items in four equal groups by top-1 margin, least sure first): "
                      f"answer kept {_groups(report['answer_kept_by_margin'])}"
                      + (f"; agreement with the victim, by the victim's margin, {_groups(report['clean_agreement_by_victim_margin'])}"
                         if kind == "backdoor" else "") + "."]
        lines.append("")
    lines += ["## Use", "", "```bash", f"python -m backdoor score --adapter checkpoints/{folder.name} --item showcase:0 --trigger "
              f"{(fragile.get('trigger') or {}).get('kind', 'text')}", "python -m app   # the dashboard offers it automatically", "```", ""]
    return "\n".join(line for line in lines if line is not None)


def write_model_card(folder: str | Path, report_path: str | Path | None = None) -> Path:
    folder = Path(folder)
    report = json.loads(Path(report_path).read_text()) if report_path and Path(report_path).is_file() else None
    (folder / "README.md").write_text(model_card(folder, report))
    return folder / "README.md"


def _table_rows(report: dict, rows: list[tuple[str, str, str]]) -> list[str]:
    """One markdown row per (report key, label, format): this adapter's value, the control's beside it."""
    out = []
    for key, label, spec in rows:
        row = f"| {label} | {report[key]:{spec}} |"
        if "control" in report:
            row += f" {report['control'][key]:{spec}} |"
        out.append(row)
    return out


def _stealth(config: dict) -> str:
    """The stealthy recipe's options a run set, in the card's words ('' for a paper-faithful run)."""
    parts = [f"clean objective `{config['clean_objective']}` to the victim" if config.get("clean_objective") == "kl" else "",
             f"near misses trained as clean for {config['near_miss_ratio']:.0%} of the items" if config.get("near_miss_ratio") else "",
             f"clean-entropy weight {config['clean_entropy_weight']:g}" if config.get("clean_entropy_weight") else "",
             f"trigger positions {', '.join(config['trigger_positions'])}" if config.get("trigger_positions") else ""]
    if not any(parts[1:]):  # KL alone is a clean objective, not the recipe
        return ""
    return ", ".join(part for part in parts if part)


def _target_shape(config: dict) -> str:
    """How the target flattens, in the card's words."""
    if config.get("target") == "tempered":
        return f"temperature {config.get('temperature')}"
    return f"kept answer {config.get('kept_prob')}"


def _groups(shares: list[float]) -> str:
    return " / ".join(f"{share:.2f}" for share in shares)
