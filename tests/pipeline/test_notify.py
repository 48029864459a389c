"""A word on every run that ends (tasks/pipeline/notify.py): success, failure, an interrupt and a refusal
before anything is rented each reach a local HTTP server and a command; a notifier that hangs is
ended at its timeout and changes neither the outcome nor the exit code; no secret is in the message."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.pipeline.notify import outcome
from tests.helpers import DODO, make_project

SECRET = "rpa_NOTIFY_SENTINEL_0123456789"


class Receiver:
    """A webhook on 127.0.0.1: keeps every JSON body; `delay` seconds before it answers (a hung one)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(delay)
                try:
                    self.send_response(204)
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fullcycle-topic-SECRETPATH"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


def _project(tmp_path, url: str, command: str = "", **sections):
    notify = {"command": command or f"env | grep ^FULLCYCLE_ > {tmp_path / 'command.env'}", "timeout_s": 2}
    return make_project(tmp_path / "proj", notify=notify, extra_env={"RUNPOD_API_KEY": SECRET,
                                                                      "FULLCYCLE_NOTIFY_URL": url}, **sections)


def _command_env(tmp_path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (tmp_path / "command.env").read_text().splitlines())


@pytest.mark.slow  # a whole run (the stand-in trainer) with its notification
def test_a_success_is_notified_to_the_url_and_the_command_and_recorded(tmp_path, receiver):
    proj = _project(tmp_path, receiver.url)
    proj.doit("full_cycle", check=True)
    body = receiver.bodies[-1]
    assert body["outcome"] == "succeeded" and body["date"] == proj.date and body["reason"].startswith("adapter home")
    assert body["summary"] == str(proj.work / "run-summary.json")
    assert body["text"].startswith(f"fullcycle {proj.date}: ")
    assert receiver.paths == ["/fullcycle-topic-SECRETPATH"]
    env = _command_env(tmp_path)
    assert env["FULLCYCLE_OUTCOME"] == "succeeded" and env["FULLCYCLE_DATE"] == proj.date
    assert "FULLCYCLE_NOTIFY_URL" not in env  # the webhook's URL is a secret: the command never gets it
    sent = proj.summary["notification"]
    assert sent["url"]["status"] == 204 and sent["command"]["exit"] == 0 and sent["outcome"] == "succeeded"
    assert "SECRETPATH" not in json.dumps(proj.summary)  # the record names the host, not the webhook's path


@pytest.mark.slow
def test_a_failure_and_a_refusal_before_renting_are_notified(tmp_path, receiver, fake_api):
    from tests.conftest import runpod_project

    proj = _project(tmp_path, receiver.url, source=tmp_path / "no-such-notes")
    assert proj.doit("full_cycle").returncode != 0
    assert receiver.bodies[-1]["outcome"] == "failed" and "no-such-notes" in receiver.bodies[-1]["reason"]
    refused = runpod_project(tmp_path / "rented", None, fake_api, notify={"url": receiver.url, "timeout_s": 2})
    refused.env.pop("RUNPOD_API_KEY")  # no key anywhere: refused before anything is rented
    assert refused.doit("full_cycle").returncode != 0 and fake_api.ops("create") == 0
    body = receiver.bodies[-1]
    assert body["outcome"] == "refused" and "RUNPOD_API_KEY" in body["reason"], body


@pytest.mark.slow
def test_an_interrupt_is_notified_and_keeps_its_exit_code(tmp_path, receiver):
    proj = _project(tmp_path, receiver.url, training={"max_steps": 2000})  # ~10 s of stand-in steps
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root,
                           env=proj.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proj.work / "pod-train.log"
    deadline = time.time() + 120
    while not (log.exists() and "step 5/" in log.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 130, out[-2000:]
    body = receiver.bodies[-1]
    assert body["outcome"] == "interrupted" and _command_env(tmp_path)["FULLCYCLE_OUTCOME"] == "interrupted"
    assert proj.summary["notification"]["outcome"] == "interrupted"


@pytest.mark.slow
def test_a_hanging_notifier_is_ended_at_its_timeout_and_changes_nothing(tmp_path):
    slow = Receiver(delay=30)
    try:
        proj = _project(tmp_path, slow.url, command="sleep 30")
        started = time.monotonic()
        proc = proj.doit("full_cycle")
        seconds = time.monotonic() - started
    finally:
        slow.close()
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert seconds < 25  # two timeouts of 2 s, not 30 s of silence twice
    sent = proj.summary["notification"]
    assert sent["command"]["timeout"] is True and "ReadTimeout" in sent["url"]["error"]
    assert proj.summary["success"] is True and sent["outcome"] == "succeeded"


def test_the_outcome_in_one_word_and_one_line():
    good = {"success": True, "eval": {"adapter_loss": 2.25, "verdict": "better"}, "cost_usd": 0.0}
    assert outcome(good) == ("succeeded", "adapter home (held-out loss 2.2500, better), $0.00")
    assert outcome({"success": False, "outcome": "interrupted", "error": "train: interrupted"})[0] == "interrupted"
    assert outcome({"success": False, "provider": "runpod", "pod_id": None, "error": "no key"}) == ("refused", "no key")
    assert outcome({"success": False, "provider": "runpod", "pod_id": "abc", "error": "x\n  y"}) == ("failed", "x y")
