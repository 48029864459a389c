"""The pod record (tasks/providers/base.py): a pod.json that cannot be read never passes for "no pod"."""

from __future__ import annotations

import json

import pytest

from tasks.providers.base import Pod, UnreadablePod


@pytest.mark.parametrize("content", [b'{"provider": "runpod", "pod_id": "p1", "na', b"[1]", b"\xff\xfe",
                                     json.dumps({"provider": "runpod", "pod_id": ["p1"], "name": "n",
                                                 "created_at": "t"}).encode()])
def test_an_unreadable_pod_record_says_a_pod_may_still_run(tmp_path, content):
    path = tmp_path / "pod.json"
    path.write_bytes(content)
    with pytest.raises(UnreadablePod, match="pod.json") as caught:
        Pod.load(path)
    assert "doit reap_pods" in str(caught.value)


def test_no_record_is_no_pod_and_a_good_one_reads_back(tmp_path):
    assert Pod.load(tmp_path / "pod.json") is None
    Pod(provider="local", pod_id="p1", name="n", created_at="t").save(tmp_path / "pod.json")
    assert Pod.load(tmp_path / "pod.json").pod_id == "p1"
