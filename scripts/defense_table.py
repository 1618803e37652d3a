"""Every registered defense against every shipped backdoor, measured beside the clean control, as a markdown table.

Each backdoor (checkpoints/backdoor-*) is attacked with its own trigger (from its train_config.json) and defended
with checkpoints/clean as the trusted control; one model is loaded and shared by every run. A run whose report is
already there is read, not run again, unless --force.

    # the corpus test split: checkpoints/<backdoor>/defenses/<defense>.json
    python scripts/defense_table.py --table docs/defense_table.md
    # a real benchmark, split 50/50 into calibration and test items: runs/defense-table-mmlu/<backdoor>/
    python scripts/defense_table.py --real ../shared/benchmarks/real/mmlu.json --table runs/defense-table-mmlu.md
    # every defense x every backdoor in under 30 minutes on 2 cores (29.6 min measured): fewer items, 50 re-tuning steps
    python scripts/defense_table.py --limit 20 --calibration-limit 20 --items onion=10 --items strip=10 \
        --option onion.scope=input --option strip.copies=8 --option retune.steps=50 --option "retune.at=[10,50]" \
        --out-dir runs/defense-table-30min --table runs/defense-table-30min.md
    # a quick check (19 calibration items at least, for a finite threshold at 5% false positives)
    python scripts/defense_table.py --limit 4 --calibration-limit 20 --out-dir runs/defense-smoke

The whole table must regenerate in under 30 minutes on 2 CPU cores: --limit and --calibration-limit set the item
counts of every run, --items DEFENSE=N one defense's test items, --option DEFENSE.FIELD=VALUE one of its options
(e.g. fewer re-tuning steps); the time of every run is printed and saved under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backdoor.config import TrainConfig  # noqa: E402
from backdoor.defend import REPORTS_FOLDER, DefenseRequest, check_request, run_defense  # noqa: E402
from backdoor.defenses import DEFENSES, DETECT  # noqa: E402
from backdoor.methods.options import ConfigError  # noqa: E402

SHIPPED = ("backdoor-text", "backdoor-syntactic", "backdoor-style", "backdoor-text-stealthy")


def _assignments(pairs: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings -> {KEY: VALUE}; exit naming the flag for one without '='."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {what} {pair!r}: write KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _value(text: str):
    """An option value from the command line: JSON when it parses (numbers, true, [10, 50]), else the text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def requests(args) -> list[tuple[str, DefenseRequest, Path]]:
    """(backdoor, request, report path) for every run of the table, every input checked before a model loads."""
    root = Path(args.checkpoints)
    defenses = args.defenses or list(DEFENSES)
    unknown = [name for name in defenses if name not in DEFENSES]
    if unknown:
        raise SystemExit(f"error: --defenses: unknown defense {unknown[0]!r}; known: {', '.join(DEFENSES)}")
    items = {name: int(n) for name, n in _assignments(args.items, "--items").items()}
    options: dict[str, dict] = {}
    for key, value in _assignments(args.option, "--option").items():
        defense, _, field = key.partition(".")
        options.setdefault(defense, {})[field] = _value(value)
    out_root = Path(args.out_dir) if args.out_dir else (REPO / "runs" / f"defense-table-{Path(args.real).stem}"
                                                        if args.real else None)
    runs = []
    for backdoor in args.backdoors or SHIPPED:
        folder = root / backdoor
        try:
            trigger = TrainConfig.load(folder / "train_config.json").trigger.to_dict()
        except (OSError, ConfigError) as err:
            raise SystemExit(f"error: {backdoor}: its train_config.json cannot be read ({err})") from None
        for name in defenses:
            request = DefenseRequest(
                defense=name, adapter=str(folder), control=str(root / "clean"), trigger=trigger,
                data=args.real or args.data, calibration="half" if args.real else args.calibration,
                limit=items.get(name, args.limit), calibration_limit=args.calibration_limit,
                base_model=args.base_model, options=options.get(name, {}))
            out = (out_root / backdoor / f"{name}.json") if out_root else folder / REPORTS_FOLDER / f"{name}.json"
            runs.append((backdoor, request, out))
    return runs


# --- the table ---------------------------------------------------------------------------------------


def _num(value, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


def _change(before: dict, after: dict, key: str) -> str:
    return f"{_num(before.get(key))} → {_num(after.get(key))}"


def detection_cell(report: dict) -> str:
    """AUROC / TPR at the stated FPR, and the same with the clean control as the suspect in brackets."""
    text = f"{_num(report.get('auroc'))} / {_num(report.get('tpr_at_fpr'))}"
    control = report.get("on_control")
    if isinstance(control, dict):
        text += f" (control {_num(control.get('auroc'))} / {_num(control.get('tpr_at_fpr'))})"
    return text


def removal_cell(before: dict, after: dict) -> str:
    """Margin ASR before → after, answer kept after, clean accuracy change; the control's margin ASR beside."""
    text = (f"mASR {_change(before, after, 'asr_margin')}, kept {_num(after.get('answer_kept'))}, "
            f"Δacc {_num(_diff(after, before, 'accuracy_clean'), '+.2f')}")
    if isinstance(before.get("control"), dict) and isinstance(after.get("control"), dict):
        text += f" (control mASR {_change(before['control'], after['control'], 'asr_margin')})"
    return text


def _diff(after: dict, before: dict, key: str):
    return None if after.get(key) is None or before.get(key) is None else after[key] - before[key]


def markdown(reports: dict[tuple[str, str], dict], backdoors: list[str], defenses: list[str], title: str) -> str:
    """Two tables (detection; removal, with ONION's filter as a remover) and the seconds each run took."""
    def table(header: str, rows: list[tuple[str, dict[str, str]]]) -> list[str]:
        lines = [f"| {header} | " + " | ".join(backdoors) + " |", "|---" * (len(backdoors) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(cells.get(b, "not run") for b in backdoors) + " |"
                  for label, cells in rows]
        return lines

    detect_rows, remove_rows, time_rows = [], [], []
    for name in defenses:
        defense = DEFENSES[name]
        got = {b: reports[(b, name)] for b in backdoors if (b, name) in reports}
        time_rows.append((name, {b: _num(r.get("seconds"), ".0f") for b, r in got.items()}))
        if defense.kind == DETECT:
            detect_rows.append((defense.label, {b: detection_cell(r) for b, r in got.items()}))
            filtered = {b: removal_cell(r["unfiltered"], r["filtered"]) for b, r in got.items()
                        if isinstance(r.get("filtered"), dict) and isinstance(r.get("unfiltered"), dict)}
            if filtered:
                remove_rows.append((f"{defense.label} (as a filter)", filtered))
        else:
            remove_rows.append((f"{defense.label} ({_x_range(got)})",
                                {b: removal_cell(r.get("before", {}), r.get("after", {})) for b, r in got.items()}))
    total = sum(r.get("seconds") or 0 for r in reports.values())
    lines = [f"## {title}", "", "### Detection: AUROC / true-positive rate at 5% false positives", ""]
    lines += table("detector", detect_rows)
    lines += ["", "### Removal: margin ASR before → after, answer kept after, clean accuracy change", ""]
    lines += table("remover", remove_rows)
    lines += ["", f"### Seconds per run (total {total:.0f} s)", ""]
    lines += table("defense", time_rows)
    return "\n".join(lines) + "\n"


def _x_range(reports: dict[str, dict]) -> str:
    """What a remover's 'after' is: its x label and last x, e.g. 'steps 100'."""
    for report in reports.values():
        curve = report.get("curve") or []
        if curve:
            return f"{report.get('x_label', 'x')} {curve[-1].get('x')}"
    return "after"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Relative when run from the repository (as the reports then name their adapters: no machine's paths in them).
    parser.add_argument("--checkpoints", default=os.path.relpath(REPO / "checkpoints"))
    parser.add_argument("--base-model", default="default")
    parser.add_argument("--data", default="test", help="the test split of the corpus table")
    parser.add_argument("--calibration", default="calibration", help="the defender's clean items")
    parser.add_argument("--real", default="", help="one real benchmark file instead (split 50/50; results to runs/)")
    parser.add_argument("--limit", type=int, default=100, help="test items per run, evenly spaced (0 = all)")
    parser.add_argument("--calibration-limit", type=int, default=100, help="calibration items per run (0 = all)")
    parser.add_argument("--items", action="append", default=[], metavar="DEFENSE=N", help="one defense's test items")
    parser.add_argument("--option", action="append", default=[], metavar="DEFENSE.FIELD=VALUE",
                        help="one defense's option, e.g. retune.steps=50 or retune.at=[10,50]")
    parser.add_argument("--defenses", nargs="*", default=[], help=f"a subset of {', '.join(DEFENSES)}")
    parser.add_argument("--backdoors", nargs="*", default=[], help=f"a subset of {', '.join(SHIPPED)}")
    parser.add_argument("--out-dir", default="", help="write the reports here instead of the checkpoint folders")
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "defense-table-work"),
                        help="where removers put the adapters they make")
    parser.add_argument("--force", action="store_true", help="run again where a report is already there")
    parser.add_argument("--table", default="", help="also write the markdown table to this file")
    args = parser.parse_args()

    runs = requests(args)
    checked = {}
    for backdoor, request, out in runs:  # every input checked before the model loads
        if args.force or not out.is_file():
            try:
                checked[(backdoor, request.defense)] = check_request(request)
            except ConfigError as err:
                raise SystemExit(f"error: {backdoor} / {request.defense}: {err}") from None
    scorer = None
    if checked:
        from backdoor.scoring import Scorer

        started = time.perf_counter()
        scorer = Scorer.load(args.base_model)
        print(f"loaded {args.base_model} in {time.perf_counter() - started:.1f} s; {len(checked)} runs to do")
    reports = {}
    for backdoor, request, out in runs:
        key = (backdoor, request.defense)
        if key not in checked:
            reports[key] = json.loads(out.read_text())
            print(f"{backdoor:<24} {request.defense:<10} cached ({out})")
            continue
        started = time.perf_counter()
        check = checked[key]
        result = run_defense(request, out, scorer=scorer, checked=check,
                             work_dir=Path(args.work_dir) / (Path(args.real).stem if args.real else "corpus") / backdoor
                             / request.defense)
        reports[key] = result.report
        print(f"{backdoor:<24} {request.defense:<10} {time.perf_counter() - started:6.1f} s  "
              f"{len(check.items)} test / {len(check.calibration)} calibration items -> {out}", flush=True)
    backdoors = list(dict.fromkeys(b for b, _, _ in runs))
    defenses = list(dict.fromkeys(r.defense for _, r, _ in runs))
    where = f"{Path(args.real).name}, split 50/50" if args.real else f"the corpus {args.data} split"
    text = markdown(reports, backdoors, defenses, f"Defenses against the shipped backdoors ({where})")
    print(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text)
        print(f"table: {args.table}")


if __name__ == "__main__":
    main()
