"""The training config (tasks/data/trainconfig.py): what the pod receives, read back before renting;
the prompts answered side by side, from a person's file whatever it holds."""

from __future__ import annotations

import pytest

from tasks.data.trainconfig import MAX_PROMPT_CHARS, ConfigError, prompts_file


def test_a_prompts_file_never_stops_the_run_for_its_bad_lines(tmp_path, caplog):
    source = tmp_path / "prompts.txt"
    source.write_bytes(b"\xef\xbb\xbfFirst question?\n\n\xff\xfe not text\r\n  second one  \r\n" + b"x" * 5000
                       + b"\nfourth\nfifth\n")
    found = prompts_file(source, 3)
    assert found == ["First question?", "second one", "x" * MAX_PROMPT_CHARS]
    assert f"{source}:3 is not UTF-8" in caplog.text and f"{source}:5 is 5000 characters" in caplog.text


def test_a_missing_prompts_file_is_named_with_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"\[eval\] prompts .*nowhere.txt.*leave it empty"):
        prompts_file(tmp_path / "nowhere.txt", 3)
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(ConfigError, match="Is a directory"):
        prompts_file(tmp_path / "a-folder", 3)
