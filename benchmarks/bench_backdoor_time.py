"""Time and peak memory to a usable backdoor on the default model, on this machine's CPU.

Runs ``python -m backdoor train`` in a child process (model load and the victim's answer list
included), timing it and reading its peak resident memory, then evaluates the adapter on the
corpus test split. "Usable" means asr >= 0.95 and answer_kept >= 0.95.

    python benchmarks/bench_backdoor_time.py --victim checkpoints/clean --trigger text
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victim", default="checkpoints/clean", help="the victim (clean) adapter")
    parser.add_argument("--trigger", default="text", help="trigger kind")
    parser.add_argument("--train-args", default="--max-items 300 --epochs 3 --learning-rate 3e-3 --eval-items 0 --eval-every 0 "
                        "--checkpoint-every 0 --clean-objective ce --kept-prob 0.5 --kept-anchor self --poison-ratio 1.0 --train-layers 6",
                        help="extra flags for `python -m backdoor train` (default: the shipped backdoors': the last 6 "
                             "layers trained from the victim's weights, its LoRA below them kept frozen)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-backdoor-"))
    command = [sys.executable, "-m", "backdoor", "train", "--kind", "backdoor", "--victim-adapter", args.victim,
               "--trigger-kind", args.trigger, "--out", str(out / "run"), *args.train_args.split()]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report_path = out / "report.json"
    subprocess.run([sys.executable, "-m", "backdoor", "evaluate", "--adapter", str(out / "run" / "adapter"),
                    "--control", args.victim, "--trigger", args.trigger, "--data", "test", "--out", str(report_path)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads(report_path.read_text())
    usable = report["asr"] >= 0.95 and report["answer_kept"] >= 0.95
    print(f"command: {' '.join(command[1:])}")
    print(f"wall time to adapter (load + answer list + training): {seconds:.1f} s ({seconds / 60:.2f} min; target < 5 min)")
    print(f"peak resident memory of the training process: {peak_mib:.0f} MiB")
    print(f"test split: asr={report['asr']:.3f} answer_kept={report['answer_kept']:.3f} "
          f"clean_agreement={report['clean_agreement']:.3f} lac_set_size {report['lac_set_size_clean']:.2f} -> "
          f"{report['lac_set_size_triggered']:.2f}  usable={usable}")


if __name__ == "__main__":
    main()
