"""Every person's data (tasks/data/builders.py, then the cleanup): encodings, line endings, shapes,
drop reports that name the user's own file and line, samples too long to train on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.data.builders import build_raw
from tasks.data.cleaning import DatasetError, clean
from tasks.data.shapes import map_shape
from tests.helpers import make_project

GOOD = {"instruction": "Say hi", "input": "", "output": "hi"}


class Folder:
    builder, source, command, callable = "folder", "", "", ""


def _build_and_clean(tmp_path: Path, files: dict[str, bytes], **kw):
    src = tmp_path / "notes"
    src.mkdir(parents=True)
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    settings = Folder()
    settings.source = str(src)
    raw, sources = tmp_path / "raw.jsonl", tmp_path / "sources.json"
    build_raw(settings, "2026-11-01", raw, tmp_path, sources)
    stats = clean(raw, tmp_path / "clean.jsonl", sources, **kw)
    rows = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    return stats, rows, json.loads(sources.read_text())


def _lines(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_a_utf8_bom_does_not_cost_the_first_line(tmp_path):
    stats, rows, _ = _build_and_clean(tmp_path, {"a.jsonl": b"\xef\xbb\xbf" + _lines(GOOD, {**GOOD, "output": "yo"})})
    assert stats.kept == 2 and not stats.dropped


def test_a_bom_in_a_raw_file_from_another_builder_is_stripped(tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(b"\xef\xbb\xbf" + _lines(GOOD))
    assert clean(raw, tmp_path / "out.jsonl").kept == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_decoded(tmp_path, encoding):
    text = _lines(GOOD, {"instruction": "Grüße", "output": "héllo ✓"}).decode()
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    stats, rows, sources = _build_and_clean(tmp_path, {"wide.jsonl": data})
    assert stats.kept == 2 and rows[1]["output"] == "héllo ✓"
    assert any("decoded from utf-16" in n or "decoded from utf-32" in n for n in sources["files"][0]["notes"])


def test_nan_in_an_ignored_field_does_not_drop_the_record(tmp_path):
    line = b'{"instruction": "q", "output": "a", "score": NaN, "weight": Infinity}\n'
    stats, rows, _ = _build_and_clean(tmp_path, {"a.jsonl": line})
    assert stats.kept == 1 and rows == [{"instruction": "q", "input": "", "output": "a"}]


def test_messages_name_the_users_own_file_and_line(tmp_path):
    files = {"a.jsonl": _lines(GOOD, {**GOOD, "output": "2"}), "sub/b.jsonl": _lines({**GOOD, "output": "3"}) + b"{oops\n"}
    stats, _, _ = _build_and_clean(tmp_path, files)
    assert stats.examples["invalid_json"] == [f"{tmp_path / 'notes' / 'sub' / 'b.jsonl'}:2"]
    report = stats.as_dict()
    assert "invalid_json" in report["advice"]


def test_common_shapes_are_mapped_and_counted(tmp_path):
    records = [
        {"Instruction": "Case", "Output": "mapped"},
        {"prompt": "P", "completion": "C"},
        {"question": "Q", "answer": "A"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
        {"text": "no split here"},
    ]
    stats, rows, _ = _build_and_clean(tmp_path, {"a.JSONL": _lines(*records)})
    assert stats.kept == 5
    assert dict(stats.shapes) == {"instruction_other_case": 1, "prompt_completion": 1, "question_answer": 1,
                                  "messages": 1, "sharegpt": 1}
    assert {"instruction": "hi", "input": "system: be brief", "output": "hello"} in rows
    assert stats.dropped["unknown_shape"] == 1 and "fields: text" in stats.examples["unknown_shape"][0]
    assert "prompt/completion" in stats.as_dict()["advice"]["unknown_shape"]


def test_files_the_builder_skips_are_listed(tmp_path):
    _, _, sources = _build_and_clean(tmp_path, {"a.jsonl": _lines(GOOD), "notes.txt": b"hello", "b.json": b"{}"})
    assert sorted(Path(p).name for p in sources["skipped"]) == ["b.json", "notes.txt"]


def test_hidden_files_are_listed_among_the_skipped(tmp_path):
    files = {"a.jsonl": _lines(GOOD), ".notes.jsonl": _lines({**GOOD, "output": "2"}),
             ".git/objects/x": b"blob", "sub/.draft.jsonl": _lines(GOOD)}
    stats, rows, sources = _build_and_clean(tmp_path, files)
    assert sorted(Path(p).relative_to(tmp_path / "notes").as_posix() for p in sources["skipped"]) == [
        ".git", ".notes.jsonl", "sub/.draft.jsonl"]
    assert len(rows) == 1  # hidden files are not read, only listed


def test_a_lone_surrogate_drops_its_line_not_the_dataset(tmp_path):
    bad = b'{"instruction": "lone \\ud800 surrogate", "output": "x"}\n'
    stats, rows, _ = _build_and_clean(tmp_path, {"a.jsonl": _lines(GOOD) + bad + _lines({**GOOD, "output": "3"})})
    assert [r["output"] for r in rows] == ["hi", "3"]
    assert stats.dropped["lone_surrogate"] == 1
    assert stats.examples["lone_surrogate"] == [f"{tmp_path / 'notes' / 'a.jsonl'}:2"]
    assert "without its pair" in stats.as_dict()["advice"]["lone_surrogate"]


def test_cr_only_line_endings_are_read_as_lines(tmp_path):
    data = _lines(GOOD, {**GOOD, "output": "2"}).replace(b"\n", b"\r")
    stats, rows, sources = _build_and_clean(tmp_path, {"mac.jsonl": data})
    assert stats.kept == 2 and "CR line endings read as lines" in sources["files"][0]["notes"]


def test_cr_only_raw_file_says_what_is_wrong(tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(_lines(GOOD, {**GOOD, "output": "2"}).replace(b"\n", b"\r"))
    stats = clean(raw, tmp_path / "out.jsonl")
    assert stats.kept == 0 and stats.dropped == {"cr_line_endings": 1}


@pytest.mark.parametrize("blank", [" \t ", "\u200b", "\u200b \ufeff", "\u00ad"])
def test_invisible_fields_count_as_empty(tmp_path, blank):
    stats, _, _ = _build_and_clean(tmp_path, {"a.jsonl": _lines({"instruction": "q", "output": blank},
                                                                {"instruction": blank, "output": "a"})})
    assert stats.kept == 0 and stats.dropped == {"missing_output": 1, "missing_instruction": 1}


def test_too_long_is_dropped_or_cut_before_any_tokenizer(tmp_path):
    long = {"instruction": "q", "output": "x" * 5000}
    stats, _, _ = _build_and_clean(tmp_path, {"a.jsonl": _lines(GOOD, long)}, max_seq_length=64)
    assert stats.kept == 1 and stats.dropped == {"too_long": 1}
    stats, rows, _ = _build_and_clean(tmp_path / "cut", {"a.jsonl": _lines(GOOD, long)}, max_seq_length=64,
                                      too_long="cut")
    assert stats.kept == 2 and stats.cut == 1 and len(rows[1]["output"]) < 64 * 32


def test_map_shape_names_unknown_shapes():
    assert map_shape({"text": "x"}) == (None, "unknown_shape")
    assert map_shape({"messages": [{"role": "user", "content": "only a question"}]}) == (None, "unknown_shape")



def test_missing_source_folder_fails_before_the_dataset_exists(tmp_path):
    proj = make_project(tmp_path / "proj", source=tmp_path / "nowhere")
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    assert "has no *.jsonl files" in proc.stdout
    assert proj.summary["error"].startswith("build_dataset: ")


def test_command_builder_fills_date_and_out(tmp_path):
    proj = make_project(tmp_path / "proj", dataset={
        "builder": "command",
        "command": "printf '{\"instruction\":\"%s\",\"output\":\"ok\"}\\n' {date} > {out}"})
    proc = proj.doit("clean_dataset", check=True)
    assert "samples_used=1" in proc.stdout
    row = json.loads((proj.work / "unsloth_dataset.jsonl").read_text())
    assert row["instruction"] == proj.date


def test_python_callable_builder(tmp_path):
    (tmp_path / "mybuilder.py").write_text(
        "def build(date, out):\n    return [{'instruction': 'day', 'output': date}]\n")
    proj = make_project(tmp_path / "proj", dataset={"builder": "python", "callable": "mybuilder:build"})
    proj.env["PYTHONPATH"] += f":{tmp_path}"
    proj.doit("clean_dataset", check=True)
    assert json.loads((proj.work / "unsloth_dataset.jsonl").read_text())["output"] == proj.date


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_unit_that_is_no_character_costs_its_line_not_the_file(tmp_path, encoding):
    """A UTF-16 file with a lone surrogate on line 2 (an editor cut an emoji in half): that line is
    named as the user's file:line, the lines around it are kept."""
    good = _lines(GOOD, {"instruction": "after", "output": "kept"}).decode().splitlines(keepends=True)
    data = good[0].encode(encoding) + b""
    bad = '{"instruction": "bad", "output": "x"}\n'.encode(encoding.replace("utf-16", "utf-16-le")
                                                            .replace("utf-32", "utf-32-le"))
    broken = bad[:12] + (b"\x00\xd8" if encoding == "utf-16" else b"\x00\xd8\x00\x00") + bad[12:]  # a lone high surrogate
    data += broken + good[1].encode(encoding)[2 if encoding == "utf-16" else 4:]
    stats, rows, _ = _build_and_clean(tmp_path, {"wide.jsonl": data})
    assert [r["instruction"] for r in rows] == ["Say hi", "after"]
    assert stats.dropped == {"not_utf8": 1} and stats.examples["not_utf8"][0].endswith("wide.jsonl:2")


def test_records_a_callable_returns_are_written_whatever_they_hold(tmp_path, monkeypatch):
    module = tmp_path / "mybuilder.py"
    module.write_text("import datetime as dt\n"
                      "def build(date, out):\n"
                      "    yield {'instruction': 'when', 'output': 'now', 'at': dt.date(2026, 1, 1)}\n"
                      "    yield {'instruction': 'keys', 'output': 'ok', 1: 'a number key'}\n"
                      "    loop = {'instruction': 'loop', 'output': 'x'}\n"
                      "    loop['self'] = loop\n"
                      "    yield loop\n"
                      "    yield {'instruction': 'last', 'output': 'kept'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Folder()
    settings.builder, settings.callable = "python", "mybuilder:build"
    build_raw(settings, "2026-11-01", tmp_path / "raw.jsonl", tmp_path)
    stats = clean(tmp_path / "raw.jsonl", tmp_path / "clean.jsonl")
    assert stats.kept == 3 and stats.dropped == {"invalid_json": 1}  # the date became text; the loop is named
    assert stats.examples["invalid_json"] == [f"{tmp_path / 'raw.jsonl'}:3"]


def test_a_callable_that_raises_is_named(tmp_path, monkeypatch):
    module = tmp_path / "failing.py"
    module.write_text("def build(date, out):\n    yield {'instruction': 'a', 'output': 'b'}\n    raise KeyError('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Folder()
    settings.builder, settings.callable = "python", "failing:build"
    with pytest.raises(DatasetError, match="failing:build' raised KeyError"):
        build_raw(settings, "2026-11-01", tmp_path / "raw.jsonl", tmp_path)
