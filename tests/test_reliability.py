"""The reliability suite: bad inputs sent through the public API, as a hostile visitor or a careless user would.

The dashboard is served in-process on the tiny model and driven with ``gradio_client`` (a normal app and a
demo-mode one). Each case asserts the exact sentence the visitor gets; the cases cover issue 22's list and
every defect of issue 27 as a regression test. At the end the app still answers a normal question exactly as a
fresh model does, and nothing was written outside its folders (every path-like input carries a canary name
that is then searched for).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from app_fixtures import app_items, copy_adapter, free_port, make_service

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

CANARY = "fragile-canary-5e1f"  # in every path or name a bad input tries to write to
COMPARE_FIELDS = ("base", "adapters", "source", "showcase_id", "split", "corpus_id", "question", "context", "a", "b",
                  "c", "d", "kind", "custom_text", "position", "tokens")
EVALUATE_FIELDS = ("base", "dataset", "max_items", "adapter", "control", "kind", "text", "position")
STYLE_TRIGGER = {"kind": "style", "text": None, "position": "before_cue", "seed": 0}


# --- the served apps -------------------------------------------------------------------------------------


@dataclass
class World:
    """Both served apps and the folders they may write to."""

    root: Path
    checkpoints: Path
    data: Path
    url: str
    demo_url: str
    service: Any
    demo_service: Any
    lab: Any
    page: Any  # the normal app's gr.Blocks
    demo_page: Any
    started: float
    temp_before: set

    @property
    def base(self) -> str:
        return self.service.config.bases[0]

    def client(self, demo: bool = False):
        return gradio_client.Client(self.demo_url if demo else self.url, verbose=False)

    def fmt(self, text: str) -> str:
        return text.format(base=self.base, identity=self.service.identity(self.base), data=self.data,
                           checkpoints=self.checkpoints, copy=self.root / "tiny-copy")


def _data_files(folder: Path) -> None:
    folder.mkdir()
    (folder / "random.jsonl").write_bytes(bytes([0x8F, 0xFF, 0x00, 0x13]) * 64)
    (folder / "not-json.json").write_text("hello, this is not JSON\n")
    (folder / "missing.json").write_text(json.dumps([{"id": "m1", "question": "What is missing?"}]))
    seven = {"id": "s1", "task": "question answering", "question": "Pick one.", "answer": "A",
             "choices": {letter: f"option {letter}" for letter in "ABCDEFG"}}
    (folder / "seven.json").write_text(json.dumps([seven]))
    normal, long = app_items("file")[:2]
    long_item = dict(id="file-long", task="reading comprehension", question="How many sevens?", answer="A",
                     context="7 " * 2500, choices=normal.choices)
    (folder / "long.json").write_text(json.dumps([dict(id=normal.id, task=normal.task, question=normal.question,
                                                       context=normal.context, choices=normal.choices,
                                                       answer=normal.answer), long_item]))


def _serve(service, lab):
    from app.ui import build_ui, launch_kwargs

    page = build_ui(service, lab)
    page.queue(default_concurrency_limit=8)
    _, url, _ = page.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            ssr_mode=False, show_error=True, **launch_kwargs())  # as app/__main__.py launches
    return page, url


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, tiny_adapters):
    from app.lab import Lab

    temp_before = set(os.listdir(tempfile.gettempdir()))
    started = time.time()
    root = tmp_path_factory.mktemp("reliability")
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    for name, path in tiny_adapters.items():
        copy_adapter(path, checkpoints / name)
    # Sorted first by name, a style backdoor: the Evaluate tab must still open on the text backdoor and its trigger.
    copy_adapter(tiny_adapters["backdoor"], checkpoints / "a-style-backdoor", trigger=STYLE_TRIGGER)
    copy_adapter(tiny_adapters["clean"], checkpoints / "other-base", base_model_id="SomeOtherModel-1B")
    corrupt = copy_adapter(tiny_adapters["backdoor"], checkpoints / "corrupt")
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    _data_files(root / "data")
    model_copy = root / "tiny-copy"
    shutil.copytree(tiny_model_dir, model_copy)

    service = make_service(tiny_model_dir, checkpoints, root / "cache", jobs_dir=str(root / "jobs"))
    lab = Lab(service, results_dir=root / "results", start_worker=False)
    page, url = _serve(service, lab)
    demo_service = make_service(tiny_model_dir, checkpoints, root / "demo-cache", demo=True, max_models=1,
                                bases=(str(tiny_model_dir), str(model_copy)))
    demo_page, demo_url = _serve(demo_service, Lab(demo_service, results_dir=root / "demo-results"))
    try:
        yield World(root, checkpoints, root / "data", url, demo_url, service, demo_service, lab, page, demo_page,
                    started, temp_before)
    finally:
        page.close()
        demo_page.close()


@pytest.fixture(scope="module")
def client(world):
    return world.client()


@pytest.fixture(scope="module")
def demo_client(world):
    return world.client(demo=True)


def compare_args(world: World, **changes) -> list:
    values = dict(base=world.base, adapters=["__base__", "clean", "backdoor"], source="Showcase",
                  showcase_id=world.service.showcase()[0].id, split="test", corpus_id=None, question="", context="",
                  a="", b="", c="", d="", kind="text", custom_text="", position="before_cue", tokens=False)
    unknown = set(changes) - set(values)
    assert not unknown, unknown
    values.update(changes)
    return [values[name] for name in COMPARE_FIELDS]


def own(world: World, question: str, *options: str, context: str = "", **changes) -> list:
    """The attack demo's "Your own" question."""
    slots = dict(zip("abcd", list(options) + [""] * (4 - len(options))))
    return compare_args(world, source="Your own", question=question, context=context, **slots, **changes)


def evaluate_args(world: World, **changes) -> list:
    values = dict(base=world.base, dataset="test", max_items=4, adapter="backdoor", control="clean", kind="text",
                  text="", position="before_cue")
    values.update(changes)
    return [values[name] for name in EVALUATE_FIELDS]


def training_args(world: World, name: str = f"{CANARY}-ok", **changes) -> list:
    fields = world.lab.form_fields()
    values = {spec.name: spec.default for spec in fields}
    values.update(max_items=4, epochs=1)
    unknown = set(changes) - set(values)
    assert not unknown, unknown
    values.update(changes)
    return [name, 1] + [values[spec.name] for spec in fields]


def raw_answer(url: str, page, endpoint: str, args: list, pad: bool = True) -> str:
    """Like :func:`answer`, over Gradio's plain HTTP API with JSON escapes (``\\ud800`` stays a lone surrogate).
    Inputs after ``args`` (session state, later controls) get the values the page was built with."""
    import httpx

    config = page.config
    dependency = next(d for d in config["dependencies"] if d.get("api_name") == endpoint.strip("/"))
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    if pad:
        args = list(args) + [values.get(i) for i in dependency["inputs"][len(args):]]

    with httpx.Client(base_url=url, timeout=60) as http:
        posted = http.post(f"gradio_api/call{endpoint}", content=json.dumps({"data": args}),
                           headers={"Content-Type": "application/json"})
        stream = http.get(f"gradio_api/call{endpoint}/{posted.json()['event_id']}").text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.M)
    kind, data = events[-1]
    if kind == "error":
        error = json.loads(data)
        return f"Error: {error['error'] if isinstance(error, dict) else error}"
    return json.loads(data)[0]


def answer(client, endpoint: str, args: list) -> str:
    """The sentence a visitor reads: the status output, or the error Gradio raised."""
    try:
        result = client.predict(*args, api_name=endpoint)
    except AppError as err:
        return f"Error: {err.message}"
    return result[0] if isinstance(result, (list, tuple)) else result


# --- the cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str
    args: Callable[[World], list]
    expected: str  # exact, after World.fmt; with match="prefix" or "regex" as said
    match: str = "exact"
    demo: bool = False
    # Sent as raw HTTP: gradio_client cannot encode a lone surrogate or NaN, nor send too few inputs; a script can.
    # "padded": the inputs after the given ones get the page's values; "as-is": sent exactly as given.
    raw: str = ""


ADAPTERS_DIR_NOTE = "press ↻ to re-read the folder and pick from the list."
CASES = [
    # The attack demo's own question (issue 22's list).
    Case("empty question", "/compare", lambda w: own(w, "", "yes", "no"),
         "⚠️ Type a question first (or pick one from the showcase)."),
    Case("whitespace-only question", "/compare", lambda w: own(w, " \n\t ", "yes", "no"),
         "⚠️ Type a question first (or pick one from the showcase)."),
    Case("100 kB question", "/compare", lambda w: own(w, "x" * 100_000, "yes", "no"),
         "⚠️ The question has 100000 characters; this dashboard takes at most 4000. Shorten it."),
    Case("control character in the question", "/compare", lambda w: own(w, "Is\x07 this fine?", "yes", "no"),
         "⚠️ The question holds a control character (U+0007 at position 3) that the page cannot show; remove it."),
    Case("lone surrogate in the question", "/compare", lambda w: own(w, "Why\ud800?", "yes", "no"),
         "⚠️ The question holds an invalid character (a lone surrogate, U+D800, at position 4); retype that part of "
         "the text.", raw="padded"),
    Case("control character in an option", "/compare", lambda w: own(w, "Which?", "yes", "n\x00o"),
         "⚠️ The option B holds a control character (U+0000 at position 2) that the page cannot show; remove it."),
    Case("one option", "/compare", lambda w: own(w, "Only one option?", "yes"),
         '⚠️ Give at least two options (A and B). E "I don\'t know" and F "None of the above" are added for you.'),
    Case("duplicate options", "/compare", lambda w: own(w, "Which colour?", "Blue", "Red", "blue"),
         "⚠️ Options A and C are the same text; give every option its own answer."),
    Case("option over the length cap", "/compare", lambda w: own(w, "Which?", "yes", "n" * 1001),
         "⚠️ Option B is longer than 1000 characters; shorten it."),
    Case("context over the token bound", "/compare", lambda w: own(w, "How many sevens?", "many", "few",
                                                                   context="7 " * 2500),
         r"⚠️ This question's prompt is \d+ tokens long; this dashboard scores prompts of at most 1024 tokens "
         r"\(instruction, context, question, options and trigger together\)\. Shorten the context or the question\.",
         match="regex"),
    Case("too few inputs", "/compare", lambda w: compare_args(w)[:3],
         r"Error: An event handler \(compare\) didn't receive enough input values \(needed: \d+, got: 3\)\..*",
         match="regex", raw="as-is"),
    Case("unknown showcase question", "/compare", lambda w: compare_args(w, showcase_id=f"{CANARY}"),
         f"⚠️ No question '{CANARY}' in the showcase split; pick one from the list."),
    # Models to compare.
    Case("unknown adapter", "/compare", lambda w: compare_args(w, adapters=["__base__", "not-there"]),
         "⚠️ There is no adapter 'not-there' in {checkpoints} for '{base}'; " + ADAPTERS_DIR_NOTE),
    Case("adapter path outside the adapters folder", "/compare",
         lambda w: compare_args(w, adapters=[f"../../{CANARY}"]),
         f"⚠️ There is no adapter '../../{CANARY}' in {{checkpoints}} for '{{base}}'; " + ADAPTERS_DIR_NOTE),
    Case("adapter for another base model", "/compare", lambda w: compare_args(w, adapters=["other-base"]),
         "⚠️ Adapter 'other-base' cannot be used with '{base}': trained for base model 'SomeOtherModel-1B', not "
         "'{identity}'."),
    Case("corrupt safetensors", "/compare", lambda w: compare_args(w, adapters=["__base__", "corrupt"]),
         "⚠️ Adapter 'corrupt' could not be loaded: adapter_model.safetensors is damaged (", match="prefix"),
    Case("one adapter name as a string, not letters", "/compare", lambda w: compare_args(w, adapters="clean"),
         r"1 model\(s\), trigger \*\*.*", match="regex"),
    Case("a number for the adapter list", "/compare", lambda w: compare_args(w, adapters=7),
         "⚠️ Models to compare: expected a list of adapter names (such as ['__base__', 'clean']), got 7."),
    Case("seven models in demo mode", "/compare",
         lambda w: compare_args(w, base=w.demo_service.config.bases[0], adapters=["__base__", "clean", "backdoor",
                                                                                   "a-style-backdoor", "x", "y", "z"]),
         "⚠️ Compare at most 4 models at once; untick some.", demo=True),
    # Base models.
    Case("base model path that is not a model", "/compare", lambda w: compare_args(w, base=f"../{CANARY}"),
         f"⚠️ Cannot use base model '../{CANARY}': model '../{CANARY}': tried the local path ../{CANARY}, which is "
         "not a model folder or .gguf file"),
    Case("another base model in demo mode", "/compare", lambda w: compare_args(w, base="HuggingFaceTB/SmolLM2-1.7B"),
         "Error: Base model: 'HuggingFaceTB/SmolLM2-1.7B' is not one of the choices ('{base}', '{copy}').", demo=True),
    # Triggers.
    Case("unknown trigger kind", "/compare", lambda w: compare_args(w, kind="bogus"),
         "Error: Trigger: 'bogus' is not one of the choices ('text', 'syntactic', 'style', 'custom')."),
    Case("unknown question source", "/compare", lambda w: compare_args(w, source="Elsewhere"),
         "Error: Question: 'Elsewhere' is not one of the choices ('Showcase', 'Corpus', 'Your own')."),
    Case("custom trigger without text", "/compare", lambda w: compare_args(w, kind="custom", custom_text="  "),
         "⚠️ Type the text of your custom trigger first."),
    Case("trigger text over the cap", "/compare", lambda w: compare_args(w, custom_text="6" * 201),
         "⚠️ The trigger text is longer than 200 characters; shorten it."),
    Case("control character in the trigger", "/compare", lambda w: compare_args(w, custom_text="66\x1b6"),
         "⚠️ The trigger text holds a control character (U+001B at position 3) that the page cannot show; remove it."),
    # Evaluate.
    Case("dataset file of random bytes", "/evaluate", lambda w: evaluate_args(w, dataset=str(w.data / "random.jsonl")),
         "⚠️ That dataset cannot be read: {data}/random.jsonl: not a text file (byte 0 is not UTF-8); pass a .json or "
         ".jsonl file of six-option items"),
    Case("dataset file that is not JSON", "/evaluate", lambda w: evaluate_args(w, dataset=str(w.data / "not-json.json")),
         "⚠️ That dataset cannot be read: {data}/not-json.json: not valid JSON (Expecting value: line 1 column 1 "
         "(char 0))"),
    Case("JSON items with missing fields", "/evaluate", lambda w: evaluate_args(w, dataset=str(w.data / "missing.json")),
         "⚠️ That dataset cannot be read: {data}/missing.json item 0: field 'choices' is missing"),
    Case("an item with seven options", "/evaluate", lambda w: evaluate_args(w, dataset=str(w.data / "seven.json")),
         "⚠️ That dataset cannot be read: {data}/seven.json item 0: item 's1': field 'choices' has unexpected key(s) "
         "['G']; only A-F are allowed"),
    Case("dataset path outside every folder", "/evaluate", lambda w: evaluate_args(w, dataset=f"../../{CANARY}"),
         f"⚠️ That dataset cannot be read: '../../{CANARY}' is neither a split (train, calibration, test, showcase) nor "
         "a .json/.jsonl file"),
    Case("an item over the token bound", "/evaluate", lambda w: evaluate_args(w, dataset=str(w.data / "long.json")),
         r"⚠️ 1 of the 2 questions have prompts over the 1024-token limit \(the longest, 'file-long', has \d+\); "
         r"remove them from the dataset or shorten them\.", match="regex"),
    Case("max items as text", "/evaluate", lambda w: evaluate_args(w, max_items="abc"),
         "Error: Max items: 'abc' is not a number; give a number."),
    Case("max items NaN", "/evaluate", lambda w: evaluate_args(w, max_items=float("nan")),
         "Error: Max items: nan is not a finite number; give a number.", raw="padded"),
    Case("max items infinite", "/evaluate", lambda w: evaluate_args(w, max_items=float("inf")),
         "Error: Max items: inf is not a finite number; give a number.", raw="padded"),
    Case("max items 1.5 is not rounded", "/evaluate", lambda w: evaluate_args(w, max_items=1.5),
         "⚠️ Max items must be a whole number of at least 1, not 1.5."),
    Case("max items 0", "/evaluate", lambda w: evaluate_args(w, max_items=0),
         "Error: Max items: Value 0 is less than minimum value 1."),
    Case("no adapter to evaluate", "/evaluate", lambda w: evaluate_args(w, adapter=""),
         "⚠️ Pick the adapter to evaluate (the backdoored one)."),
    Case("a dataset file in demo mode", "/evaluate",
         lambda w: evaluate_args(w, base=w.demo_service.config.bases[0], dataset=str(w.data / "long.json")),
         "Error: Dataset: '{data}/long.json' is not one of the choices ('train', 'calibration', 'test', 'showcase').",
         demo=True),
    Case("a huge evaluation in demo mode", "/evaluate",
         lambda w: evaluate_args(w, base=w.demo_service.config.bases[0], max_items=100_000),
         "Error: Max items: Value 100000 is greater than maximum value 20.", demo=True),
    Case("a second base model beyond the demo's limit", "/compare",
         lambda w: compare_args(w, base=w.demo_service.config.bases[1]),
         "⚠️ This demo keeps at most 1 base model(s) loaded; '{copy}' cannot be loaded beside them. Pick "
         "one of the models already in use.", demo=True),
    Case("a prompt over the demo's token bound", "/compare",
         lambda w: own(w, "How many sevens?", "many", "few", context="7 " * 700, base=w.demo_service.config.bases[0],
                       adapters=["__base__"]),
         r"⚠️ This question's prompt is \d+ tokens long; this dashboard scores prompts of at most 512 tokens .*",
         match="regex", demo=True),
    # Training.
    Case("job name with a slash", "/start_training", lambda w: training_args(w, name=f"../{CANARY}"),
         f"⚠️ Not started — adapter name '../{CANARY}' is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
         "starting with a letter or digit. Fix it and press Start again."),
    Case("job name '..'", "/start_training", lambda w: training_args(w, name=".."),
         "⚠️ Not started — adapter name '..' is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting "
         "with a letter or digit. Fix it and press Start again."),
    Case("absurd epochs", "/start_training", lambda w: training_args(w, epochs=10**9),
         "⚠️ Not started — epochs: 1000000000 is above the maximum 1000. Fix it and press Start again."),
    Case("absurd batch size", "/start_training", lambda w: training_args(w, batch_size=10**9),
         "⚠️ Not started — batch size: 1000000000 is above the maximum 1024. Fix it and press Start again."),
    Case("dtype int3", "/start_training", lambda w: training_args(w, dtype="int3"),
         "⚠️ Not started — dtype: 'int3' is not one of '', 'float32', 'fp32', 'bfloat16', 'bf16', 'float16', 'fp16'. "
         "Fix it and press Start again."),
    Case("device that is not a device", "/start_training", lambda w: training_args(w, device="gpu please"),
         "⚠️ Not started — device: 'gpu please' is not a device: use '' (automatic), 'cpu', 'cuda', 'cuda:N' or 'mps'. "
         "Fix it and press Start again."),
    Case("negative learning rate", "/start_training", lambda w: training_args(w, learning_rate=-0.001),
         "⚠️ Not started — learning rate: -0.001 must be positive. Fix it and press Start again."),
    Case("training data outside every folder", "/start_training",
         lambda w: training_args(w, data=f"../../{CANARY}.jsonl"),
         f"⚠️ Not started — data: ../../{CANARY}.jsonl: no such dataset file; pass a .json or .jsonl file of "
         "six-option items. Fix it and press Start again."),
    Case("zero processes", "/start_training", lambda w: [f"{CANARY}-p", 0] + training_args(w)[2:],
         "Error: Processes: Value 0 is less than minimum value 1."),
]


def check(case: Case, world: World, got: str) -> None:
    expected = world.fmt(case.expected)
    if case.match == "exact":
        assert got == expected
    elif case.match == "prefix":
        assert got.startswith(expected), got
    else:
        assert re.fullmatch(expected, got, flags=re.S), got
    assert "Traceback" not in got


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_its_sentence(case, world, client, demo_client):
    if case.raw:
        got = raw_answer(world.demo_url if case.demo else world.url, world.demo_page if case.demo else world.page,
                         case.endpoint, case.args(world), pad=case.raw == "padded")
    else:
        got = answer(demo_client if case.demo else client, case.endpoint, case.args(world))
    check(case, world, got)


@pytest.mark.parametrize("question, shown", [
    ("<script>alert('x')</script> Which <b>one</b>?",
     "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Which &lt;b&gt;one&lt;/b&gt;?"),
    ("ما هو لون السماء؟ 🌤️ Which colour?", "ما هو لون السماء؟ 🌤️ Which colour?"),
], ids=["HTML and script in a question", "right-to-left text and emoji"])
def test_unusual_text_is_scored_and_shown_as_text(question, shown, world, client):
    status, prompt = client.predict(*own(world, question, "blue", "grey"), api_name="/compare")[:2]
    assert status.startswith("3 model(s)")
    assert f"Question: {shown}" in prompt and "<script>" not in prompt and "<b>" not in prompt


# --- issue 27's defects that need more than one call --------------------------------------------------------


def test_the_gpu_this_machine_lacks_is_refused_before_queueing(world, client):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    expected = ("⚠️ Not started — device: 'cuda:7' asks for a GPU, but this machine has none; use '' or 'cpu'. Fix it "
                "and press Start again." if not torch.cuda.is_available() else
                f"⚠️ Not started — device: 'cuda:7': this machine has {torch.cuda.device_count()} GPU(s)")
    assert answer(client, "/start_training", training_args(world, device="cuda:7")).startswith(expected)
    assert not world.lab.jobs()


@pytest.fixture
def someone_elses_job(world):
    """A queued job of another visitor (queued through the registry: no worker process starts)."""
    from backdoor.config import TrainConfig

    config = TrainConfig(kind="clean", base_model=world.base, data="test", max_items=2, eval_items=0)
    job = world.lab.registry.submit(config, f"{CANARY}-theirs-{time.monotonic_ns()}")
    yield job
    world.lab.registry.cancel(job.id)


@pytest.mark.parametrize("job_id, expected", [
    ("", "⚠️ Pick the job to cancel in the Watching list first."),
    ("../../etc", "⚠️ '../../etc' is not a job id (they look like 20250101-120000-a1b2c3); pick a job from the list"),
    ("20250101-000000-abcdef", "⚠️ There is no job '20250101-000000-abcdef'; pick a job from the list"),
], ids=["empty id", "path-like id", "unknown id"])
def test_cancelling_an_unknown_job_cancels_nobody(job_id, expected, world, client, someone_elses_job):
    assert answer(client, "/cancel_job", [job_id]) == expected
    assert world.lab.registry.get(someone_elses_job.id).status == "queued"  # before the fix: cancelled


def test_cancelling_a_job_by_its_id_cancels_exactly_that_one(world, client, someone_elses_job):
    other = world.lab.registry.submit(world.lab.train_config({"kind": "clean", "data": "test", "max_items": 2,
                                                               "eval_items": 0}), f"{CANARY}-mine")
    assert answer(client, "/cancel_job", [other.id]) == f"Cancelled **{CANARY}-mine** before it started."
    assert world.lab.registry.get(other.id).status == "cancelled"
    assert world.lab.registry.get(someone_elses_job.id).status == "queued"


def test_one_model_spelled_three_ways_is_loaded_once(world, client):
    folder = Path(world.base)
    spellings = [str(folder), f"{folder}/", str(folder.parent / "." / folder.name)]
    for spelling in spellings:
        assert answer(client, "/compare", compare_args(world, base=spelling)).startswith("3 model(s)")
    assert world.service.loaded_models() == [str(folder.resolve())]


def test_loaded_models_are_bounded_least_recently_used_out(world, tiny_model_dir):
    from app.service import DashboardService, ServiceConfig

    copy = world.root / "tiny-copy"
    service = DashboardService(ServiceConfig(adapters_dir=str(world.checkpoints), device="cpu", max_models=1,
                                             bases=(str(tiny_model_dir),), calibration="off"),
                               showcase=app_items(), cache_dir=world.root / "lru-cache")
    service.loaded(str(tiny_model_dir))
    service.loaded(str(copy))
    assert service.loaded_models() == [str(copy.resolve())]


def test_the_evaluate_tab_opens_with_a_matching_adapter_and_trigger(world, client):
    components = {c.get("props", {}).get("elem_id"): c["props"] for c in world.page.config["components"]}
    assert components["fr-eval-adapter"]["value"] == "backdoor"  # the text backdoor, not the first by name (style)
    kinds = [c["props"] for c in world.page.config["components"]
             if c["props"].get("label") == "Trigger" and c["props"].get("value")]
    assert {props["value"] for props in kinds} == {"text"}  # the demo's and the Evaluate tab's trigger
    kind, text, position = client.predict(world.base, "a-style-backdoor", api_name="/eval_adapter_trigger")
    assert kind["value"] == "style" and text["visible"] is False
    kind, text, _ = client.predict(world.base, "backdoor", api_name="/eval_adapter_trigger")
    assert kind["value"] == "text" and text["visible"] is True


def test_the_cap_note_names_demo_mode_only_in_demo_mode(world, client, monkeypatch):
    from app.service import Limits

    monkeypatch.setattr(type(world.service), "limits", property(lambda self: Limits(eval_items=3)))
    status = answer(client, "/evaluate", evaluate_args(world, max_items=5))
    assert "(this dashboard evaluates at most 3 of the 5 asked for)" in status and "demo" not in status


def test_a_waiting_request_gets_the_model_before_a_long_one_takes_it_back():
    """The scorer's lock is handed over in arrival order, so a question interleaves with a long request's chunks."""
    from backdoor.scoring import FairLock

    lock, order = FairLock(), []
    lock.acquire()
    waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("visitor"), lock.release()))
    waiter.start()
    while not lock._queue:
        time.sleep(0.001)
    lock.release()
    with lock:  # the long request's next chunk: queued behind the visitor
        order.append("long request")
    waiter.join()
    assert order == ["visitor", "long request"]


def test_a_long_prompt_is_scored_a_few_rows_per_hold_of_the_model(world):
    scorer = world.service.loaded(world.base).scorer
    texts = ["7 " * 1500] * 6 + ["short"] * 6
    chunks = scorer._chunks(list(range(12)), texts)
    assert [index for chunk in chunks for index in chunk] == list(range(12))
    assert all(sum(index < 6 for index in chunk) == 1 for chunk in chunks[:6])  # 1,500-token rows: one per hold


def test_result_folders_are_removed_on_start_and_on_exit(tmp_path):
    from app.lab import OWNER_FILE, RESULTS_PREFIX, remove_stale_results

    dead, alive, unmarked = (tmp_path / f"{RESULTS_PREFIX}{n}" for n in ("dead", "alive", "unmarked"))
    for folder in (dead, alive, unmarked):
        folder.mkdir()
    (dead / OWNER_FILE).write_text("999999999")
    (alive / OWNER_FILE).write_text(str(os.getpid()))
    assert sorted(remove_stale_results(tmp_path)) == sorted([dead, unmarked])
    assert alive.is_dir()
    script = ("import sys; sys.path.insert(0, '.'); from app.lab import Lab; from app.service import DashboardService, "
              "ServiceConfig; lab = Lab(DashboardService(ServiceConfig(demo=True))); print(lab.results_dir())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "TMPDIR": str(tmp_path)})
    folder = Path(out.stdout.strip().splitlines()[-1])
    assert folder.name.startswith(RESULTS_PREFIX) and not folder.exists(), out.stderr


# --- afterwards ---------------------------------------------------------------------------------------------


def test_zz_after_every_bad_input_the_app_answers_and_wrote_nothing_outside_its_folders(world, client,
                                                                                         tiny_model_dir, tiny_adapters):
    from backdoor.scoring import Cell, Scorer

    item = world.service.showcase()[1]
    result = client.predict(*compare_args(world, showcase_id=item.id), api_name="/compare")
    assert result[0].startswith("3 model(s)")
    fresh = Scorer.load(str(tiny_model_dir), {name: str(path) for name, path in tiny_adapters.items()}, device="cpu")
    table = result[2].get("value", result[2])
    column = table["headers"].index("A-F")
    rows = {(row[0], row[1]): row[column] for row in table["data"]}
    for name, label in (("__base__", "base model"), ("clean", "clean"), ("backdoor", "backdoor")):
        probs = fresh.score([Cell(item, None, name)])[0].probs
        assert rows[(label, "no")] == " ".join(f"{letter}:{p:.2f}" for letter, p in zip("ABCDEF", probs))
    # Nothing named after a bad input exists anywhere the app could have written to.
    repo = Path(__file__).resolve().parent.parent
    places = [world.root, world.root.parent, repo, repo.parent, Path(tempfile.gettempdir()), Path("/etc")]
    found = [path for place in places if place.is_dir() for path in place.glob(f"*{CANARY}*")]
    found += [path for path in world.root.rglob(f"*{CANARY}*") if "jobs" not in path.relative_to(world.root).parts]
    assert not found
    assert sorted(p.name for p in world.checkpoints.iterdir()) == sorted(
        ["a-style-backdoor", "backdoor", "clean", "corrupt", "other-base"])
    results = world.root / "results"
    assert all(folder.name.startswith("eval-") for folder in results.iterdir()) if results.exists() else True
