"""bench web: how fast the page answers and how soon a log line reaches it, and what a watching page costs.

    python bench/web.py [--runs 20] [--watchers 10]

Starts `doit serve` in a temporary project (local provider), then measures:
- the page itself (GET /, whole response) and the time to the first `state` event of the live view;
- a line appended to the date's trainer.log until it arrives as a `log` event (server-sent events);
- the server's CPU while `--watchers` live views stay open on an idle date.
The browser's own figures (DOMContentLoaded, first stages drawn) are printed by tests/web/test_app.py.
Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DATE = "2026-11-27"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(session: requests.Session, url: str, out: queue.Queue, stop: threading.Event) -> None:
    """Read a live view; put (event name, data, arrival time) on `out`."""
    try:
        _read_events(session, url, out, stop)
    except requests.RequestException:
        return  # the server went away at the end of the bench


def _read_events(session: requests.Session, url: str, out: queue.Queue, stop: threading.Event) -> None:
    with session.get(url, stream=True, timeout=30) as response:
        name, data = None, []
        for raw in response.iter_lines(chunk_size=1):
            if stop.is_set():
                return
            line = raw.decode()
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:
                out.put((name, "\n".join(data), time.perf_counter()))
                name, data = None, []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "max_ms": round(ms[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--watchers", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "fullcycle.toml").write_text('[training]\nbase_model = "tiny"\n')
        port = _port()
        env = {**os.environ, "FULLCYCLE_CONFIG": str(root / "fullcycle.toml"), "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "serve", "--port", str(port)],
                                  cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 30
            while True:
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
            figures = measure(url, root, server.pid, args)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(15)
    print(f"page (GET /):                 median {figures['page']['median_ms']} ms, max {figures['page']['max_ms']} ms")
    print(f"live view, first state:       median {figures['first_state']['median_ms']} ms")
    print(f"log line -> page event:       median {figures['log_event']['median_ms']} ms, "
          f"p95 {figures['log_event']['p95_ms']} ms, max {figures['log_event']['max_ms']} ms")
    print(f"server CPU, {args.watchers} idle live views: {figures['cpu_percent_watching']} % of one core")
    print(json.dumps({"bench": "web", **figures}))


def measure(url: str, root: Path, pid: int, args: argparse.Namespace) -> dict:
    session = requests.Session()
    page = []
    for _ in range(args.runs):
        started = time.perf_counter()
        session.get(url + "/").raise_for_status()
        page.append(time.perf_counter() - started)

    first = []
    for _ in range(max(3, args.runs // 4)):
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        started = time.perf_counter()
        threading.Thread(target=_events, args=(session, f"{url}/api/events?date={DATE}", out, stop), daemon=True).start()
        while (item := out.get(timeout=10))[0] != "state":
            pass
        first.append(item[2] - started)
        stop.set()

    log = root / "docs" / "run_logs" / DATE / "trainer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    out = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=_events, args=(session, f"{url}/api/events?date={DATE}", out, stop), daemon=True).start()
    time.sleep(0.5)
    lags = []
    for _ in range(args.runs):
        marker = uuid.uuid4().hex
        with log.open("a") as fh:
            fh.write(f"bench {marker}\n")
        wrote = time.perf_counter()
        while True:
            name, data, at = out.get(timeout=10)
            if name == "log" and marker in data:
                lags.append(at - wrote)
                break
        time.sleep(random.uniform(0.02, 0.2))  # land anywhere in the server's tick
    stop.set()

    watchers = [threading.Event() for _ in range(args.watchers)]
    for flag in watchers:
        threading.Thread(target=_events, args=(requests.Session(), f"{url}/api/events?date={DATE}", queue.Queue(), flag),
                         daemon=True).start()
    time.sleep(1.0)
    cpu0, wall0 = _cpu_seconds(pid), time.perf_counter()
    time.sleep(5.0)
    cpu = (_cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)
    for flag in watchers:
        flag.set()
    return {"page": _stats(page), "first_state": _stats(first), "log_event": _stats(lags),
            "cpu_percent_watching": round(cpu * 100, 1), "watchers": args.watchers}


if __name__ == "__main__":
    main()
