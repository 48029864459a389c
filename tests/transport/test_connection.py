"""The connection's transfers (tasks/transport/connection.py): resume points of a broken download."""

from __future__ import annotations

import pytest

from tasks.transport.connection import _resume_point


@pytest.mark.parametrize("content, kept", [(b"", 0), (b"QUJD", 4), (b"QUJDRE", 4), (b"QUJDRA==", 4),
                                          (b"QUJDREVG" + b"R0g=", 8), (b"QUJDREVGR0hJ", 12)])
def test_resume_point_keeps_only_whole_unpadded_groups(tmp_path, content, kept):
    partial = tmp_path / "a.partial"
    partial.write_bytes(content)
    assert _resume_point(partial) == kept
    assert partial.stat().st_size == kept
