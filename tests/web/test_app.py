"""The web page (`doit serve`) in a real browser: Debian's Chromium driven by Playwright.

The server is started the way a person starts it (`doit serve` in a project), and it runs the real
pipeline with the local provider (or the RunPod double for the Pods tab). Screenshots of each
state are saved under the test's temporary folder (printed), and copied to $FULLCYCLE_SCREENSHOTS
when set, to be looked at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import API_KEY, runpod_project
from tests.helpers import DODO, Project, make_project

CHROMIUM = os.environ.get("FULLCYCLE_CHROMIUM", "/usr/bin/chromium")
LONG_TRAIN = {"max_steps": 400, "gradient_accumulation_steps": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`doit serve` in a project, as a person runs it."""

    def __init__(self, proj: Project, port: int | None = None, host: str = "127.0.0.1", **env: str) -> None:
        self.proj, self.port, self.host = proj, port or free_port(), host
        self.env = {**proj.env, **env}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "serve", "--port", str(self.port),
                                      "--host", self.host], cwd=self.proj.root, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
            assert self.proc.poll() is None, self.proc.stdout.read()
        raise AssertionError("doit serve did not answer in 30 s")

    def stop(self) -> str:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stdout.read() if self.proc else ""


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(proj: Project, **kw) -> Server:
        server = Server(proj, **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-extensions", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # "Cancel the run?" / "Terminate pod?": yes
    yield tab
    context.close()


def shot(tab, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "screens"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    if os.environ.get("FULLCYCLE_SCREENSHOTS"):
        keep = Path(os.environ["FULLCYCLE_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    print(f"screenshot: {path}")
    return path


def stage_state(tab, stage: str) -> str:
    return tab.get_attribute(f'#stages tr[data-stage="{stage}"]', "data-state")


def test_click_run_watch_the_stages_and_find_the_adapter(tmp_path, serve, page):
    proj = make_project(tmp_path / "proj")
    server = serve(proj)
    started = time.monotonic()
    page.goto(server.url)
    page.wait_for_selector('#stages tr[data-stage="train"][data-state="waiting"]')
    first_state = time.monotonic() - started
    proj = dataclasses.replace(proj, date=dt.date.today().isoformat())
    assert page.input_value("#date") == proj.date  # the page's date is today
    nav = page.evaluate("(() => { const t = performance.getEntriesByType('navigation')[0];"
                        " return [t.responseEnd - t.startTime, t.domContentLoadedEventEnd - t.startTime]; })()")
    assert "No run for" in page.inner_text("#banner")
    shot(page, tmp_path, "1-idle")

    page.click("#run")
    page.wait_for_selector('#stages tr[data-stage="train"][data-state="running"]', timeout=90_000)
    assert page.is_enabled("#cancel") and "Running" in page.inner_text("#banner")
    log = proj.root / "docs" / "run_logs" / proj.date / "trainer.log"
    lags = []
    for _ in range(5):  # a line the run writes reaches the page: how long?
        marker = f"latency-probe-{uuid.uuid4().hex[:8]}"
        with log.open("a") as fh:
            fh.write(f"{marker}\n")
        wrote = time.monotonic()
        page.wait_for_function(f"() => document.getElementById('log').textContent.includes('{marker}')", timeout=10_000)
        lags.append(time.monotonic() - wrote)
    page.wait_for_function("() => document.getElementById('log').textContent.includes('== train')")
    shot(page, tmp_path, "2-running")

    page.wait_for_selector('body[data-phase="ok"]', timeout=180_000)
    banner = page.inner_text("#banner")
    adapter = proj.root / "out" / "adapters" / proj.date / "adapter"
    assert "Succeeded" in banner and str(adapter) in banner
    assert (adapter / "adapter_model.safetensors").is_file() and proj.summary["success"] is True
    states = page.eval_on_selector_all("#stages tbody tr", "rows => rows.map(r => r.dataset.state)")
    assert set(states) <= {"done", "skipped"} and states.count("done") >= 12, states
    assert page.get_attribute("#pod", "data-terminated") == "yes"
    share = float(page.get_attribute("#pod", "data-not-training"))
    assert share == proj.summary["not_training_share"] and 0 < share <= 1  # the stand-in barely trains
    assert "training " in page.inner_text("#pod") and "% of the pod's time" in page.inner_text("#pod")
    assert page.locator("#outputs li.here").count() == 5  # adapter, summary, log, GGUF, Modelfile
    shot(page, tmp_path, "3-succeeded")

    page.click('nav .tab[data-tab="history"]')
    row = page.wait_for_selector(f'#history tr.history-row[data-date="{proj.date}"]')
    assert "succeeded" in row.inner_text()
    points = page.get_attribute(f'tr.history-detail[data-date="{proj.date}"] svg.loss polyline', "points").split()
    steps = len(json.loads((adapter / "metrics.json").read_text())["steps"])
    assert len(points) == steps >= 2
    page.click(f'tr.history-detail[data-date="{proj.date}"] details summary')
    page.wait_for_function("() => document.querySelector('pre.json').textContent.includes('\"success\": true')")
    shot(page, tmp_path, "4-history")
    print(f"\nfirst load: response {nav[0]:.0f} ms, DOMContentLoaded {nav[1]:.0f} ms, stages shown "
          f"{first_state * 1000:.0f} ms; log line -> page: median {statistics.median(lags) * 1000:.0f} ms, "
          f"max {max(lags) * 1000:.0f} ms over {len(lags)}")


def test_cancel_survives_a_server_restart_and_terminates_the_pod(tmp_path, serve, browser):
    proj = make_project(tmp_path / "proj", training=LONG_TRAIN)
    first = serve(proj)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(first.url)
    tab.fill("#date", proj.date)  # another day than today
    tab.click("#run")
    tab.wait_for_selector('#stages tr[data-stage="train"][data-state="running"]', timeout=90_000)
    pid = int(re.search(r"pid (\d+)", tab.inner_text("#banner")).group(1))
    context.close()  # the browser goes away ...
    first.stop()  # ... and so does the server: the run does not
    os.kill(pid, 0)

    second = serve(proj, port=first.port)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.goto(second.url)
    tab.wait_for_selector("#others a")  # today shows idle, with a link to the running date
    assert f"A run is going for {proj.date}" in tab.inner_text("#others")
    tab.click("#others a")
    tab.wait_for_selector('body[data-phase="running"]')
    assert stage_state(tab, "train") == "running" and f"pid {pid}" in tab.inner_text("#banner")
    shot(tab, tmp_path, "5-found-after-restart")

    tab.click("#run")  # a second run of the same date
    tab.wait_for_function("() => document.getElementById('notice').textContent.includes('already going')")
    assert tab.get_attribute("#notice", "class") == "error"
    shot(tab, tmp_path, "6-second-run-refused")

    tab.click("#cancel")
    tab.wait_for_selector('body[data-phase="interrupted"]', timeout=60_000)
    banner = tab.inner_text("#banner")
    assert "Cancelled during train" in banner and "was terminated" in banner
    assert tab.get_attribute("#pod", "data-terminated") == "yes" and stage_state(tab, "train") == "interrupted"
    assert stage_state(tab, "download_adapter") == "not run" and stage_state(tab, "terminate_pod") == "done"
    shot(tab, tmp_path, "7-cancelled")
    context.close()
    summary = proj.summary
    assert summary["terminated"] is True and summary["attempts"][-1]["outcome"] == "interrupted"
    assert len(summary["attempts"]) == 1, "the refused second click started nothing"
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_a_failed_run_says_where_and_why(tmp_path, serve, page):
    empty = tmp_path / "no-data"
    empty.mkdir()
    proj = make_project(tmp_path / "proj", source=empty)
    page.goto(serve(proj).url)
    page.fill("#date", proj.date)
    page.click("#run")
    page.wait_for_selector('body[data-phase="failed"]', timeout=60_000)
    banner = page.inner_text("#banner")
    assert banner.startswith("Failed: build_dataset:") and str(empty) in banner, banner
    assert stage_state(page, "build_dataset") == "failed" and stage_state(page, "train") == "not run"
    assert page.locator('#stages tr[data-stage="build_dataset"] small.err').inner_text() in banner
    shot(page, tmp_path, "8-failed")


def _csrf(session: requests.Session, url: str) -> str:
    return re.search(r'name="csrf" content="([^"]+)"', session.get(url + "/").text).group(1)


def test_state_changing_requests_need_this_page_and_its_token(tmp_path, serve):
    proj = make_project(tmp_path / "proj", extra_env={"RUNPOD_API_KEY": API_KEY})
    server = serve(proj)
    url, origin = server.url, server.url
    s = requests.Session()
    token = _csrf(s, url)
    run = url + "/api/run"
    cases = {
        "no session token": (s, {"Origin": origin}, 403),
        "wrong session token": (s, {"Origin": origin, "X-Fullcycle-Token": "x" * 32}, 403),
        "another site's page": (s, {"Origin": "http://evil.example", "X-Fullcycle-Token": token}, 403),
        "no Origin": (s, {"X-Fullcycle-Token": token}, 403),
        "no session cookie": (requests.Session(), {"Origin": origin, "X-Fullcycle-Token": token}, 401),
        "a rebound host name": (s, {"Origin": "http://evil.example:1", "Host": "evil.example:1",
                                    "X-Fullcycle-Token": token}, 421),
    }
    for what, (client, headers, code) in cases.items():
        answer = client.post(run, json={"date": proj.date}, headers=headers)
        assert answer.status_code == code, (what, answer.status_code, answer.text)
    good = {"Origin": origin, "X-Fullcycle-Token": token}
    for bad in ("2026-13-01", "../../etc/passwd", "2026-11-27; rm -rf ~", ""):
        if bad:
            assert s.post(run, json={"date": bad}, headers=good).status_code == 400, bad
    assert s.post(url + "/api/cancel", json={"date": proj.date}, headers=good).status_code == 409
    assert not (proj.work / "attempts.jsonl").exists(), "a refused request started a run"

    # The key is in the server's environment; nothing it sends holds it, even a log line that does.
    log = proj.root / "docs" / "run_logs" / proj.date / "trainer.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"a careless line with {API_KEY} in it\n")
    day = f"?date={proj.date}"
    bodies = [s.get(url + "/").text, s.get(url + "/api/state" + day).text, s.get(url + "/api/history").text,
              s.get(url + "/api/pods").text, s.get(url + "/static/app.js").text]
    with s.get(url + "/api/events" + day, stream=True, timeout=10) as events:
        seen = b""
        for chunk in events.iter_content(chunk_size=None):
            seen += chunk
            if b"careless line" in seen:
                break
    bodies.append(seen.decode())
    assert all(API_KEY not in body for body in bodies)
    assert "[REDACTED]" in bodies[-1]


def test_beyond_loopback_the_page_asks_for_the_access_token(tmp_path, serve, page):
    proj = make_project(tmp_path / "proj")
    secret = "correct-horse-battery-staple-42"
    server = serve(proj, host="0.0.0.0", FULLCYCLE_WEB_TOKEN=secret)
    assert requests.get(server.url + "/api/state").status_code == 401
    page.goto(server.url)
    page.wait_for_selector("#login")
    page.fill("#token", "not-the-token")
    page.click("#login button")
    page.wait_for_function("() => document.getElementById('login-error').textContent.includes('wrong access token')")
    shot(page, tmp_path, "9-asks-for-token")
    page.fill("#token", secret)
    page.click("#login button")
    page.wait_for_selector('#stages tr[data-stage="train"]')
    assert secret not in page.content()


def test_pods_tab_ends_a_stale_pod(tmp_path, serve, page, sshd, fake_api):
    proj = runpod_project(tmp_path / "proj", sshd, fake_api)
    stale = fake_api._create("NVIDIA GeForce RTX 5090", "SECURE", "fullcycle-2026-11-01-left", {})
    other = fake_api._create("NVIDIA GeForce RTX 5090", "SECURE", "someone-elses-pod", {})
    server = serve(proj)
    page.goto(server.url)
    page.click('nav .tab[data-tab="pods"]')
    row = page.wait_for_selector(f'#pods tr[data-pod="{stale.id}"]')
    assert "stale: no live run owns it" in row.inner_text()
    assert page.locator(f'#pods tr[data-pod="{other.id}"]').count() == 0  # not this project's: not shown
    shot(page, tmp_path, "10-pods-stale")
    page.click(f'#pods tr[data-pod="{stale.id}"] button')
    page.wait_for_function(f"() => document.getElementById('pods-note').textContent.includes('{stale.id} terminated')")
    assert fake_api.pods[stale.id].status == "TERMINATED" and fake_api.pods[other.id].status == "RUNNING"
    assert API_KEY not in page.content()
    shot(page, tmp_path, "11-pods-after")


def test_history_shows_the_eval_trend_and_the_answers_side_by_side(tmp_path, serve, page):
    """Two dates with their held-out evaluation (the record a trained run leaves): the History tab
    draws the held-out loss per date and shows base, previous and today's answers side by side."""
    proj = make_project(tmp_path / "proj")
    days = ("2026-11-20", "2026-11-21")
    judged = {days[0]: {"base_loss": 6.24, "adapter_loss": 6.19, "previous_loss": None, "verdict": "better",
                        "promoted": True, "why": "held-out loss 6.1900 < 6.2400 (the base model)",
                        "answers": [{"prompt": "What do I eat?", "base": "xk", "previous": None, "today": "Oatmeal"}]},
              days[1]: {"base_loss": 6.24, "adapter_loss": 6.17, "previous_loss": 6.19, "previous_date": days[0],
                        "verdict": "better", "promoted": True, "why": "held-out loss 6.1700 < 6.1900",
                        "answers": [{"prompt": "What do I eat?", "base": "xk", "previous": "Oatmeal",
                                     "today": "Oatmeal with blueberries"}]}}
    for day in days:
        proj.doit("full_cycle", "--date", day, check=True)
        (proj.root / "metahuman-runs" / day / "eval.json").write_text(json.dumps(judged[day]))
        that_day = dataclasses.replace(proj, env={**proj.env, "FULLCYCLE_DATE": day})
        that_day.doit("forget", "summarize", check=True)  # the record is rebuilt with it
        that_day.doit("summarize", check=True)
    page.goto(serve(proj).url)
    page.click('nav .tab[data-tab="history"]')
    page.wait_for_selector(f'#history tr.history-row[data-date="{days[1]}"]')
    assert page.get_attribute("#trend", "data-points") == "2"
    points = page.get_attribute("#trend svg.loss polyline.curve", "points").split()
    assert len(points) == 2
    # the base model's held-out loss is the trend's reference line, drawn above today's (a loss that fell)
    assert page.get_attribute("#trend", "data-reference") == "2"
    reference = page.get_attribute("#trend svg.loss polyline.reference", "points").split()
    assert len(reference) == 2 and float(reference[1].split(",")[1]) < float(points[1].split(",")[1])
    assert "base model" in page.inner_text("#trend")
    assert "6.1700 better" in page.inner_text(f'#history tr.history-row[data-date="{days[1]}"]')
    shot(page, tmp_path, "12-eval-trend")
    # the newest date opens with its details
    page.wait_for_selector(f'tr.history-detail[data-date="{days[1]}"] table.answers', state="visible")
    shot(page, tmp_path, "13-eval-answers")
    row = page.locator(f'tr.history-detail[data-date="{days[1]}"] table.answers tbody tr')
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells == ["What do I eat?", "xk", "Oatmeal", "Oatmeal with blueberries"]
    assert "previous 6.1900 (2026-11-20), today 6.1700" in page.inner_text(
        f'tr.history-detail[data-date="{days[1]}"] p.verdict')


def _spill(page) -> dict:
    """What sticks out: the page's own sideways scroll, and each card's content past its right edge
    (a table that scrolls inside its own box is inside, as it should be)."""
    return page.evaluate("""() => {
      const page = document.documentElement.scrollWidth - document.documentElement.clientWidth;
      const cards = [...document.querySelectorAll('section:not([hidden]) .card')].map((card) => {
        const edge = card.getBoundingClientRect().right;
        let worst = 0, who = "";
        for (const node of card.querySelectorAll('*')) {
          if (node.parentElement.closest('.table-box')) continue;  // inside a box that scrolls: its own business
          const r = node.getBoundingClientRect();
          if (r.width && r.right - edge > worst) {
            [worst, who] = [r.right - edge, `${node.tagName}#${node.id}.${node.className}`];
          }
        }
        return [Math.round(worst), who];
      });
      return {page, cards, history: (() => {
        const t = document.getElementById('history'), c = t.closest('.card');
        return Math.round(t.getBoundingClientRect().right - c.getBoundingClientRect().right + 16);
      })()};
    }""")


def test_the_page_fits_a_phone_and_a_wide_screen_and_says_schedule_notification_and_bill(tmp_path, serve, browser):
    """A date with long answers, a long unbroken word and a failed date with a long error: at 1,400 px the
    History table fits its card; at 390 px (a phone) nothing scrolls sideways but a table inside its own
    box. The header names the daily run (none here), Results the last notification, the Pod card that
    the local provider has no bill."""
    proj = make_project(tmp_path / "proj", notify={"command": "true"})
    day, failed = "2026-11-22", "2026-11-23"
    proj.doit("full_cycle", "--date", day, check=True)
    long_word = "Supercalifragilistic" * 12
    (proj.root / "metahuman-runs" / day / "eval.json").write_text(json.dumps({
        "base_loss": 7.4, "adapter_loss": 2.25, "verdict": "better", "promoted": True, "why": "held-out loss fell",
        "answers": [{"prompt": f"What is my favourite {long_word}?", "base": "stem " * 60, "previous": None,
                     "today": f"Your favourite {long_word} is {'very ' * 40}good."}] * 3}))
    that_day = dataclasses.replace(proj, env={**proj.env, "FULLCYCLE_DATE": day})
    that_day.doit("forget", "summarize", check=True)
    that_day.doit("summarize", check=True)
    missing = tmp_path / ("a-folder-with-a-very-long-name-" * 6) / "notes"
    broken = make_project(tmp_path / "proj", source=missing, date=failed, notify={"command": "true"})
    assert broken.doit("full_cycle").returncode != 0
    server = serve(proj)
    for width in (1400, 390):
        context = browser.new_context(viewport={"width": width, "height": 900})
        tab = context.new_page()
        tab.goto(f"{server.url}/?date={day}")
        tab.wait_for_function("() => document.querySelector('#stages tbody tr')")
        tab.fill("#date", day)
        tab.dispatch_event("#date", "change")
        tab.wait_for_function("() => !document.getElementById('notified').hidden")
        assert "no daily run" in tab.inner_text("#schedule")
        notified = tab.inner_text("#notified")
        assert notified.startswith("Notified (succeeded") and "command exit 0" in notified
        assert "no bill: the local provider rents nothing" in tab.inner_text("#pod")
        run_tab = _spill(tab)
        tab.click('nav .tab[data-tab="history"]')
        tab.wait_for_selector(f'tr.history-detail[data-date="{failed}"] table.attempts', state="visible")
        tab.click(f'tr.history-row[data-date="{day}"]')  # the newest, failed, is open already: both are
        tab.wait_for_selector(f'tr.history-detail[data-date="{day}"] table.answers', state="visible")
        history = _spill(tab)
        shot(tab, tmp_path, f"14-history-{width}")
        context.close()
        assert run_tab["page"] <= 0 and max(w for w, _ in run_tab["cards"]) <= 1, (width, run_tab)
        assert history["page"] <= 0 and max(w for w, _ in history["cards"]) <= 1, (width, history)
        if width == 1400:
            assert history["history"] <= 1, history  # the whole table inside its card: no scrolling needed
