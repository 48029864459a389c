"""The up-to-date rules that ask the pod, not a file (tasks/pipeline/uptodate.py)."""

from __future__ import annotations

import json


def test_same_pod_rule(tmp_path):
    from tasks.pipeline.uptodate import SamePod

    class Ctx:
        class paths:
            pod_file = tmp_path / "pod.json"

    class Task:
        value_savers: list = []

    rule = SamePod(Ctx)
    assert rule(Task, {"pod_id": "a"}) is False  # no pod recorded
    (tmp_path / "pod.json").write_text(json.dumps({"provider": "local", "pod_id": "a", "name": "n", "created_at": "x"}))
    assert rule(Task, {"pod_id": "a"}) is True
    assert rule(Task, {"pod_id": "b"}) is False
    assert "0x" not in repr(rule)
