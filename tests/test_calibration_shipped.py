"""Conformal thresholds shipped beside the adapters: the dashboard shows sets on its first compare without calibrating,
never trusts a stale file, calibrates what is missing in one pass, and keys its disk cache by content.

Fast tests on the tiny model (tests/conftest.py); the ``real_model`` tests check the files in checkpoints/.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import app_checkpoints, app_items, copy_adapter, make_service  # noqa: F401 - fixtures

from backdoor import calibration, uncertainty
from backdoor.models import BASE_ADAPTER
from backdoor.scoring import Cell
from dataset.schema import LETTERS

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"
COLUMNS = [BASE_ADAPTER, "clean", "backdoor"]


class CalibrationSpy:
    """Counts calibration passes (and the adapters in each) in place of, or around, the real one."""

    def __init__(self, monkeypatch, *, refuse: bool = False, hold: bool = False):
        self.passes: list[list[str]] = []
        self.gate = threading.Event()  # a held pass waits for release(), so a test sees the page mid-calibration
        if not hold:
            self.gate.set()
        real = calibration.calibration_probs

        def spy(scorer, adapters, items, **kwargs):
            self.passes.append(list(adapters))
            if refuse:
                raise AssertionError("no calibration work was expected")
            assert self.gate.wait(timeout=60)
            return real(scorer, adapters, items, **kwargs)

        monkeypatch.setattr(calibration, "calibration_probs", spy)


def ship_thresholds(service, base: str) -> dict[str, calibration.ConformalThresholds]:
    """What scripts/calibrate_shipped.py does: calibrate every column in one pass and write the files beside them."""
    found = service.calibrate_now(base)
    for name, thresholds in found.items():
        calibration.write_thresholds(service.shipped_thresholds_path(base, name), thresholds)
    return found


def first_compare(service):
    base = service.config.bases[0]
    return service.compare(base, COLUMNS, service.showcase()[0], service.trigger("text"))


def reference_threshold(service, internal: str, alpha: float) -> float:
    """The LAC threshold computed the plain way: this adapter alone, every calibration item, one Scorer call."""
    scorer = service.loaded(service.config.bases[0]).scorer
    items = service.calibration_items()
    probs = np.array([s.probs for s in scorer.score([Cell(item, None, internal) for item in items])])
    labels = np.array([LETTERS.index(item.answer) for item in items])
    return uncertainty.calibrate_threshold(uncertainty.lac_scores(probs, labels), alpha)


def test_shipped_thresholds_give_sets_on_the_first_compare_without_calibrating(tiny_model_dir, app_checkpoints,
                                                                                tmp_path, monkeypatch):
    shipped = ship_thresholds(make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-a"),
                              str(tiny_model_dir))
    assert (app_checkpoints / "clean" / calibration.THRESHOLDS_FILE).is_file()
    assert (app_checkpoints / calibration.BASE_THRESHOLDS_FILE).is_file()
    record = json.loads((app_checkpoints / "backdoor" / calibration.THRESHOLDS_FILE).read_text())
    assert set(record["lac"]) >= {"0.05", "0.1", "0.2"} and set(record["aps"]) >= {"0.05", "0.1", "0.2"}
    assert record["source"]["items"] == 6 and record["source"]["adapter_sha256"]

    spy = CalibrationSpy(monkeypatch, refuse=True)
    fresh = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-b", calibration="background")
    comparison = first_compare(fresh)
    assert spy.passes == []
    for column in comparison.columns:
        assert column.clean_set and column.triggered_set and column.calibration_note == ""
        assert column.threshold == pytest.approx(shipped[column.adapter.name].threshold(0.1))
    assert not list((tmp_path / "cache-b").glob("*.json"))  # nothing calibrated, nothing cached


def test_shipped_thresholds_equal_one_adapter_at_a_time_calibration(tiny_model_dir, app_checkpoints, tmp_path):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache")
    shipped = ship_thresholds(service, str(tiny_model_dir))
    for name in COLUMNS:
        for alpha in calibration.SHIPPED_ALPHAS:
            assert shipped[name].threshold(alpha) == pytest.approx(reference_threshold(service, name, alpha), abs=1e-6)


@pytest.mark.parametrize("stale", ["weights", "items", "alpha", "damaged"])
def test_a_stale_thresholds_file_is_ignored_and_recalibrated(tiny_model_dir, app_checkpoints, tmp_path, monkeypatch,
                                                             stale):
    shipped = ship_thresholds(make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-a"),
                              str(tiny_model_dir))
    path = app_checkpoints / "clean" / calibration.THRESHOLDS_FILE
    record = json.loads(path.read_text())
    record["lac"] = {alpha: 0.0 for alpha in record["lac"]}  # would give one-option sets if it were used
    if stale == "weights":  # the adapter was retrained in place since the file was written
        record["source"]["adapter_sha256"] = "0" * 64
    elif stale == "items":
        record["source"]["items_sha256"] = "0" * 64
    path.write_text("{ not json" if stale == "damaged" else json.dumps(record))
    config = {"alpha": 0.15} if stale == "alpha" else {}

    spy = CalibrationSpy(monkeypatch)
    fresh = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-b", calibration="sync", **config)
    clean = next(c for c in first_compare(fresh).columns if c.adapter.name == "clean")
    alpha = fresh.config.alpha
    assert clean.threshold == pytest.approx(reference_threshold(fresh, "clean", alpha), abs=1e-6)
    assert clean.threshold != 0.0
    recalibrated = [name for names in spy.passes for name in names]
    if stale == "alpha":  # a file without the service's alpha is of no use for any column
        assert sorted(recalibrated) == sorted(COLUMNS)
    else:
        assert recalibrated == ["clean"]
        assert shipped["clean"].threshold(alpha) == pytest.approx(clean.threshold)  # same weights, same threshold


def test_missing_thresholds_calibrate_all_columns_in_one_background_pass(tiny_model_dir, app_checkpoints, tmp_path,
                                                                         monkeypatch):
    spy = CalibrationSpy(monkeypatch, hold=True)
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", calibration="background")
    scorer = service.loaded(service.config.bases[0]).scorer
    calls = []
    score = scorer.score
    monkeypatch.setattr(scorer, "score", lambda cells, *a, **k: calls.append(list(cells)) or score(cells, *a, **k))
    first = first_compare(service)
    assert all(c.clean_set is None and "calibrating on 6 clean items" in c.calibration_note for c in first.columns)
    spy.gate.set()
    assert service.wait_for_calibration(timeout=120)
    assert spy.passes == [COLUMNS]  # one pass for the three columns, not three
    calibrating = [cells for cells in calls if all(cell.trigger is None for cell in cells) and len(cells) > 1
                   and len({cell.item.id for cell in cells}) <= calibration.CHUNK_ITEMS]
    # Small chunks (the lock is free between them); the two LoRA adapters share each call, the base model runs apart.
    assert {frozenset(cell.adapter for cell in cells) for cells in calibrating} == {
        frozenset({"clean", "backdoor"}), frozenset({BASE_ADAPTER})}
    again = first_compare(service)
    assert all(c.clean_set and c.calibration_note == "" for c in again.columns)


def test_disk_cache_survives_a_copy_of_the_adapter_folder_to_another_path(tiny_model_dir, app_checkpoints, tmp_path,
                                                                          monkeypatch):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache")
    before = first_compare(service)
    assert list((tmp_path / "cache").glob("*.json"))
    # A fresh checkout elsewhere: other paths, other modification times, another folder name for one adapter.
    elsewhere = tmp_path / "checkout" / "checkpoints"
    elsewhere.mkdir(parents=True)
    copy_adapter(app_checkpoints / "clean", elsewhere / "clean")
    copy_adapter(app_checkpoints / "backdoor", elsewhere / "backdoor")
    for weights in elsewhere.glob("*/adapter_model.safetensors"):
        os.utime(weights, (1_000_000_000, 1_000_000_000))
    assert calibration.adapter_sha256(elsewhere / "clean") == calibration.adapter_sha256(app_checkpoints / "clean")

    spy = CalibrationSpy(monkeypatch, refuse=True)
    moved = make_service(tiny_model_dir, elsewhere, tmp_path / "cache", calibration="background")
    after = first_compare(moved)
    assert spy.passes == []
    assert [c.threshold for c in after.columns] == pytest.approx([c.threshold for c in before.columns])


def test_a_new_adapter_beside_shipped_ones_is_the_only_one_calibrated(tiny_model_dir, app_checkpoints, tmp_path,
                                                                       monkeypatch, tiny_upper_adapters):
    ship_thresholds(make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-a"), str(tiny_model_dir))
    copy_adapter(tiny_upper_adapters["backdoor"], app_checkpoints / "late")
    spy = CalibrationSpy(monkeypatch, hold=True)
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache-b", calibration="background")
    base = service.config.bases[0]
    columns = service.compare(base, [*COLUMNS, "late"], service.showcase()[0], service.trigger("text")).columns
    assert [c.clean_set is not None for c in columns] == [True, True, True, False]
    spy.gate.set()
    assert service.wait_for_calibration(timeout=120)
    assert spy.passes == [["late"]]


def test_the_script_writes_files_that_check_as_fresh_until_an_adapter_changes(tiny_model_dir, app_checkpoints,
                                                                              tmp_path, monkeypatch, capsys):
    from scripts.calibrate_shipped import main

    monkeypatch.setattr("app.service._default_calibration_items", lambda: app_items("cal"))
    args = ["--checkpoints", str(app_checkpoints), "--base", str(tiny_model_dir)]
    assert main([*args, "--check"]) == 1
    assert "is missing" in capsys.readouterr().out
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    # Retrained in place: new weights under the old folder name (a copy of a whole folder, its file included, is fine).
    shutil.copyfile(app_checkpoints / "backdoor" / "adapter_model.safetensors",
                    app_checkpoints / "clean" / "adapter_model.safetensors")
    assert main([*args, "--check"]) == 1
    assert "clean: " in capsys.readouterr().out


# --- the files in checkpoints/ on the embedded default model -------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_service(tmp_path_factory):
    if not (CHECKPOINTS / "clean" / calibration.THRESHOLDS_FILE).is_file():
        pytest.skip("no shipped thresholds (python scripts/calibrate_shipped.py writes them)")
    from app.service import DashboardService, ServiceConfig

    cache = tmp_path_factory.mktemp("empty-calibration-cache")
    return DashboardService(ServiceConfig(adapters_dir=str(CHECKPOINTS), calibration="background"), cache_dir=cache)


@pytest.mark.real_model
def test_shipped_files_match_the_shipped_adapters_and_calibration_split(shipped_service):
    assert shipped_service.shipped_threshold_problems() == []


@pytest.mark.real_model
def test_shipped_adapters_show_sets_on_the_first_compare(shipped_service, monkeypatch):
    CalibrationSpy(monkeypatch, refuse=True)
    base = shipped_service.config.bases[0]
    catalog = shipped_service.catalog(base)
    names = catalog.names()
    assert {"clean", "backdoor-text", "backdoor-syntactic", "backdoor-style"} <= set(names)
    most = shipped_service.limits.max_columns  # every shipped adapter, in as few compares as the page allows
    columns = [column for start in range(0, len(names), most)
               for column in shipped_service.compare(base, names[start : start + most], shipped_service.showcase()[0],
                                                     shipped_service.default_trigger(catalog)).columns]
    assert [column.adapter.name for column in columns] == names
    for column in columns:
        assert column.clean_set and column.triggered_set and column.calibration_note == "", column.adapter.name
    backdoor = next(c for c in columns if c.adapter.name == "backdoor-text")
    assert len(backdoor.triggered_set) >= len(backdoor.clean_set)


@pytest.mark.real_model
def test_shipped_thresholds_are_what_the_script_computes(shipped_service):
    """Recalibrate the headline backdoor (about a minute on two cores) and compare with its shipped file."""
    base = shipped_service.config.bases[0]
    computed = shipped_service.calibrate_now(base, ["backdoor-text"])["backdoor-text"]
    shipped = calibration.read_thresholds(shipped_service.shipped_thresholds_path(base, "backdoor-text"))
    assert shipped is not None and shipped.source == computed.source
    for method in ("lac", "aps"):
        for alpha in calibration.SHIPPED_ALPHAS:
            assert shipped.threshold(alpha, method) == pytest.approx(computed.threshold(alpha, method), abs=1e-5)
