"""Following the training (tasks/pod/follow.py): the pod's log kept byte for byte, its end line read
whole or not at all, and a failure told in the trainer's (or torchrun's) own words."""

from __future__ import annotations

import base64

import pytest

from tasks.pod import follow
from tasks.pod.follow import END_MARK, PodLog, parse_outcome

END = END_MARK + b" exit=0 sha256=ab12 bytes=4096 end\n"


def _fed(path, chunks: list[bytes], offset: int = 0) -> PodLog:
    sink = PodLog(path, offset, echo=False)
    for chunk in chunks:
        sink.write(chunk)
    return sink


@pytest.mark.parametrize("cut", [1, 5, len(b"step 2\n") + 3, len(b"step 2\n") + len(END_MARK) - 1])
def test_the_end_line_is_caught_wherever_ssh_cuts_the_stream(tmp_path, cut):
    stream = b"step 2\n" + END
    sink = _fed(tmp_path / "log", [stream[:cut], stream[cut:]])
    sink.close()
    assert sink.outcome() == {"exit": "0", "sha256": "ab12", "bytes": "4096"}
    assert (tmp_path / "log").read_bytes() == b"step 2\n"  # the log is the training's, not the end line
    assert sink.offset == len(b"step 2\n")


def test_bytes_that_only_look_like_the_mark_are_kept_and_counted(tmp_path):
    sink = _fed(tmp_path / "log", [b"loss 1.0 ##full", b"y done\n", b"##"])
    assert sink.outcome() is None
    sink.close()
    assert (tmp_path / "log").read_bytes() == b"loss 1.0 ##fully done\n##"
    assert sink.offset == len(b"loss 1.0 ##fully done\n##")  # a reconnect resumes after every byte kept


def test_a_reconnect_appends_from_its_offset_and_writes_after_close_are_dropped(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"abc\n")
    sink = _fed(path, [b"def\n"], offset=4)
    sink.close()
    sink.write(b"late bytes from the reader thread\n")
    assert path.read_bytes() == b"abc\ndef\n" and sink.offset == 8


def test_a_torn_end_line_is_no_outcome():
    assert parse_outcome(END_MARK + b" exit=0 sha256=ab") is None
    assert parse_outcome(b"no mark at all") is None
    assert parse_outcome(b"noise\r\n" + END_MARK + b" exit=7 end\r\n") == {"exit": "7"}


def test_the_trainers_last_error_line_is_the_failure(tmp_path):
    log = tmp_path / "pod-train.log"
    log.write_text("[train] ERROR: first\nstep 3\n[train] ERROR: CUDA out of memory. Tried 2 GiB\n")
    assert follow._trainer_error(log) == "CUDA out of memory. Tried 2 GiB"
    assert follow._trainer_error(tmp_path / "missing.log") is None


TORCHRUN = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train_unsloth.py FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-06_10:00:00
  host      : pod-1
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
"""


def test_a_rank_the_kernel_killed_is_named_from_torchruns_root_cause(tmp_path):
    log = tmp_path / "pod-train.log"
    log.write_text("[train] ERROR: rank 0 lost its peer\n" + TORCHRUN)
    assert follow._rank_died(TORCHRUN) == ("1", "-9 (pid: 4242)")
    assert follow._trainer_error(log) == "rank 1 of the torchrun processes died (-9 (pid: 4242)) without a word of its own"
    log.write_text("[train] ERROR: rank 1 ran out of memory\n" + TORCHRUN)
    assert follow._trainer_error(log) == "rank 1 ran out of memory"  # its own word wins


def test_the_pods_python_report_is_read_and_a_broken_one_ignored():
    encoded = base64.b64encode(b"/usr/bin/python3.11\nimage\n12\nmatches requirements-unsloth.txt\n").decode()
    assert follow._python_info(encoded) == {"python": "/usr/bin/python3.11", "python_source": "image",
                                            "setup_seconds": 12, "stack": "matches requirements-unsloth.txt"}
    assert follow._python_info("not base64!") == {} and follow._python_info("") == {}
    report = base64.b64encode(b'{"ok": false, "step": "load"}').decode()
    assert follow._report(report) == {"ok": False, "step": "load"}
    assert follow._report(report[:-4] + "!!!!")["skipped"] == "its report did not come back whole"
    assert follow._report("") is None
