"""The downloaded archive is not trusted: sha256 checked, no absolute paths, no '..', no links."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest

from tasks.context import RunContext
from tasks.core.errors import TransportError
from tasks.pod.extract import extract_adapter
from tests.helpers import make_project


def _ctx(tmp_path, monkeypatch) -> RunContext:
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    monkeypatch.setenv("FULLCYCLE_DATE", proj.date)
    ctx = RunContext.load()
    ctx.paths.work_local.mkdir(parents=True)
    return ctx


def _archive(ctx: RunContext, members: list[tarfile.TarInfo | tuple[str, bytes]], sha: str | None = None) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    data = buf.getvalue()
    ctx.paths.adapter_b64.write_bytes(base64.b64encode(data))
    ctx.paths.train_file.write_text(json.dumps({"exit_code": 0, "tar_sha256": sha or hashlib.sha256(data).hexdigest(),
                                                "tar_bytes": len(data)}))


def test_good_archive_lands_atomically(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, monkeypatch)
    _archive(ctx, [("./adapter_config.json", b"{}"), ("./adapter_model.safetensors", b"x" * 5000), ("upload.ok", b"l")])
    final = extract_adapter(ctx)
    assert sorted(p.name for p in final.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "upload.ok"]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("evil", [
    ("/etc/cron.d/evil", b"x"),
    ("../../outside.txt", b"x"),
    _link("adapter_model.safetensors", "/etc/passwd"),
    _link("escape", "../../../../tmp/x", tarfile.LNKTYPE),
], ids=["absolute", "dotdot", "symlink", "hardlink"])
def test_malicious_archives_are_refused(tmp_path, monkeypatch, evil):
    ctx = _ctx(tmp_path, monkeypatch)
    _archive(ctx, [("./adapter_config.json", b"{}"), evil])
    with pytest.raises(TransportError, match="refusing archive member"):
        extract_adapter(ctx)
    assert not ctx.paths.final_adapter_dir.exists()
    assert not (tmp_path / "outside.txt").exists()


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, monkeypatch)
    _archive(ctx, [("./adapter_config.json", b"{}")], sha="0" * 64)
    with pytest.raises(TransportError, match="differs from the pod's"):
        extract_adapter(ctx)
    assert not ctx.paths.final_adapter_dir.exists()


def test_truncated_archive_is_refused(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, monkeypatch)
    _archive(ctx, [("./adapter_config.json", b"{}"), ("./adapter_model.safetensors", b"y" * 100_000)])
    data = ctx.paths.adapter_b64.read_bytes()
    ctx.paths.adapter_b64.write_bytes(data[: len(data) // 2 // 4 * 4])
    with pytest.raises(TransportError):
        extract_adapter(ctx)
    assert not ctx.paths.final_adapter_dir.exists()
