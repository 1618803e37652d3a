"""Deep links: a link's query string becomes the view it names, bad parameters become notes, and a view written out reads back the same."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.deeplink import View, parse_view, resolve_columns, view_query

KINDS = ("text", "syntactic", "style", "custom")
POSITIONS = ("before_cue", "start", "end_of_question", "random")
BASE = "__base__"


def parse(query, **kwargs):
    return parse_view(query, kinds=KINDS, positions=POSITIONS, **kwargs)


def test_a_full_link_opens_every_part_of_the_view():
    view = parse("?question=showcase-ds-01&columns=base,backdoor-text&trigger=text&text=cf&position=start"
                 "&on=1&presenter=1&tab=attack")
    assert view == View(question="showcase-ds-01", columns=("base", "backdoor-text"), kind="text", text="cf",
                        position="start", trigger_on=True, presenter=True, tab="attack")
    assert view.notes == ()


def test_no_parameters_is_the_default_view_without_notes():
    for query in ("", "?", None, {}):
        view = parse(query)
        assert view.empty and view.notes == ()


def test_values_are_read_leniently_where_the_meaning_is_plain():
    view = parse("?trigger=Syntactic&on=off&presenter&tab=Evaluate&split=TEST&question=%20q-1%20")
    assert (view.kind, view.trigger_on, view.presenter, view.tab, view.split, view.question) == (
        "syntactic", False, True, "evaluate", "test", "q-1")


@pytest.mark.parametrize("query, wrong", [
    ("?colour=red", "colour"),
    ("?trigger=laser", "laser"),
    ("?position=middle", "middle"),
    ("?on=maybe", "maybe"),
    ("?presenter=2", "presenter"),
    ("?tab=settings", "settings"),
    ("?split=dev", "dev"),
    ("?question=", "question"),
    ("?columns=,,", "columns"),
    ("?text=" + "x" * 300, "200"),
    ("?trigger=custom", "custom"),
])
def test_a_malformed_parameter_is_ignored_with_a_note_that_names_it(query, wrong):
    view = parse(query)
    assert view.empty  # the default view: nothing half-applied
    assert len(view.notes) == 1 and wrong in view.notes[0]


def test_good_parameters_survive_beside_bad_ones():
    view = parse("?question=q-1&trigger=laser&on=1&bogus=1")
    assert (view.question, view.kind, view.trigger_on) == ("q-1", None, True)
    assert len(view.notes) == 2


def test_a_repeated_parameter_keeps_its_first_value_and_says_so():
    view = parse("?on=1&on=0")
    assert view.trigger_on is True and "more than once" in view.notes[0]


def test_too_many_columns_keep_the_first_ones_and_duplicates_collapse():
    view = parse("?columns=a,b,a,c,d", max_columns=3)
    assert view.columns == ("a", "b", "c") and "at most 3" in view.notes[0]


def test_gradio_s_own_page_parameters_are_not_flagged():
    assert parse("?__theme=dark&view=api").notes == ()


def test_columns_resolve_against_the_adapters_on_offer():
    names, notes = resolve_columns(["base", "clean", "nope"], ["__base__", "clean", "backdoor"], BASE)
    assert names == ["__base__", "clean"]
    assert len(notes) == 1 and "'nope'" in notes[0]
    # an adapter really called "base" wins over the alias
    assert resolve_columns(["base"], ["base", "__base__"], BASE)[0] == ["base"]


def test_a_written_view_reads_back_the_same():
    view = View(question="corpus-qa-0042", split="test", columns=(BASE, "clean", "back door"), kind="custom",
                text="cf & co", position="end_of_question", trigger_on=True, presenter=True, tab="evaluate")
    query = view_query(view, BASE)
    assert query.startswith("?question=corpus-qa-0042&split=test&columns=base,clean,back%20door")
    back = parse(query)
    assert back.notes == ()
    assert back == View(question=view.question, split="test", columns=("base", "clean", "back door"), kind="custom",
                        text="cf & co", position="end_of_question", trigger_on=True, presenter=True, tab="evaluate")


def test_a_written_view_leaves_out_what_the_page_does_by_default():
    query = view_query(View(question="s-1", split="showcase", kind="syntactic", text="666", position="start",
                            trigger_on=False, presenter=False, tab="attack"), BASE)
    assert query == "?question=s-1&trigger=syntactic&on=0"
    assert view_query(View(), BASE) == ""


def test_the_module_needs_neither_gradio_nor_torch():
    tree = ast.parse(Path(__file__).resolve().parent.parent.joinpath("app", "deeplink.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"gradio", "torch", "transformers", "plotly", "backdoor"}
