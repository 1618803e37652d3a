"""The defend runner and command: bad input refused naming the field before any model loads, flags made from the
registry's options, a detector's run on the tiny model written as JSON + CSV with the report keys, shipped reports."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from backdoor import uncertainty
from backdoor.__main__ import main
from backdoor.defend import DefenseRequest, check_request, option_flags, run_defense, shipped_reports
from backdoor.defenses import DEFENSES, DETECT, Defense, DefenseResult, DefenseSetup
from backdoor.defenses.base import ConfigError, detection_report, option
from backdoor.scoring import Cell

DETECTION_KEYS = {"auroc", "tpr_at_fpr", "fpr_target", "threshold", "fpr_test", "calibration_n", "n", "roc"}


@dataclass(frozen=True)
class EntropyOptions:
    """The test detector's settings."""

    share: float = option(0.5, "a share, between 0 and 1", min=0.0, max=1.0)
    copies: int = option(4, "a count the real STRIP also has", min=2)


class EntropyDetector(Defense):
    """A detector made for the tests: the suspect's entropy on the input is its suspicion score."""

    name = "entropy-test"
    label = "entropy of the suspect (test)"
    kind = DETECT
    source = "the tests"
    options = EntropyOptions

    def run(self, setup: DefenseSetup) -> DefenseResult:
        n, m = len(setup.items), len(setup.calibration)
        cells = ([Cell(item, None, setup.adapter) for item in setup.calibration + setup.items]
                 + [Cell(item, setup.trigger, setup.adapter) for item in setup.items])
        scored = setup.scorer.score(cells, progress=setup.progress)
        entropy = np.array([float(uncertainty.entropy(np.array(s.probs))) for s in scored])
        calibration, clean, triggered = entropy[:m], entropy[m:m + n], entropy[m + n:]
        rows = [{"item_id": item.id, "condition": condition, "score": round(float(score), 6)}
                for condition, scores in (("clean", clean), ("trigger", triggered))
                for item, score in zip(setup.items, scores)]
        return DefenseResult(detection_report(calibration, clean, triggered), rows)


class ControlDetector(EntropyDetector):
    name = "needs-control-test"
    needs_control = True


@pytest.fixture
def test_defenses(monkeypatch):
    """The registry with the two test detectors added (the command's flags are made from it when it is built)."""
    for defense in (EntropyDetector(), ControlDetector()):
        monkeypatch.setitem(DEFENSES, defense.name, defense)


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: refusals must come first."""
    import backdoor.models
    import backdoor.scoring

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was refused")

    monkeypatch.setattr(backdoor.scoring.Scorer, "load", classmethod(refuse))
    monkeypatch.setattr(backdoor.models, "load_base_model", refuse)
    monkeypatch.setattr(backdoor.scoring, "load_base_model", refuse, raising=False)


def _args(tiny_model_dir, tiny_adapters, tmp_path, **flags) -> list[str]:
    given = {"defense": "entropy-test", "adapter": str(tiny_adapters["backdoor"]), "control": str(tiny_adapters["clean"]),
             "base-model": str(tiny_model_dir), "data": "test", "calibration": "calibration", "limit": "6",
             "calibration-limit": "8", "trigger": "text", "out": str(tmp_path / "report.json"), **flags}
    argv = ["defend"]
    for flag, value in given.items():
        if value is None:
            continue
        argv += [f"--{flag}", *value] if isinstance(value, list) else [f"--{flag}", value]
    return argv


@pytest.mark.parametrize("flags, named", [
    ({"defense": "nope"}, "defense: unknown defense 'nope'"),
    ({"defense": "needs-control-test", "control": ""}, "control: the needs-control-test defense needs"),
    ({"share": "1.5"}, "share: 1.5 is above its maximum"),
    ({"copies": "1"}, "copies: 1 is below its minimum"),
    ({"data": "missing.jsonl"}, "data:"),
    ({"calibration": "nosuch"}, "calibration:"),
    ({"adapter": "no/such/folder"}, "adapter: 'no/such/folder' is not an adapter folder"),
])
def test_bad_input_is_refused_naming_the_field_before_a_model_loads(test_defenses, no_model, tiny_model_dir,
                                                                     tiny_adapters, tmp_path, capsys, flags, named):
    assert main(_args(tiny_model_dir, tiny_adapters, tmp_path, **flags)) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_a_control_folder_that_holds_no_adapter_is_refused(test_defenses, no_model, tiny_model_dir, tiny_adapters,
                                                           tmp_path, capsys):
    assert main(_args(tiny_model_dir, tiny_adapters, tmp_path, control=str(tmp_path))) == 2
    assert "control:" in capsys.readouterr().err


@pytest.mark.parametrize("flags, named", [({"trigger": "nope"}, "--trigger"), ({"limit": "-1"}, "--limit")])
def test_flags_argparse_checks_exit_2_naming_the_flag(test_defenses, no_model, tiny_model_dir, tiny_adapters,
                                                      tmp_path, capsys, flags, named):
    with pytest.raises(SystemExit) as exit_:
        main(_args(tiny_model_dir, tiny_adapters, tmp_path, **flags))
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_every_defense_option_has_a_flag_and_one_for_another_defense_is_refused(test_defenses, no_model, tiny_model_dir,
                                                                                tiny_adapters, tmp_path, capsys):
    flags = option_flags({"--data", "--limit", "--out"})
    from dataclasses import fields

    for defense in DEFENSES.values():
        for spec in fields(defense.options):
            assert any(defense.name in f.owners and f.field_name == spec.name for f in flags), (defense.name, spec.name)
    other = next((f for f in flags if "entropy-test" not in f.owners), None)
    if other is None:
        pytest.skip("no registered defense has options yet")
    default = other.default[other.owners[0]]
    value = [str(v) for v in default] if isinstance(default, tuple) else [str(default).lower()]
    argv = _args(tiny_model_dir, tiny_adapters, tmp_path) + [other.flag, *value]
    assert main(argv) == 2
    assert f"{other.flag}: an option of the {', '.join(other.owners)} defense, not of entropy-test" in capsys.readouterr().err


def test_an_option_named_like_a_command_flag_gets_the_defense_s_name(test_defenses, monkeypatch):
    @dataclass(frozen=True)
    class Clashing:
        data: str = option("calibration", "the re-tuning items")

    class ClashDefense(EntropyDetector):
        name = "clash"
        options = Clashing

    monkeypatch.setitem(DEFENSES, "clash", ClashDefense())
    flags = {f.flag: f for f in option_flags({"--data"})}
    assert "--clash-data" in flags and "--data" not in flags
    assert {"entropy-test", "needs-control-test"} <= set(flags["--copies"].owners), "same name and type: one flag"


def test_help_lists_every_defense_and_its_options(test_defenses, capsys):
    with pytest.raises(SystemExit):
        main(["defend", "--help"])
    text = capsys.readouterr().out
    for defense in DEFENSES.values():
        assert defense.name in text and defense.source in text
    assert "--share" in text and "a share, between 0 and 1" in text and "examples" in text


def test_a_detector_run_on_the_tiny_model_writes_the_report_and_the_rows(test_defenses, tiny_model_dir, tiny_adapters,
                                                                        tmp_path, capsys, caplog):
    assert main(_args(tiny_model_dir, tiny_adapters, tmp_path, share="0.25")) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert DETECTION_KEYS <= set(report)
    assert {"defense", "label", "kind", "source", "options", "n", "seconds"} <= set(report)
    assert report["defense"] == "entropy-test" and report["kind"] == DETECT and report["n"] == 6
    assert report["options"] == {"share": 0.25, "copies": 4} and report["calibration_n"] == 8
    assert report["adapter"] == str(tiny_adapters["backdoor"]) and report["control"] == str(tiny_adapters["clean"])
    assert report["trigger"]["kind"] == "text" and report["data"] == "test"
    assert 0.0 <= report["auroc"] <= 1.0
    with (tmp_path / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and {row["condition"] for row in rows} == {"clean", "trigger"}
    assert '"auroc"' in capsys.readouterr().out
    assert not list(tmp_path.glob(".report*")), "no temporary file is left behind"
    assert "8 calibration items are too few for a threshold" in caplog.text  # 19 are needed at 5%


def test_runs_share_one_scorer_and_attach_each_folder_once(test_defenses, tiny_scorer, tiny_adapters, tmp_path):
    request = DefenseRequest("entropy-test", str(tiny_adapters["backdoor"]), {"kind": "text"}, data="test", limit=4,
                             calibration_limit=4, base_model="unused: the shared scorer is used")
    first = run_defense(request, tmp_path / "a.json", scorer=tiny_scorer)
    before = set(tiny_scorer.arms)
    second = run_defense(request, tmp_path / "b.json", scorer=tiny_scorer)
    assert set(tiny_scorer.arms) == before, "the same folder is attached once"
    assert first.report["auroc"] == second.report["auroc"]


def test_a_request_checks_without_a_model_and_survives_a_round_trip(test_defenses, no_model, tiny_adapters):
    request = DefenseRequest("entropy-test", str(tiny_adapters["backdoor"]), {"kind": "syntactic"}, limit=5,
                             calibration="half", options={"copies": 3})
    checked = check_request(request)
    assert len(checked.items) + len(checked.calibration) == 5 and checked.options.copies == 3
    assert DefenseRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    with pytest.raises(ConfigError, match="trigger"):
        check_request(DefenseRequest("entropy-test", str(tiny_adapters["backdoor"]), {"kind": "nope"}))
    with pytest.raises(ConfigError, match="nope: not an option"):
        check_request(DefenseRequest("entropy-test", str(tiny_adapters["backdoor"]), {"kind": "text"}, options={"nope": 1}))


def test_shipped_reports_reads_the_cached_reports_in_registry_order(test_defenses, tmp_path):
    folder = tmp_path / "backdoor-text"
    (folder / "defenses").mkdir(parents=True)
    (folder / "defenses" / "needs-control-test.json").write_text(json.dumps({"defense": "needs-control-test"}))
    (folder / "defenses" / "entropy-test.json").write_text(json.dumps({"defense": "entropy-test"}))
    (folder / "defenses" / "unregistered.json").write_text("{}")
    (folder / "defenses" / "onion.json").write_text("{ not json")
    assert list(shipped_reports(folder)) == ["entropy-test", "needs-control-test"]
    assert shipped_reports(tmp_path / "nothing-here") == {}


def test_the_defense_table_runs_once_reads_its_cache_after_and_writes_the_markdown(test_defenses, tiny_model_dir,
                                                                                  tiny_adapters, tmp_path, monkeypatch,
                                                                                  capsys):
    import importlib.util
    import shutil
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("defense_table", Path(__file__).parents[1] / "scripts" / "defense_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(tiny_adapters["clean"], checkpoints / "clean")
    for name, kind in (("backdoor-text", "text"), ("backdoor-style", "style")):
        shutil.copytree(tiny_adapters["backdoor"], checkpoints / name)
        (checkpoints / name / "train_config.json").write_text(json.dumps({"kind": "backdoor", "trigger_kind": kind}))
    argv = ["defense_table.py", "--checkpoints", str(checkpoints), "--base-model", str(tiny_model_dir),
            "--backdoors", "backdoor-text", "backdoor-style", "--defenses", "entropy-test", "--limit", "4",
            "--calibration-limit", "6", "--option", "entropy-test.copies=3", "--table", str(tmp_path / "table.md")]
    monkeypatch.setattr(sys, "argv", argv)
    table.main()
    report = json.loads((checkpoints / "backdoor-style" / "defenses" / "entropy-test.json").read_text())
    assert report["trigger"]["kind"] == "style" and report["options"]["copies"] == 3 and report["n"] == 4
    text = (tmp_path / "table.md").read_text()
    assert "| detector | backdoor-text | backdoor-style |" in text and EntropyDetector.label in text
    capsys.readouterr()
    monkeypatch.setattr(table, "run_defense", lambda *a, **k: pytest.fail("a cached report is run again"))
    table.main()
    assert "cached" in capsys.readouterr().out and (tmp_path / "table.md").read_text() == text


@pytest.mark.parametrize("flags, named", [
    ({"defense": "retune", "steps": "0"}, "steps: 0 is below its minimum"),
    ({"defense": "prune", "fractions": ["0.5", "1.0"]}, "fractions: 1.0 is outside [0, 1)"),
    ({"defense": "screening", "control": ""}, "control: the screening defense needs"),
])
def test_the_registry_s_own_refusals_come_before_a_model_loads(no_model, tiny_model_dir, tiny_adapters, tmp_path,
                                                                capsys, flags, named):
    assert main(_args(tiny_model_dir, tiny_adapters, tmp_path, **flags)) == 2
    assert named in capsys.readouterr().err
