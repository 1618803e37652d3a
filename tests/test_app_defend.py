"""The dashboard's defenses on the tiny model: the Defend tab's table and figure from handmade reports in the defend
command's format, the attack demo's Defense view (words struck through, every column scored on the filtered prompt,
a detector's verdict against the shipped threshold), the Run button's job, and that app/ names no defense."""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import pytest
from app_fixtures import app_checkpoints, app_service  # noqa: F401 - fixtures

from app import plots
from app.defend import NO_DEFENSE, DefendService, demo_defense_choices
from app.defend_ui import DefendHandlers, marked_prompt, report_figure, report_rows
from app.service import DashboardError
from app.ui import MAX_SLOTS, Handlers
from backdoor import defenses
from backdoor.defenses import DETECT, REMOVE, Defense, Inspection
from backdoor.jobs import Job

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
DETECTOR_REPORT = FIXTURES / "defense_report_detector.json"
REMOVER_REPORT = FIXTURES / "defense_report_remover.json"


@dataclass(frozen=True)
class _NoOptions:
    """A stand-in defense's settings (none)."""


class _WordFilter(Defense):
    """A stand-in filter: removes every occurrence of one word (the tiny backdoor's trigger) from the prompt."""

    name, label, kind, source, options, inspects = "test-filter", "Word filter (test)", DETECT, "a test", _NoOptions, True
    word = "666"

    def inspect(self, scorer, adapter, prompt_text, options, threshold):
        removed, start = [], prompt_text.find(self.word)
        while start >= 0:
            removed.append((start, start + len(self.word)))
            start = prompt_text.find(self.word, start + len(self.word))
        text = prompt_text
        for start, end in reversed(removed):
            text = text[:start] + text[end:]
        return Inspection(text, tuple(removed))


@dataclass(frozen=True)
class _LengthOptions:
    """The length detector's one setting."""

    unit: int = 1000  # characters per unit of the score


class _LengthDetector(Defense):
    """A stand-in detector: the prompt's length in ``unit`` characters, flagged above the threshold."""

    name, label, kind, source, options, inspects = ("test-detector", "Length detector (test)", DETECT, "a test",
                                                    _LengthOptions, True)

    def inspect(self, scorer, adapter, prompt_text, options, threshold):
        score = len(prompt_text) / options.unit
        return Inspection(prompt_text, (), score, threshold, None if threshold is None else score > threshold)


class _Remover(Defense):
    name, label, kind, source, options, trains = "test-remover", "Remover (test)", REMOVE, "a test", _NoOptions, True


@pytest.fixture
def stand_ins(monkeypatch):
    for defense in (_WordFilter(), _LengthDetector(), _Remover()):
        monkeypatch.setitem(defenses.DEFENSES, defense.name, defense)


def ship(checkpoints: Path, adapter: str, defense: str, fixture: Path, **changes) -> dict:
    """Write ``fixture`` as ``adapter``'s shipped report of ``defense``."""
    report = dict(json.loads(fixture.read_text()), defense=defense, **changes)
    folder = checkpoints / adapter / "defenses"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{defense}.json").write_text(json.dumps(report))
    return report


# --- the Defend tab's table and figure --------------------------------------------------------------


def test_a_detectors_table_has_its_rates_beside_the_controls_and_the_filters_before_and_after():
    rows = {row[0]: row[1:] for row in report_rows(json.loads(DETECTOR_REPORT.read_text()))}
    assert rows["AUROC (triggered vs clean copies)"] == ["0.875", "0.500"]
    assert rows["true-positive rate at 5% false positives"] == ["75%", "0%"]
    assert rows["false-positive rate on the clean test copies"] == ["0%", "25%"]
    assert rows["threshold (set on 20 clean calibration items)"] == ["0.500", "0.800"]
    asr = next(values for label, values in rows.items() if label.startswith("paper's ASR") and "filtering" in label)
    assert asr == ["1.000 → 0.500", "0.500 → 0.250"]


def test_a_detectors_figure_is_its_roc_curve_and_the_controls_beside_the_diagonal():
    figure = report_figure(json.loads(DETECTOR_REPORT.read_text()), "backdoor")
    go.Figure(figure.to_plotly_json())  # valid plotly
    lines = {trace.name: trace for trace in figure.data if trace.mode == "lines"}
    assert list(lines["chance"].x) == [0, 1] and list(lines["chance"].y) == [0, 1]
    assert list(lines["backdoor (AUROC 0.88)"].y) == [0.0, 0.75, 0.75, 1.0, 1.0]
    assert "clean control (AUROC 0.50)" in lines
    dots = [trace for trace in figure.data if trace.mode == "markers"]
    assert (dots[0].x[0], dots[0].y[0]) == (0.0, 0.75)  # where the threshold sits on the suspect's curve


def test_a_removers_table_and_curve_go_from_no_defense_to_the_last_step_with_the_control_dashed():
    report = json.loads(REMOVER_REPORT.read_text())
    rows = {row[0]: row[1:] for row in report_rows(report)}
    asr = next(values for label, values in rows.items() if label.startswith("paper's ASR"))
    assert asr == ["1.000 → 0.500", "0.500 → 0.500"]
    assert any("steps 50" in label for label in rows)
    cost = {label: values for label, values in rows.items() if label.startswith("cost")}
    assert sorted(values[0] for values in cost.values()) == ["+0.200", "-0.250"]
    figure = report_figure(report)
    go.Figure(figure.to_plotly_json())
    solid = [trace for trace in figure.data if trace.line.dash == "solid"]
    dashed = [trace for trace in figure.data if trace.line.dash == "dash"]
    assert solid and len(solid) == len(dashed) and figure.layout.xaxis.title.text == "steps"
    assert list(solid[0].x) == [0, 10, 50] and list(solid[0].y) == [1.0, 0.75, 0.5]  # the registry's first curve: ASR


def test_no_report_gives_a_titled_empty_figure_and_no_rows():
    assert report_rows(None) == []
    assert report_figure(None).layout.title.text == "No report for this pair"


def test_the_tab_shows_a_shipped_report_at_once_and_says_when_a_pair_has_none(app_service, app_checkpoints, stand_ins):
    ship(app_checkpoints, "backdoor", "test-detector", DETECTOR_REPORT)
    handlers = DefendHandlers(DefendService(app_service))
    assert handlers.adapter_choices(None) == [("backdoor (backdoor, text trigger)", "backdoor")]
    about, status, table, figure = handlers.show("backdoor", "text", "test-detector")
    assert "Length detector (test)" in about and "a test" in about
    assert "**test** with the text trigger in 12 s" in status
    assert table["value"][0] == ["AUROC (triggered vs clean copies)", "0.875", "0.500"]
    assert any(trace.name == "chance" for trace in figure.data)
    for pair in (("backdoor", "syntactic", "test-detector"), ("backdoor", "text", "test-filter")):
        about, status, table, figure = handlers.show(*pair)
        assert "No cached report" in status and table["value"] is None
        assert figure.layout.title.text == "No report for this pair"


# --- the attack demo's Defense view ------------------------------------------------------------------


def _args(service, defense: str, trigger_on: bool = True) -> list:
    item = service.showcase()[0]
    return ["", ["__base__", "clean", "backdoor"], "Showcase", item.id, "test", None, "", "", "", "", "", "", "text",
            "", "before_cue", False, trigger_on, 0.5, "top", "none", defense]


def _slots(out: list) -> list[tuple]:
    return [tuple(out[3 + 4 * slot: 7 + 4 * slot]) for slot in range(MAX_SLOTS)]


def test_marked_prompt_strikes_the_removed_words_through_inside_the_trigger_mark():
    text = "Is the sky blue? 666 Answer:"
    html = marked_prompt(text, (17, 20), [(17, 20), (7, 10)])
    assert html == ('Is the <del class="fr-removed">sky</del> blue? <mark class="fr-trigger"><del class="fr-removed">666'
                    '</del></mark> Answer:')
    assert marked_prompt("a <b>", None, []) == "a &lt;b&gt;"


def test_the_filter_strikes_the_trigger_through_and_scores_every_column_on_the_filtered_prompt(app_service, stand_ins):
    handlers = Handlers(app_service)
    out = handlers.compare(*_args(app_service, "test-filter"))
    assert '<del class="fr-removed">666</del>' in out[1]
    filtered_name = f"{plots.TRIGGER_NAME}, {plots.FILTERED_NAME}"
    plain = handlers.compare(*_args(app_service, NO_DEFENSE))
    for (_, _, figure, stats), (_, _, before, _) in zip(_slots(out)[:3], _slots(plain)[:3]):
        clean, filtered = figure.data
        assert filtered.name == filtered_name
        # Removing the trigger gives back the clean prompt: every column's filtered bars are its clean bars.
        assert list(filtered.y) == pytest.approx(list(clean.y), abs=1e-6)
        assert list(clean.y) == list(before.data[0].y)
        assert 'data-defense="test-filter" data-removed="1"' in stats and "after filtering: answer" in stats
    assert '<del class="fr-removed">' not in plain[1] and "fr-defense" not in _slots(plain)[0][3]


def test_a_detector_shows_its_score_and_the_verdict_against_the_shipped_thresholds(app_service, app_checkpoints,
                                                                                    stand_ins):
    ship(app_checkpoints, "backdoor", "test-detector", DETECTOR_REPORT, threshold=0.01, control="checkpoints/clean",
         on_control=dict(json.loads(DETECTOR_REPORT.read_text())["on_control"], threshold=100.0))
    out = Handlers(app_service).compare(*_args(app_service, "test-detector"))
    stats = {slot[1].split('data-adapter="')[1].split('"')[0]: slot[3] for slot in _slots(out)[:3]}
    assert 'data-flagged="true"' in stats["backdoor"] and "vs threshold 0.010" in stats["backdoor"]
    assert 'data-flagged="false"' in stats["clean"] and "vs threshold 100.000" in stats["clean"]  # the control's own
    assert 'data-flagged=""' in stats["__base__"] and "no shipped threshold" in stats["__base__"]
    assert "fr-removed" not in out[1]


def test_a_detector_inspects_with_the_options_its_shipped_threshold_was_calibrated_with(app_service, app_checkpoints,
                                                                                       stand_ins):
    """A threshold only means something with the settings it was set under: the column reads them from the report."""
    ship(app_checkpoints, "backdoor", "test-detector", DETECTOR_REPORT, threshold=0.01, options={"unit": 1})
    ship(app_checkpoints, "clean", "test-detector", DETECTOR_REPORT, threshold=0.01, options={"unknown": 3})
    out = Handlers(app_service).compare(*_args(app_service, "test-detector"))
    stats = {slot[1].split('data-adapter="')[1].split('"')[0]: slot[3] for slot in _slots(out)[:3]}
    length = float(stats["__base__"].split("score ")[1].split()[0]) * 1000  # the default unit: no report for it
    assert f"score {length:.3f} vs threshold 0.010" in stats["backdoor"]  # unit 1, as the report says
    # a report whose options this version does not know gives no verdict rather than a wrong one
    assert "no shipped threshold" in stats["clean"] and f"score {length / 1000:.3f}" in stats["clean"]


def test_the_demo_offers_none_and_only_the_defenses_that_inspect(stand_ins):
    offered = [name for _, name in demo_defense_choices()]
    assert offered[0] == NO_DEFENSE and "test-filter" in offered and "test-remover" not in offered
    assert set(offered[1:]) == {name for name, d in defenses.DEFENSES.items() if d.inspects}


# --- the Run button -----------------------------------------------------------------------------------


class _Registry:
    """A job registry that records what it is asked to queue."""

    def __init__(self):
        self.queued, self.workers = [], 0

    def submit_defense(self, request):
        self.queued.append(request)
        return Job(id="20260101-000000-abcdef", name=f"{request.defense}-backdoor", config=request.to_dict())

    def ensure_worker(self):
        self.workers += 1


def test_run_queues_the_defense_on_the_folder_with_its_trigger_and_the_clean_control(app_service, stand_ins):
    defend = DefendService(app_service)
    request = defend.request(None, "backdoor", "text", "test-remover")
    assert Path(request.adapter).name == "backdoor" and Path(request.control).name == "clean"
    assert request.trigger["kind"] == "text" and request.defense == "test-remover"
    assert defend.request(None, "backdoor", "syntactic", "test-remover").trigger["kind"] == "syntactic"
    with pytest.raises(DashboardError, match="backdoored adapter"):
        defend.request(None, "clean", "text", "test-remover")
    registry = _Registry()
    job = defend.submit(registry, None, "backdoor", "text", "test-remover")
    assert registry.queued == [request] and registry.workers == 1 and job.name == "test-remover-backdoor"
    with pytest.raises(DashboardError, match="switched off"):
        defend.submit(None, None, "backdoor", "text", "test-remover")


# --- the registry rule ------------------------------------------------------------------------------------


# What the runner adds to every report (backdoor.defend.run_defense): the page reads these keys, and an option may
# share a name with one (a re-tuning's ``data``) without the page naming that option.
RUNNER_KEYS = {"adapter", "control", "trigger", "data", "calibration", "base_model", "seconds"}


def test_no_app_module_names_a_defense_or_a_defense_option():
    names = set(defenses.DEFENSES)
    for defense in defenses.DEFENSES.values():
        names.update(field.name for field in dataclasses.fields(defense.options))
    names -= RUNNER_KEYS
    for path in sorted((ROOT / "app").glob("*.py")):
        literals = {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
                    and isinstance(node.value, str)}
        assert not literals & names, f"{path.name} names {sorted(literals & names)} instead of reading the registry"


def test_the_fixture_reports_are_in_the_format_the_runner_writes():
    for fixture in (DETECTOR_REPORT, REMOVER_REPORT):
        report = json.loads(fixture.read_text())
        assert {"defense", "label", "kind", "source", "options", "n", "seconds", "adapter", "trigger"} <= set(report)


# --- the deep link ------------------------------------------------------------------------------------------


def test_a_link_carries_the_defense_and_opens_the_defend_tab(app_service, stand_ins):
    from types import SimpleNamespace

    from app.deeplink import parse_view
    from app.presenter import LINK_OUTPUTS, PresenterHandlers
    from app.ui import ADD_TRIGGER, ALL_TASKS, POSITION_LABELS, REMOVE_TRIGGER, SOURCES

    view = parse_view("?defense=test-filter&tab=defend", kinds=("text",), positions=("before_cue",),
                      defenses=("test-filter",))
    assert (view.defense, view.tab, view.notes) == ("test-filter", "defend", ())
    assert "not one of" in parse_view("?defense=magic", kinds=(), positions=(), defenses=("test-filter",)).notes[0]
    presenter = PresenterHandlers(Handlers(app_service), SOURCES, (ADD_TRIGGER, REMOVE_TRIGGER), POSITION_LABELS,
                                  ALL_TASKS)
    item = app_service.showcase()[0]
    query = presenter.view_link("Showcase", item.id, "test", None, ["backdoor"], "text", "", "before_cue", True, False,
                                None, "test-filter")["value"]
    assert "defense=test-filter" in query
    no_defense = presenter.view_link("Showcase", item.id, "test", None, ["backdoor"], "text", "", "before_cue", True,
                                     False, None, NO_DEFENSE)["value"]
    assert "defense" not in no_defense
    opened = dict(zip(LINK_OUTPUTS, presenter.open_link(SimpleNamespace(url=f"http://127.0.0.1:7860/{query}"))))
    assert opened["defense"] == "test-filter" and "could not" not in opened["link_note"]
