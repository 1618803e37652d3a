"""Load test for a running dashboard: N concurrent gradio_client users x M requests each; errors and latency percentiles.

Each simulated user picks showcase questions and toggles the trigger, as a talk audience on
their phones would. Only loopback addresses are accepted, and the total work is bounded.
``--with-training`` runs the load while a training job (the job runner's own worker process, on
the page's base model) takes steps beside it, as when a class trains while a talk goes on; the
job is cancelled afterwards and publishes nothing.

    .venv/bin/python -m app --port 7860 &                  # start the dashboard
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:7860 [--users 20] [--requests 20]
    .venv/bin/python scripts/load_test.py --serve          # or start one in-process on a free port
    .venv/bin/python scripts/load_test.py --serve --with-training
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_USERS, MAX_REQUESTS = 50, 100


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as err:
        raise SystemExit(f"cannot resolve {host!r}: {err}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise SystemExit(f"refusing to load-test {url}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def user(url: str, requests: int, seed: int, setup: dict, latencies: list, errors: list, lock: threading.Lock) -> None:
    from gradio_client import Client

    rng = random.Random(seed)
    try:
        client = Client(url, verbose=False)
    except Exception as err:  # noqa: BLE001 - a failed connection is one of the errors we count
        with lock:
            errors.append(f"connect: {err}")
        return
    for _ in range(requests):
        item = rng.choice(setup["showcase"])
        endpoint = rng.choice(["/compare", "/toggle_trigger"])
        # Both endpoints take the same inputs in the same order (/toggle_trigger's unnamed); every input not set
        # here (the trigger's state, the decision threshold, ...) keeps the page's value.
        args = list(setup["defaults"][endpoint])
        for name, value in {"base": setup["base"], "adapters": setup["columns"], "source": "Showcase",
                            "showcase_id": item, "kind": setup["kind"]}.items():
            args[setup["order"].index(name)] = value
        started = time.perf_counter()
        try:
            result = client.predict(*args, api_name=endpoint)
            if str(result[0]).startswith("⚠️"):
                raise RuntimeError(result[0])
        except Exception as err:  # noqa: BLE001
            with lock:
                errors.append(f"{endpoint}: {err}")
            continue
        with lock:
            latencies.append(time.perf_counter() - started)


def discover(url: str) -> dict:
    """The base model, default columns, trigger and showcase ids the page offers (read from its config), the
    inputs' order (named on /compare), and every input of the two endpoints with the page's value."""
    from gradio_client import Client

    info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    defaults = {endpoint: [p.get("parameter_default") for p in info["named_endpoints"][endpoint]["parameters"]]
                for endpoint in ("/compare", "/toggle_trigger")}
    params = {p["parameter_name"]: p for p in info["named_endpoints"]["/compare"]["parameters"]}
    showcase = params["showcase_id"]["type"].get("enum") or [params["showcase_id"]["parameter_default"]]
    return {"base": params["base"]["parameter_default"], "columns": params["adapters"]["parameter_default"],
            "kind": params["kind"]["parameter_default"], "showcase": showcase[:10], "order": list(params),
            "defaults": defaults}


def run(url: str, users: int, requests: int) -> dict:
    setup = discover(url)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=users) as pool:
        for index in range(users):
            pool.submit(user, url, requests, index, setup, latencies, errors, lock)
    wall = time.perf_counter() - started
    report = {"users": users, "requests_each": requests, "ok": len(latencies), "errors": len(errors),
              "wall_s": round(wall, 2), "throughput_rps": round(len(latencies) / wall, 1) if wall else 0.0}
    if latencies:
        report.update({f"p{q}_ms": round(percentile(latencies, q) * 1000) for q in (50, 90, 95, 99)})
        report["mean_ms"] = round(statistics.mean(latencies) * 1000)
        report["max_ms"] = round(max(latencies) * 1000)
    report["first_errors"] = errors[:5]
    return report


class TrainingBeside:
    """One training job on ``base`` through the job runner, in a scratch folder, for the length of a load run."""

    def __init__(self, base: str, items: int = 400, epochs: int = 3):
        from backdoor.config import TrainConfig
        from backdoor.jobs import JobRegistry

        self.folder = tempfile.TemporaryDirectory(prefix="fragile-load-")
        self.registry = JobRegistry(Path(self.folder.name) / "jobs", Path(self.folder.name) / "adapters")
        config = TrainConfig(base_model=base, kind="clean", data="train", max_items=items, epochs=epochs,
                             eval_items=0, eval_every=0, checkpoint_every=0)
        self.job = self.registry.submit(config, "load-test")

    def start(self, timeout: float = 600.0) -> int:
        """Start the worker and wait for its first training steps (model load and encoding are not the point)."""
        self.registry.ensure_worker()
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.registry.get(self.job.id)
            if job.status != "running" and job.status != "queued":
                raise SystemExit(f"the training job ended before the load began ({job.status}): {job.error}")
            if self.registry.progress(self.job.id).get("step", 0) >= 1:
                return self.registry.progress(self.job.id)["step"]
            time.sleep(0.5)
        raise SystemExit(f"the training job took no step within {timeout:.0f} s")

    def stop(self, timeout: float = 300.0) -> dict:
        """Whether the job was still training when the load ended, and how many steps it took; then cancel it."""
        job = self.registry.get(self.job.id)
        state = {"training_status_after_load": job.status, "training_step_after_load": self.registry.progress(self.job.id).get("step", 0)}
        self.registry.cancel(self.job.id)
        deadline = time.time() + timeout
        while self.registry.get(self.job.id).status == "running" and time.time() < deadline:
            time.sleep(1.0)
        self.folder.cleanup()
        return state


def serve_in_process(adapters: str = "checkpoints"):
    """Start the dashboard on the default model in this process, on a free loopback port."""
    import app.__main__  # noqa: F401 - the served app's thread settings (OMP_*), set before torch loads
    from app.service import DashboardService, ServiceConfig
    from app.ui import build_ui, launch_kwargs

    service = DashboardService(ServiceConfig(adapters_dir=adapters, calibration="off"))  # calibration is a one-off; keep it out of the figures
    demo = build_ui(service)
    demo.queue(default_concurrency_limit=8)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                            ssr_mode=False, **launch_kwargs())
    return demo, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the running dashboard (loopback only)")
    parser.add_argument("--serve", action="store_true", help="start the dashboard in-process instead of using --url")
    parser.add_argument("--adapters", default="checkpoints", help="adapters folder for --serve (default %(default)s)")
    parser.add_argument("--users", type=int, default=20, help=f"concurrent clients (at most {MAX_USERS})")
    parser.add_argument("--requests", type=int, default=20, help=f"requests per client (at most {MAX_REQUESTS})")
    parser.add_argument("--with-training", action="store_true",
                        help="run the load while a training job on the page's base model takes steps (cancelled afterwards)")
    parser.add_argument("--json", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    if not (1 <= args.users <= MAX_USERS and 1 <= args.requests <= MAX_REQUESTS):
        parser.error(f"--users must be 1-{MAX_USERS} and --requests 1-{MAX_REQUESTS}")
    demo = None
    url = args.url
    if args.serve:
        demo, url = serve_in_process(args.adapters)
    check_loopback(url)
    training = None
    try:
        if args.with_training:
            training = TrainingBeside(discover(url)["base"])
            step_before = training.start()
        report = run(url, args.users, args.requests)
        if training is not None:
            report.update(training_step_before_load=step_before, **training.stop())
            training = None
    finally:
        if training is not None:
            training.stop()
        if demo is not None:
            demo.close()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
