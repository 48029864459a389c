"""The download stage's own promises, in-process with a scripted connection."""

from __future__ import annotations

import pytest

from tasks.context import RunContext
from tasks.core.files import write_json
from tasks.pod import download
from tasks.providers.base import Pod
from tests.helpers import make_project


class ScriptedConn:
    def __init__(self, fail: BaseException) -> None:
        self.fail, self.closed = fail, 0

    def fetch_base64(self, remote: str, partial):
        raise self.fail

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("fail", [RuntimeError("a bug in between"), KeyboardInterrupt()])
def test_the_connection_is_closed_on_every_path(tmp_path, monkeypatch, fail):
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    pod = Pod(provider="local", pod_id="p1", name="n", created_at="", remote={"work_dir": str(tmp_path / "w")})
    write_json(ctx.paths.train_file, {"pod_id": "p1", "exit_code": 0, "tar_bytes": 30, "tar_sha256": "ab"})
    conn = ScriptedConn(fail)
    monkeypatch.setattr(download, "connect_or_keep", lambda _ctx, _stage: (pod, conn))
    with pytest.raises(type(fail)):
        download.download_adapter(ctx)
    assert conn.closed == 1
