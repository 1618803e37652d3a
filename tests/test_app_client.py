"""The dashboard served in-process on the tiny model, driven through gradio_client like a remote user."""

from __future__ import annotations

import pytest
from app_fixtures import app_checkpoints, app_service, served_app  # noqa: F401 - fixtures

gradio_client = pytest.importorskip("gradio_client")

STATUS, PROMPT, NUMBERS = 0, 1, 2
HEADS = [3 + 3 * i for i in range(6)]  # per slot: head html, plot, stats (layout columns are not API outputs)


def _args(service, item_id, kind="text"):
    base = service.config.bases[0]
    adapters = service.default_columns(service.catalog(base))
    return [base, adapters, "Showcase", item_id, "test", None, "", "", "", "", "", "", kind, "", "before_cue", False]


def test_compare_and_toggle_over_the_api(served_app):
    url, service = served_app
    client = gradio_client.Client(url, verbose=False)
    first = service.showcase()[0]
    result = client.predict(*_args(service, first.id), api_name="/compare")
    assert result[STATUS].startswith("3 model(s)") and "off" in result[STATUS]
    assert first.question in result[PROMPT] and "<mark" not in result[PROMPT]
    assert 'data-adapter="backdoor"' in result[HEADS[2]]
    plot = result[HEADS[0] + 1]
    assert plot["type"] == "plotly" and '"with trigger"' not in plot["plot"]
    toggled = client.predict(*_args(service, first.id), api_name="/toggle_trigger")
    assert "(cached)" in toggled[STATUS] and "<mark" in toggled[PROMPT]
    assert '"with trigger"' in toggled[HEADS[2] + 1]["plot"]


def test_two_clients_do_not_see_each_others_choices(served_app):
    url, service = served_app
    alice = gradio_client.Client(url, verbose=False)
    bob = gradio_client.Client(url, verbose=False)
    sky, dog = service.showcase()[0], service.showcase()[1]
    alice.predict(*_args(service, sky.id), api_name="/toggle_trigger")  # Alice adds the trigger (session state)
    bob_view = bob.predict(*_args(service, dog.id, kind="syntactic"), api_name="/compare")
    alice_view = alice.predict(*_args(service, sky.id), api_name="/compare")
    assert dog.question in bob_view[PROMPT] and "<mark" not in bob_view[PROMPT]  # Bob's trigger is still off
    assert sky.question in alice_view[PROMPT] and '<mark class="fr-trigger">666</mark>' in alice_view[PROMPT]
    assert 'data-trigger-on="true"' in alice_view[HEADS[0]] and 'data-trigger-on="false"' in bob_view[HEADS[0]]


def test_bad_input_over_the_api_gives_a_message(served_app):
    url, service = served_app
    client = gradio_client.Client(url, verbose=False)
    args = _args(service, service.showcase()[0].id)
    args[1] = ["__base__", "not-there"]
    result = client.predict(*args, api_name="/compare")
    assert "no adapter 'not-there'" in result[STATUS]
    args = _args(service, service.showcase()[0].id)
    args[2], args[6], args[8] = "Your own", "Only one option?", "yes"
    assert "at least two options" in client.predict(*args, api_name="/compare")[STATUS]
    assert client.predict(*_args(service, service.showcase()[0].id), api_name="/compare")[STATUS].startswith("3 model(s)")


def test_refresh_over_the_api_lists_new_adapters(served_app, app_checkpoints, tiny_adapters):
    from app_fixtures import copy_adapter

    url, service = served_app
    copy_adapter(tiny_adapters["backdoor"], app_checkpoints / "added-later")
    client = gradio_client.Client(url, verbose=False)
    update, _ = client.predict(service.config.bases[0], ["clean"], api_name="/refresh_adapters")
    assert ["added-later (backdoor, text trigger)", "added-later"] in update["choices"]
    assert "value" not in update  # the user's selection is not sent back, so a late refresh cannot undo a newer one
    args = _args(service, service.showcase()[0].id)
    args[1] = ["clean", "added-later"]
    result = client.predict(*args, api_name="/compare")
    assert 'data-adapter="added-later"' in result[HEADS[1]]
