"""The page's guard in-process, through Starlette's TestClient: who may read, who may act, and
that no number of visitors grows the server's memory. (The browser tests are in test_web.py.)"""

from __future__ import annotations

import gc
import re
import tracemalloc

import pytest

pytest.importorskip("starlette.testclient", reason="the web and dev extras")
from starlette.testclient import TestClient  # noqa: E402

from tasks.context import RunContext  # noqa: E402
from tasks.web.app import COOKIE, create_app  # noqa: E402
from tests.helpers import DODO, make_project  # noqa: E402

PORT = 8765
URL = f"http://127.0.0.1:{PORT}"


def _client(tmp_path, monkeypatch, token: str | None = None, host: str = "127.0.0.1") -> tuple[TestClient, object]:
    proj = make_project(tmp_path / "proj")
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    app = create_app(ctx, DODO, proj.root, host=host, port=PORT, token=token)
    return TestClient(app, base_url=URL), proj


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf" content="([^"]+)"', client.get("/").text).group(1)


def test_state_changing_requests_need_this_page_and_its_token(tmp_path, monkeypatch):
    client, proj = _client(tmp_path, monkeypatch)
    token = _csrf(client)
    good = {"Origin": URL, "X-Fullcycle-Token": token}
    cases = {
        "no session token": ({"Origin": URL}, 403),
        "wrong session token": ({"Origin": URL, "X-Fullcycle-Token": "x" * 64}, 403),
        "another site's page": ({"Origin": "http://evil.example", "X-Fullcycle-Token": token}, 403),
        "no Origin": ({"X-Fullcycle-Token": token}, 403),
        "a rebound host name": ({"Origin": "http://evil.example:1", "Host": "evil.example:1",
                                 "X-Fullcycle-Token": token}, 421),
    }
    for what, (headers, code) in cases.items():
        answer = client.post("/api/run", json={"date": proj.date}, headers=headers)
        assert answer.status_code == code, (what, answer.status_code, answer.text)
    stranger = TestClient(client.app, base_url=URL)  # no cookie at all
    assert stranger.post("/api/run", json={"date": proj.date}, headers=good).status_code == 401
    forged = TestClient(client.app, base_url=URL, cookies={COOKIE: "abc.1.0000"})  # a signature we never made
    assert forged.get("/api/history").status_code == 401
    for bad in ("2026-13-01", "../../etc/passwd", "2026-11-27; rm -rf ~"):
        assert client.post("/api/run", json={"date": bad}, headers=good).status_code == 400, bad
    assert client.post("/api/cancel", json={"date": proj.date}, headers=good).status_code == 409
    assert not (proj.work / "attempts.jsonl").exists(), "a refused request started a run"


def test_beyond_loopback_only_the_access_token_opens_a_session(tmp_path, monkeypatch):
    client, _ = _client(tmp_path, monkeypatch, token="correct-horse", host="0.0.0.0")
    assert client.get("/api/history").status_code == 401
    assert 'id="login"' in client.get("/").text  # the page asks for the token
    headers = {"Origin": URL}
    assert client.post("/login", json={"token": "wrong"}, headers=headers).status_code == 403
    assert client.get("/api/history").status_code == 401
    assert client.post("/login", json={"token": "correct-horse"}, headers=headers).status_code == 200
    assert client.get("/api/history").status_code == 200
    _, _, signature = client.cookies[COOKIE].rpartition(".")
    sid = client.cookies[COOKIE].split(".")[0]
    client.cookies.clear()
    client.cookies.set(COOKIE, f"{sid}.1.{'0' * len(signature)}")  # claiming authed without the key
    assert client.get("/api/history").status_code == 401


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_cookieless_visitors_grow_no_server_memory(tmp_path, monkeypatch):
    """A loop of GETs without a cookie (each gets a new session) leaves nothing behind on the server."""
    client, _ = _client(tmp_path, monkeypatch)
    stranger = TestClient(client.app, base_url=URL)

    def visits(n: int) -> None:
        for _ in range(n):
            stranger.cookies.clear()
            assert stranger.get("/").status_code == 200

    def held_by_the_server() -> int:
        """Bytes still allocated from the page server's own code (other threads and tests excluded)."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/tasks/web/*")])
        return sum(stat.size for stat in snapshot.statistics("filename"))

    tracemalloc.start(1)  # the allocating line is enough to tell the server's own code
    try:
        visits(100)  # what the first requests allocate for good (caches, interned strings)
        before = held_by_the_server()
        visits(300)
        grown = held_by_the_server() - before
    finally:
        tracemalloc.stop()
    print(f"\n300 cookieless GETs: {grown / 1024:.1f} KiB retained")
    assert grown < 8 * 1024, f"{grown} bytes retained after 300 visits"
