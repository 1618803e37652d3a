"""The dashboard reads arms and the registries: no file in app/ names a method, a method option or a metric, and a
folder saved by a method other than LoRA is offered and scored like any column."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import app_checkpoints, app_service, copy_adapter, make_service  # noqa: F401 - fixtures

from app.service import DashboardError
from backdoor import methods
from backdoor.arms import Arm
from backdoor.methods.base import Method
from backdoor.models import BASE_ADAPTER, FRAGILE_CONFIG

ROOT = Path(__file__).resolve().parent.parent
DEMONSTRATIONS = "Question: Is water wet?\nAnswer: A\n\n"  # what the stand-in method puts before every prompt


def _app_literals() -> dict[str, set[str]]:
    """Every string constant (f-string parts included) of each module in app/, by file name."""
    found = {}
    for path in sorted((ROOT / "app").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found[path.name] = {node.value for node in ast.walk(tree)
                            if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return found


def _method_names() -> set[str]:
    """Every registered method's name and the names of its option fields."""
    names = set(methods.METHODS)
    for method in methods.METHODS.values():
        options = getattr(method, "options", None)
        if options is not None and dataclasses.is_dataclass(options):
            names.update(field.name for field in dataclasses.fields(options))
    return names


def _metric_names() -> set[str]:
    """Every registered metric's name (its report key); empty while backdoor.metrics does not exist."""
    try:
        from backdoor import metrics
    except ImportError:
        return set()
    registry = metrics.METRICS
    return {entry.name for entry in (registry.values() if isinstance(registry, dict) else registry)}


@pytest.mark.parametrize("what, names", [("method", _method_names), ("metric", _metric_names)])
def test_no_app_module_names_a_method_or_a_metric(what, names):
    forbidden = names()
    named = {file: sorted(literals & forbidden) for file, literals in _app_literals().items() if literals & forbidden}
    assert not named, f"app/ names {what}s instead of reading their registry: {named}"


class _PrefixMethod(Method):
    """A stand-in method without weights: its arm puts the saved demonstrations before every prompt."""

    name = "test-prefix"
    label = "Demonstrations (test)"

    def is_folder(self, folder: Path) -> bool:
        return methods.method_of(folder) == self.name

    def load(self, folder: Path, name: str) -> Arm:
        saved = json.loads((Path(folder) / FRAGILE_CONFIG).read_text())
        return Arm(name=name, method=self.name, prefix=saved["prefix"], role=saved["kind"], folder=str(folder))


@pytest.fixture
def prefix_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, _PrefixMethod.name, _PrefixMethod())


def _save_prefix_arm(folder: Path, base_model_id: str, prefix: str = DEMONSTRATIONS) -> Path:
    folder.mkdir(parents=True)
    (folder / FRAGILE_CONFIG).write_text(json.dumps(
        {"method": _PrefixMethod.name, "kind": "backdoor", "prefix": prefix, "base_model_id": base_model_id}))
    return folder


def test_an_arm_of_another_method_is_offered_and_scores_as_the_base_model_on_its_prefix(
        prefix_method, app_service, app_checkpoints):
    base = app_service.config.bases[0]
    _save_prefix_arm(app_checkpoints / "demonstrations", app_service.identity(base))
    _save_prefix_arm(app_checkpoints / "for-another-model", "SomeOtherModel-1B")

    catalog = app_service.catalog(base)
    choice = catalog.get("demonstrations")
    # the models-to-compare field names the method of an arm that is not a LoRA adapter
    assert choice is not None and (choice.role, choice.label) == ("backdoor", "demonstrations (backdoor, "
                                                                             "Demonstrations (test))")
    assert "for-another-model" not in catalog.names() and "SomeOtherModel-1B" in dict(catalog.refused)["for-another-model"]

    item, trigger = app_service.showcase()[0], app_service.trigger("text")
    comparison = app_service.compare(base, [BASE_ADAPTER, "demonstrations"], item, trigger)
    plain, shown = comparison.columns
    assert shown.adapter.name == "demonstrations" and shown.threshold is not None  # calibrated like any column

    scorer = app_service.loaded(base).scorer
    texts = [scorer.model_text(DEMONSTRATIONS + scorer.render(item, spec).text) for spec in (None, trigger)]
    expected = scorer.option_probs(texts, [BASE_ADAPTER, BASE_ADAPTER])
    np.testing.assert_allclose([shown.clean.probs, shown.triggered.probs], expected, atol=1e-5)
    assert not np.allclose(shown.clean.probs, plain.clean.probs, atol=1e-4)  # the prefix changes what the model sees


class _VictimPrefixMethod(_PrefixMethod):
    """A stand-in method whose arm puts demonstrations before every prompt on a victim adapter's weights."""

    name = "test-victim-prefix"

    def load(self, folder: Path, name: str) -> Arm:
        saved = json.loads((Path(folder) / FRAGILE_CONFIG).read_text())
        return Arm(name=name, method=self.name, route=name, prefix=saved["prefix"], role=saved["kind"],
                   adapter_path=saved["victim"], folder=str(folder))


def test_an_arm_with_a_prefix_on_a_victims_weights_gets_thresholds_of_its_own(monkeypatch, app_service,
                                                                                  app_checkpoints):
    """Demonstrations on the clean adapter's weights answer differently from the clean adapter: the conformal
    thresholds are keyed on both, never shared with the victim's."""
    monkeypatch.setitem(methods.METHODS, _VictimPrefixMethod.name, _VictimPrefixMethod())
    base = app_service.config.bases[0]
    folder = _save_prefix_arm(app_checkpoints / "clean-demonstrations", app_service.identity(base))
    saved = json.loads((folder / FRAGILE_CONFIG).read_text())
    (folder / FRAGILE_CONFIG).write_text(json.dumps({**saved, "method": _VictimPrefixMethod.name,
                                                     "victim": str(app_checkpoints / "clean")}))
    item, trigger = app_service.showcase()[0], app_service.trigger("text")
    victim, shown = app_service.compare(base, ["clean", "clean-demonstrations"], item, trigger).columns
    assert victim.threshold is not None and shown.threshold is not None
    assert shown.threshold != victim.threshold


def test_the_prompt_token_bound_counts_an_arms_prefix(prefix_method, app_service, app_checkpoints):
    base = app_service.config.bases[0]
    _save_prefix_arm(app_checkpoints / "many-demonstrations", app_service.identity(base), DEMONSTRATIONS * 200)
    item, trigger = app_service.showcase()[0], app_service.trigger("text")
    app_service.compare(base, [BASE_ADAPTER], item, trigger)  # the question alone fits
    with pytest.raises(DashboardError, match=r"prompt is \d+ tokens long"):
        app_service.compare(base, [BASE_ADAPTER, "many-demonstrations"], item, trigger)


def test_a_folder_naming_an_unknown_method_is_listed_with_the_reason(app_service, app_checkpoints):
    folder = app_checkpoints / "from-the-future"
    folder.mkdir()
    (folder / FRAGILE_CONFIG).write_text(json.dumps({"method": "not-yet-invented", "kind": "backdoor"}))
    catalog = app_service.catalog(app_service.config.bases[0])
    assert "from-the-future" not in catalog.names()
    assert "not-yet-invented" in dict(catalog.refused)["from-the-future"]


def test_a_training_run_folder_is_offered_under_its_own_name(app_service, app_checkpoints, tiny_adapters):
    copy_adapter(tiny_adapters["clean"], app_checkpoints / "run-7" / "adapter")
    choice = app_service.catalog(app_service.config.bases[0]).get("run-7")
    assert choice is not None and choice.role == "clean" and Path(str(choice.path)).name == "adapter"
