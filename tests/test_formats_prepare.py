"""prepare_dataset_file: Arrow-safe output, exact values, cache reuse, errors and skip counts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from test_formats_xlam import xlam_record

from minicpm_plugin.formats import (
    DataError,
    decode_row,
    load_conversations,
    prepare_dataset_file,
    read_prepared,
)
from minicpm_plugin.formats.prepare import ROW_KEYS

F = {"type": "function", "function": {"name": "set", "parameters": {"type": "object", "properties": {"x": {}}}}}


def row(value: Any, name: str = "set") -> dict[str, Any]:
    """A tool-call conversation whose argument x has the given value (types differ across rows)."""
    return {"messages": [
        {"role": "user", "content": "set x"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": name, "arguments": json.dumps({"x": value})}}]},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "done"}], "tools": [F]}


def write(tmp_path: Path, records: list[Any], name: str = "train.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


VALUES = [1.61, None, "1.61", {"nested": [1, 2.5, None]}, [True, False], 10**18, -0.0001, "北京"]


def test_prepared_rows_are_strings_with_exact_values(tmp_path: Path) -> None:
    src = write(tmp_path, [row(v) for v in VALUES])
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert (prepared.rows, prepared.written, prepared.skipped, prepared.with_tools, prepared.calls) == (8, 8, {}, 8, 8)
    assert prepared.format == "openai" and not prepared.reused and prepared.problems_path is None
    lines = Path(prepared.path).read_text(encoding="utf-8").splitlines()
    raw = [json.loads(line) for line in lines]
    # Strings, and the label spans as one flat list of ints: nothing for Arrow to infer from the arguments.
    assert all(set(r) == ROW_KEYS and all(isinstance(v, str) for k, v in r.items() if k != "spans") for r in raw)
    assert all(r["spans"] and all(type(v) is int for v in r["spans"]) for r in raw)
    assert [r["source"] for r in raw] == [f"{src}:{i}" for i in range(1, 9)]
    got = [decode_row(r)["messages"][1]["tool_calls"][0]["function"]["arguments"]["x"] for r in raw]
    assert got == VALUES
    assert '\\"x\\": 1.61}' in lines[0]  # the digits written in the file, not 1.6099999999999999
    assert [s for _, s in read_prepared(prepared.path)] == [r["source"] for r in raw]


def test_arrow_reads_mixed_argument_types(tmp_path: Path) -> None:
    pa_json = pytest.importorskip("pyarrow.json")
    src = write(tmp_path, [row(v) for v in VALUES])
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out")
    table = pa_json.read_json(prepared.path)
    types = dict(zip(table.schema.names, map(str, table.schema.types), strict=True))
    assert types == {"conversation": "string", "source": "string", "text": "string", "literal_style": "string",
                     "spans": "list<item: int64>"}
    first = json.loads(table.column("conversation")[0].as_py())
    assert first["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"x": 1.61}


def test_output_name_is_deterministic_and_reused(tmp_path: Path) -> None:
    src = write(tmp_path, [row(1)])
    first = prepare_dataset_file(src, out_dir=tmp_path / "out")
    again = prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert again.path == first.path and again.reused and (again.rows, again.written) == (1, 1)
    assert Path(first.path).name.startswith("train.") and first.path.endswith(".jsonl")
    other = prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert other.path != first.path
    src.write_text(json.dumps(row(2)) + "\n", encoding="utf-8")
    changed = prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert changed.path != first.path and not changed.reused


def test_errors_stop_preparation_with_the_first_problems(tmp_path: Path) -> None:
    records = [row(1)] + [row(i, name="sett") for i in range(12)] + [row(2)]
    src = write(tmp_path, records, "bad.jsonl")
    with pytest.raises(DataError) as info:
        prepare_dataset_file(src, out_dir=tmp_path / "out")
    text = str(info.value).splitlines()
    assert text[0] == f"{src}: 12 of 14 rows have errors (format openai):"
    assert text[1] == (f"  {src}:2: messages[1].tool_calls[0].function.name: tool call to 'sett', which is not in "
                       "tools (declared: set) [unknown-function]")
    assert len(text) == 1 + 10 + 2
    assert text[11] == "  ... and 2 more problems"
    assert text[12].startswith("Fix these rows, or set `minicpm3_on_bad_rows: skip` in the config to leave bad rows out")
    assert len(info.value.problems) == 12
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))


def test_skip_counts_rows_by_reason_and_lists_them(tmp_path: Path) -> None:
    records = [row(1), row(2, name="sett"), "not json", row(3)]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in records) + "\n", encoding="utf-8")
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert (prepared.rows, prepared.written) == (4, 2)
    assert prepared.skipped == {"unknown-function": 1, "invalid-json": 1}
    assert prepared.summary() == (
        f"{src} (openai): 4 rows, 2 prepared, 2 skipped (invalid-json: 1, unknown-function: 1); 2 with tools, 2 calls, "
        f"0 thoughts; every problem is listed in {prepared.problems_path}")
    listed = Path(prepared.problems_path).read_text(encoding="utf-8").splitlines()
    assert [line.split(": ")[0] for line in listed] == [f"{src}:2", f"{src}:3"]


def test_nothing_usable_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    src = write(tmp_path, [row(1, name="sett")])
    with pytest.raises(DataError, match="every one of its 1 rows has errors"):
        prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="skip")
    with pytest.raises(DataError, match="cannot read the file"):
        prepare_dataset_file(tmp_path / "missing.jsonl", out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="on_bad_rows must be one of error, skip"):
        prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="drop")


def test_undetectable_file_is_not_skippable(tmp_path: Path) -> None:
    src = write(tmp_path, [{"prompt": "a", "completion": "b"}])
    with pytest.raises(DataError) as info:
        prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert "no known format reads every record" in str(info.value)
    assert "minicpm3_on_bad_rows" not in str(info.value)


def test_other_formats_and_load_conversations(tmp_path: Path) -> None:
    src = tmp_path / "xlam.json"
    src.write_text(json.dumps([xlam_record()]), encoding="utf-8")
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert (prepared.format, prepared.written, prepared.calls) == ("xlam", 1, 3)
    (conv,) = load_conversations(src)
    assert conv == next(read_prepared(prepared.path))[0]
    bad = write(tmp_path, [row(1), row(2, name="sett")])
    with pytest.raises(DataError):
        load_conversations(bad)
    assert len(load_conversations(bad, on_bad_rows="skip")) == 1


# ---- the rendered text and label spans, streaming, several processes ------------------------------

def test_rows_carry_the_render_and_the_label_spans(tmp_path: Path) -> None:
    from minicpm_plugin.chat import render_conversation
    from minicpm_plugin.chat.spans import label_spans
    from minicpm_plugin.formats.prepare import decode_spans, encode_spans, stored_render

    c = row(None)
    c["messages"].insert(0, {"role": "system", "content": "sys"})
    c["messages"][2]["thought"] = "think first"
    c["messages"][4]["train"] = False
    src = write(tmp_path, [c])
    for style in ("json", "python"):
        prepared = prepare_dataset_file(src, out_dir=tmp_path / "out", literal_style=style)
        raw = json.loads(Path(prepared.path).read_text(encoding="utf-8"))
        conv = decode_row(raw)
        expected = render_conversation(conv["messages"], conv["tools"], literal_style=style)
        assert raw["text"] == expected.text and raw["literal_style"] == style
        assert ("x=None" if style == "python" else "x=null") in raw["text"]
        spans = decode_spans(raw["spans"])
        assert spans == label_spans(expected.spans, conv["messages"]) and encode_spans(spans) == raw["spans"]
        # message 2: thought, calls, <|im_end|>, "\n"; message 4 ("train": false): only its "\n"
        assert [(s.message_index, s.part.value) for s in spans] == [
            (2, "thought"), (2, "tool_calls"), (2, "end"), (2, "newline"), (4, "newline")]
        assert [raw["text"][s.start:s.end] for s in spans][2:] == ["<|im_end|>", "\n", "\n"]
        assert stored_render(raw, style) is not None and stored_render(raw, "python" if style == "json" else "json") is None
    other = prepare_dataset_file(src, out_dir=tmp_path / "out", literal_style="json")
    assert other.reused and other.path != prepared.path  # the literal style is part of the cache key


def test_streamed_records_equal_the_whole_file_reading(tmp_path: Path) -> None:
    """iter_records (line by line) yields exactly what parse_records yields for the whole file."""
    from minicpm_plugin.formats.reader import FileProblem, as_record, iter_records, parse_records

    good = json.dumps(row(1))
    cases = {
        "plain": f"{good}\n{good}\n",
        "bom_crlf_blank": f"\ufeff{good}\r\n\r\n   \n{good}\r\n",
        "no_final_newline": f"{good}\n{good}",
        "bad_lines": f'{good}\nnot json\n[1, 2]\n"text"\n{good}\n',
        "not_utf8": good + "\n" + '{"a": "\xff"}\n',
        "pretty_object": json.dumps(row(1), indent=2),
        "bad_first_line": '{"messages": [\n' + good + "\n",
        "array": json.dumps([row(1), row(2)], indent=1),
        "blank_then_array": " " * 5000 + json.dumps([row(1)]),
        "gzip": gzip.compress(f"{good}\n{good}\n".encode()),
        "utf16": "\ufeff".encode("utf-16-le") + f"{good}\n{good}\n".encode("utf-16-le"),
        "repeated_key": '{"messages": [], "messages": []}\n' + good + "\n",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(text if isinstance(text, bytes) else
                         text.encode("latin-1") if name == "not_utf8" else text.encode("utf-8"))
        data = path.read_bytes()
        for lazy in (False, True):
            seen: list[int] = []
            got = [as_record(r) for r in iter_records(path, "f", seen.append, lazy=lazy)]
            assert got == parse_records(data, "f"), name
            assert sum(seen) == len(data), name
    assert [r.value for r in parse_records((tmp_path / "gzip.jsonl").read_bytes(), "f")] == [row(1), row(1)]
    assert [r.value for r in parse_records((tmp_path / "utf16.jsonl").read_bytes(), "f")] == [row(1), row(1)]
    assert parse_records((tmp_path / "repeated_key.jsonl").read_bytes(), "f")[0].problem.message.startswith(
        'key "messages" appears more than once')
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(FileProblem, match="the file is empty"):
        list(iter_records(empty, "empty.jsonl"))
    bad_array = tmp_path / "bad.json"
    bad_array.write_text("[" + good + ",\n{oops}]", encoding="utf-8")
    with pytest.raises(FileProblem, match="invalid JSON"):
        list(iter_records(bad_array, "bad.json"))
    with pytest.raises(FileProblem, match="cannot read the file"):
        iter_records(tmp_path / "missing.jsonl")


def test_several_processes_write_the_same_rows_and_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minicpm_plugin.formats import prepare

    monkeypatch.setattr(prepare, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(prepare, "PARALLEL_CHUNK", 7)
    records: list[Any] = [row(v) for v in VALUES * 25] + [row(1, name="sett"), "not json"] + [row(i) for i in range(40)]
    records[130]["messages"][1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"x": 1, "y": 2})  # a warning
    src = tmp_path / "many.jsonl"
    src.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in records) + "\n", encoding="utf-8")
    outs = {n: prepare_dataset_file(src, out_dir=tmp_path / f"out{n}", on_bad_rows="skip", num_proc=n) for n in (1, 2)}
    one, two = outs[1], outs[2]
    assert (one.rows, one.written, one.skipped, one.warnings) == (242, 240, {"unknown-function": 1, "invalid-json": 1}, 1)
    assert (two.rows, two.written, two.skipped, two.warnings, two.calls) == (one.rows, one.written, one.skipped,
                                                                             one.warnings, one.calls)
    assert Path(two.path).read_bytes() == Path(one.path).read_bytes()
    assert Path(two.problems_path).read_bytes() == Path(one.problems_path).read_bytes()
    with pytest.raises(DataError) as info:
        prepare_dataset_file(src, out_dir=tmp_path / "err", num_proc=2)
    assert str(info.value).splitlines()[0] == f"{src}: 2 of 242 rows have errors (format openai):"
    assert [p.location for p in info.value.problems] == [f"{src}:201", f"{src}:202"]
    assert list((tmp_path / "err").iterdir()) == []  # nothing final, no temporary file left


def test_a_lone_surrogate_is_a_located_problem_not_a_traceback(tmp_path: Path) -> None:
    src = tmp_path / "sur.jsonl"
    bad = json.dumps(row(1)).replace('"set x"', '"set \\ud800 x"')
    src.write_text(json.dumps(row(1)) + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        prepare_dataset_file(src, out_dir=tmp_path / "out")
    assert f"{src}:2: " in str(info.value)
    prepared = prepare_dataset_file(src, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert (prepared.rows, prepared.written, sum(prepared.skipped.values())) == (2, 1, 1)


def test_memory_stays_bounded_while_a_large_file_streams(tmp_path: Path) -> None:
    """20,000 rows (about 16 MB): the prepared rows are never all in memory (loose bound, tracemalloc)."""
    import tracemalloc

    src = tmp_path / "big.jsonl"
    filler = "lorem ipsum dolor sit amet " * 20
    with open(src, "w", encoding="utf-8") as fh:
        for i in range(20_000):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"q{i} {filler}"},
                                              {"role": "assistant", "content": f"a{i} {filler}"}]}) + "\n")
    size = src.stat().st_size
    tracemalloc.start()
    try:
        prepared = prepare_dataset_file(src, out_dir=tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prepared.written == 20_000 and Path(prepared.path).stat().st_size > 2 * size
    assert size > 15e6 and peak < 5e6, (size, peak)


def test_progress_bar_for_a_long_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The plugin's bar (tqdm on stderr) covers the file's bytes; none for a small file without a terminal."""
    from datasets.utils.tqdm import are_progress_bars_disabled

    from minicpm_plugin.integration import progress

    src = write(tmp_path, [row(i) for i in range(50)])
    with progress.file_progress(src, "minicpm3: preparing train.jsonl") as update:
        assert update is None  # stderr is not a terminal here and the file is small
    if are_progress_bars_disabled():
        pytest.skip("progress bars are disabled in this environment")
    monkeypatch.setattr(progress, "LONG_FILE_BYTES", 1)
    with progress.file_progress(src, "minicpm3: preparing train.jsonl") as update:
        assert update is not None
        prepare_dataset_file(src, out_dir=tmp_path / "out", progress=update)
    err = capsys.readouterr().err
    assert "minicpm3: preparing train.jsonl: 100%" in err, err
    with progress.file_progress(src, "minicpm3: preparing again") as update:
        again = prepare_dataset_file(src, out_dir=tmp_path / "out", progress=update)
    assert again.reused and "preparing again" not in capsys.readouterr().err  # a reused file shows no bar
