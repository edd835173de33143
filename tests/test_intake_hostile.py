"""Hostile input for `check` and `render`: each gets one `FILE:LINE: what to change` line, exit 1, no traceback.

Big and binary inputs are generated here; the rules are in docs/data_formats.md ("Files").
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicpm_plugin.cli import main
from minicpm_plugin.formats import scan_file
from minicpm_plugin.formats.reader import parse_records
from minicpm_plugin.formats.strict_json import MAX_DEPTH, JSONValueError, depth_exceeds, loads

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
G = json.dumps(GOOD)
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "x": {"type": "number"}, "o": {"type": "object"}}}}}


def call(arguments: str) -> str:
    """A tool-call record whose arguments are the given JSON text (an object or a JSON string)."""
    return ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": '
            f'[{{"type": "function", "function": {{"name": "f", "arguments": {arguments}}}}}]}}], "tools": '
            f"[{json.dumps(TOOL)}]}}")


def lines(*records: str) -> bytes:
    return "".join(r + "\n" for r in records).encode("utf-8")


DUP = ('key "{}" appears more than once in this object; JSON readers keep only its last value and drop the others '
       "silently: keep one")
DEEP = ("arrays/objects are nested more than 100 levels deep (the most this reader accepts, so that nothing later runs "
        "out of stack); flatten the data")
SURROGATE = ("the {} holds a lone surrogate \\u{} (character {}), which is not Unicode text and cannot be written as "
             "UTF-8; fix the \\u escape (a pair such as \\ud83d\\ude00 is fine) or remove it")
ARGS = "messages[1].tool_calls[0].function.arguments"
WHOLE = "; a JSON array file is read as a whole, so no record can be used until this is fixed"

# name, file contents, the record `render --line` shows, the one problem line after "FILE"
HOSTILE: list[tuple[str, bytes, int | None, str]] = [
    ("repeated_key.jsonl", lines(G, '{"messages": [], "messages": []}'), 2,
     ":2: " + DUP.format("messages") + " [invalid-json]"),
    ("repeated_nested_key.jsonl", lines(G, call('{"o": {"k": 1, "k": 2}}')), 2,
     f":2: {ARGS}.o: " + DUP.format("k") + " [invalid-json]"),
    ("repeated_key_in_arguments_string.jsonl", lines(G, call(json.dumps('{"x": 1, "x": 2}'))), 2,
     f":2: {ARGS}: in the arguments JSON string: " + DUP.format("x") + " [bad-arguments]"),
    ("overflow.jsonl", lines(G, call('{"x": 1e400}')), 2,
     f":2: {ARGS}.x: number 1e400 is beyond the range of a 64-bit float (it would become Infinity); write a smaller "
     "number, or the value as a string [invalid-json]"),
    ("negative_overflow.jsonl", lines(G, call('{"x": -1e400}')), 2,
     f":2: {ARGS}.x: number -1e400 is beyond the range of a 64-bit float (it would become -Infinity); write a "
     "smaller number, or the value as a string [invalid-json]"),
    ("underflow.jsonl", lines(G, call('{"x": 1e-400}')), 2,
     f":2: {ARGS}.x: number 1e-400 is too small for a 64-bit float (it would become 0.0); write 0, or the value as "
     "a string [invalid-json]"),
    ("underflow_in_arguments_string.jsonl", lines(G, call(json.dumps('{"x": 0.000000001e-399}'))), 2,
     f":2: {ARGS}.x: in the arguments JSON string: number 0.000000001e-399 is too small for a 64-bit float (it would "
     "become 0.0); write 0, or the value as a string [bad-arguments]"),
    ("long_integer.jsonl", lines(G, call('{"x": %s}' % ("9" * 5000))), 2,
     f":2: {ARGS}.x: integer with 5,000 digits: Python reads at most 4,300; write it as a string [invalid-json]"),
    ("deep_line.jsonl", lines(G, "[" * 100_000), 2, ":2: " + DEEP + " [invalid-json]"),
    ("deep_arguments.jsonl", lines(G, call('{"o": %s}' % ("[" * 150 + "]" * 150))), 2, ":2: " + DEEP + " [invalid-json]"),
    ("deep_first_line.jsonl", lines("[" * 100_000, G), 1, ":1: record 1 (line 1 of the file): " + DEEP + WHOLE
     + " [invalid-json]"),
    ("lone_surrogate.jsonl", lines(G, G.replace('"hi"', '"a\\ud800b"')), 2,
     ":2: messages[0].content: " + SURROGATE.format("string", "d800", 2) + " [not-utf8]"),
    ("lone_surrogate_key.jsonl", lines(G, call('{"\\udc00": 1}')), 2,
     f":2: {ARGS}.\\udc00: " + SURROGATE.format("key", "dc00", 1) + " [not-utf8]"),
    ("surrogate_bytes.jsonl", lines(G) + b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}\n', 2,
     ":2: not UTF-8 text (byte 44) [not-utf8]"),
    ("array_repeated_key.json", f'[{G},\n {{"messages": [], "messages": []}}]'.encode(), 2,
     ":2: " + DUP.format("messages") + " [invalid-json]"),
    ("array_nan.json", f"[{G}, {G.replace('hello', 'x').replace('[', '[NaN, ', 1)}]".encode(), 2,
     ":2: messages[0]: NaN is not valid JSON; write null, a number or a string [invalid-json]"),
    ("array_deep.json", f"[{G},\n{'[' * 100_000}]".encode(), 2,
     ":2: record 2 (line 2 of the file): " + DEEP + WHOLE + " [invalid-json]"),
    ("empty.jsonl", b"", None, ": the file is empty: there are no records to read [unreadable-file]"),
    ("whitespace.jsonl", b"\n \r\n\t\n", None, ": the file is only whitespace: there are no records to read [unreadable-file]"),
    ("empty.jsonl.gz", gzip.compress(b""), None,
     ": the file is empty after gzip decompression: there are no records to read [unreadable-file]"),
    ("truncated.jsonl.gz", gzip.compress(lines(G) * 50)[:40], None,
     ": cannot decompress this gzip file (Compressed file ended before the end-of-stream marker was reached); check "
     "that it was copied completely [unreadable-file]"),
    ("bad_utf16.jsonl", b"\xff\xfe" + lines(G).decode().encode("utf-16-le") + b"\x00\xd8\x41\x00", 2,
     ":2: the file is UTF-16-LE text (with a BOM) but line 2 is not valid UTF-16-LE (illegal UTF-16 surrogate); save the "
     "file as UTF-8 [not-utf8]"),
    ("archive.jsonl", b"PK\x03\x04" + bytes(60), None,
     ": this is a zip archive (or .xlsx/.docx): unpack it and give the JSON/JSONL file inside [unreadable-file]"),
    ("binary.jsonl", b"\x01\x02\x00\x03" * 64, None,
     ": this is a binary file, not JSON/JSONL text (supported: JSON, JSONL, the same gzip/bzip2/xz-compressed or "
     "in UTF-16/32, and Parquet) [unreadable-file]"),
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("name", "data", "line", "problem"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_check_and_render_give_one_located_line(name: str, data: bytes, line: int | None, problem: str,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = run_cli(capsys, "check", str(path))
    assert code == 1 and err == ""
    assert out.splitlines()[:-1] == [f"{path}{problem}"]
    assert out.splitlines()[-1].startswith(f"checked 1 file ({path}: ")
    code, out, err = run_cli(capsys, "render", str(path), *(["--line", str(line)] if line else []))
    assert code == 1 and err == ""
    assert out.splitlines() == [f"{path}{problem}"]


def _write_all(tmp_path: Path) -> list[Path]:
    paths = []
    for name, data, _, _ in HOSTILE:
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    return paths


def test_the_command_line_never_prints_a_traceback(tmp_path: Path) -> None:
    """The real entry point (a subprocess): one line per file, then the summary."""
    paths = _write_all(tmp_path)
    cmd = [sys.executable, "-m", "minicpm_plugin.cli"]
    proc = subprocess.run([*cmd, "check", *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[:-1] == [f"{p}{problem}" for p, (_, _, _, problem) in zip(paths, HOSTILE, strict=True)]
    i = [h[0] for h in HOSTILE].index("lone_surrogate.jsonl")
    proc = subprocess.run([*cmd, "render", str(paths[i]), "--line", "2"], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (1, f"{paths[i]}{HOSTILE[i][3]}", "")


def test_check_with_a_tokenizer_refuses_the_same_records(tmp_path: Path, tiny_model_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    paths = _write_all(tmp_path)
    code, out, err = run_cli(capsys, "check", *map(str, paths), "--tokenizer", str(tiny_model_dir), "--sequence-len", "64")
    assert code == 1 and err == ""
    assert out.splitlines()[:-1] == [f"{p}{problem}" for p, (_, _, _, problem) in zip(paths, HOSTILE, strict=True)]


@pytest.mark.parametrize(("name", "data", "line", "problem"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_render_with_a_tokenizer_refuses_the_same_records(name: str, data: bytes, line: int | None, problem: str,
                                                           tmp_path: Path, tiny_model_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = run_cli(capsys, "render", str(path), *(["--line", str(line)] if line else []),
                             "--tokenizer", str(tiny_model_dir))
    assert (code, out.splitlines(), err) == (1, [f"{path}{problem}"], "")


def test_tokenizer_given_as_an_uncached_hub_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    path = tmp_path / "a.jsonl"
    path.write_bytes(lines(G))
    code, _, err = run_cli(capsys, "check", str(path), "--tokenizer", "openbmb/MiniCPM3-4B")
    assert code == 1
    assert err == (f"minicpm-plugin check: error: cannot load a tokenizer from openbmb/MiniCPM3-4B: not a directory, nor "
                   f"a hub id in the local Hugging Face cache ({tmp_path / 'hub'}): download it first (hf download "
                   "openbmb/MiniCPM3-4B) or give the model or tokenizer folder\n")


# ---------------------------------------------------------------------------------------------
# what is accepted, exactly


@pytest.mark.parametrize("text", ["0.0", "0e5", "-0.0", "0.000e-999", "1e308", "5e-324", "-2.2250738585072014e-308",
                                  "1.61", "9" * 4300, '"\\ud83d\\ude00"', '"\\\\ud800"', '{"a": {"a": 1}}'])
def test_values_python_holds_exactly_pass(text: str) -> None:
    assert loads(text) == json.loads(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(alphabet=st.sampled_from(list('ab"\\[]{}\n\u4e2d'))),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                    max_leaves=30), st.integers(0, 12), st.booleans())
@settings(max_examples=300, deadline=None)
def test_depth_check_agrees_with_the_real_depth(value: Any, limit: int, ascii_only: bool) -> None:
    def depth(v: Any) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert depth_exceeds(data, limit) == (depth(value) > limit)


def test_depth_limit_is_exactly_max_depth() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(JSONValueError, match="nested more than 100 levels"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(JSONValueError, match="nested more than 100 levels"):
        loads('{"a": ' * 101 + "1" + "}" * 101)
    assert loads('["' + "[" * 500 + '"]') == ["[" * 500]  # brackets in strings do not count


def test_a_50_mb_line_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 50_000_000}, {"role": "assistant", "content": "ok"}]}
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(big) + "\n" + "[" * 50_000_000 + "\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "check", str(path))
    assert code == 1
    assert out.splitlines()[0] == f"{path}:2: {DEEP} [invalid-json]"
    assert out.splitlines()[1].startswith(f"checked 1 file ({path}: seed): 2 rows, 1 with errors")


# ---------------------------------------------------------------------------------------------
# containers and encodings: read transparently, same locations


def _encodings() -> list[tuple[str, bytes]]:
    text = lines(G, '{"messages": [{"role": "user", "content": "中文"}]}', G.replace("hello", "你好"))
    return [
        ("utf8_bom.jsonl", b"\xef\xbb\xbf" + text),
        ("utf16le_bom.jsonl", b"\xff\xfe" + text.decode().encode("utf-16-le")),
        ("utf16be_bom.jsonl", b"\xfe\xff" + text.decode().encode("utf-16-be")),
        ("utf32le_bom.jsonl", b"\xff\xfe\x00\x00" + text.decode().encode("utf-32-le")),
        ("utf32be_bom.jsonl", b"\x00\x00\xfe\xff" + text.decode().encode("utf-32-be")),
        ("utf16le_no_bom.jsonl", text.decode().encode("utf-16-le")),
        ("data.jsonl.gz", gzip.compress(text)),
        ("data.jsonl.bz2", bz2.compress(text)),
        ("data.jsonl.xz", lzma.compress(text)),
        ("utf16_in_gzip.jsonl.gz", gzip.compress(b"\xff\xfe" + text.decode().encode("utf-16-le"))),
    ]


@pytest.mark.parametrize(("name", "data"), _encodings(), ids=[e[0] for e in _encodings()])
def test_compressed_and_utf16_32_files_are_read_with_their_line_numbers(name: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    scanned = scan_file(path, file=name)
    assert scanned.format == "seed"
    assert [(r.line, r.conversation is not None) for r in scanned.rows] == [(1, True), (2, False), (3, True)]
    assert [str(p) for p in scanned.problems] == [
        f"{name}:2: messages: no assistant turn to train; add the assistant's reply [no-assistant-turn]"]
    assert scanned.rows[2].conversation["messages"][1]["content"] == "你好"


# ---------------------------------------------------------------------------------------------
# Parquet: rows -> records, values as Python values, locations as row numbers


def test_parquet_rows_come_back_exactly(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": [{"role": "user", "content": "天气?", "n": 1, "w": 1.61, "flag": True, "tags": ["a", "b"],
                           "meta": {"k": None, "deep": [[1, 2], [3]]}},
                          {"role": "assistant", "content": "ok", "n": 2**62, "w": 0.1, "flag": False, "tags": [],
                           "meta": {"k": "v", "deep": []}}],
             "labels": {"a": 1}}] * 3
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("n", pa.int64()),
                                         ("w", pa.float64()), ("flag", pa.bool_()), ("tags", pa.list_(pa.string())),
                                         ("meta", pa.struct([("k", pa.string()),
                                                             ("deep", pa.list_(pa.list_(pa.int64())))]))]))),
        ("labels", pa.map_(pa.string(), pa.int64()))]))
    pq.write_table(table, tmp_path / "d.parquet")
    records = parse_records((tmp_path / "d.parquet").read_bytes(), "d.parquet")
    assert [r.line for r in records] == [1, 2, 3]
    for record in records:
        assert record.problem is None
        assert json.dumps(record.value, sort_keys=True) == json.dumps(rows[0], sort_keys=True)
        assert type(record.value["messages"][0]["n"]) is int and record.value["messages"][0]["w"] == 1.61


def test_parquet_from_datasets_checks_and_locates_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The layout the hub's parquet files have (written by `datasets`), tools as a JSON string."""
    from datasets import Dataset

    repo = Path(__file__).resolve().parents[1]
    records = [json.loads(line) for line in (repo / "examples/data/tool_calls.jsonl").read_text().splitlines()][:5]
    for r in records:
        r["tools"] = json.dumps(r["tools"])
    records[3]["messages"] = records[3]["messages"][:1]  # row 4: no assistant turn
    Dataset.from_list(records).to_parquet(str(tmp_path / "train.parquet"))
    path = str(tmp_path / "train.parquet")
    code, out, _ = run_cli(capsys, "check", path)
    assert code == 1
    assert out.splitlines()[0] == f"{path}:4: messages: no assistant turn to train; add the assistant's reply [no-assistant-turn]"
    assert out.splitlines()[1].startswith(f"checked 1 file ({path}: openai): 5 rows, 1 with errors")
    code, out, _ = run_cli(capsys, "render", path, "--line", "2")
    assert code == 0 and out.startswith(f"# {path}:2 (openai): ")
    scanned = scan_file(path)
    want = scan_file(repo / "examples/data/tool_calls.jsonl").rows[1].conversation
    assert scanned.rows[1].conversation == want


@pytest.mark.parametrize(("rows", "problem"), [
    ([{"m": b"\x00bytes"}], ":1: m: a bytes value is not JSON; store it as a string or a number [invalid-json]"),
    ([{"m": float("nan")}], ":1: m: nan is not a JSON value; write null, a number or a string [invalid-json]"),
    ([{"m": [("a", 1), ("a", 2)]}], ":1: m: map key 'a' appears more than once; only one value can be kept "
                                    "[invalid-json]"),
])
def test_parquet_values_json_cannot_hold(rows: list[dict], problem: str, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {bytes: pa.binary(), float: pa.float64(), list: pa.map_(pa.string(), pa.int64())}
    pq.write_table(pa.table({"m": pa.array([r["m"] for r in rows], type=types[type(rows[0]["m"])])}), tmp_path / "x.parquet")
    (record,) = parse_records((tmp_path / "x.parquet").read_bytes(), "x.parquet")
    assert str(record.problem) == "x.parquet" + problem


def test_broken_parquet_and_missing_pyarrow(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "hi"}]]}), tmp_path / "ok.parquet")
    data = (tmp_path / "ok.parquet").read_bytes()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(data[: len(data) // 2])
    code, out, _ = run_cli(capsys, "check", str(broken))
    assert code == 1
    assert out.splitlines()[0] == (
        f"{broken}: not a readable Parquet file (Could not open Parquet input source '<Buffer>': Parquet magic bytes not "
        "found in footer. Either the file is corrupted or this is not a parquet file.); check that it was copied "
        "completely [unreadable-file]")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, out, _ = run_cli(capsys, "check", str(tmp_path / "ok.parquet"))
    assert code == 1
    assert out.splitlines()[0] == (f"{tmp_path / 'ok.parquet'}: reading a Parquet file needs pyarrow, which is not "
                                   "installed: pip install pyarrow (or convert the file to JSONL) [unreadable-file]")


def test_format_core_does_not_import_pyarrow() -> None:
    code = ("import sys, json; from minicpm_plugin.formats import scan_file; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'torch', 'axolotl'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


# ---------------------------------------------------------------------------------------------
# Python-literal data (Hermes/Glaive repr output) and the other JSON-in-JSON fields


def test_python_literals_and_embedded_json_are_checked_too() -> None:
    from minicpm_plugin.formats.base import RecordError, loads_lenient
    from minicpm_plugin.formats.glaive import parse_functions

    with pytest.raises(RecordError, match="key 'a' appears more than once in a dict"):
        loads_lenient("{'a': 1, 'a': 2}", "x", "a <tool_call> block")
    with pytest.raises(RecordError, match="number 1e-400 is too small"):
        loads_lenient("{'a': 1e-400}", "x", "a <tool_call> block")
    with pytest.raises(RecordError, match="lone surrogate"):
        loads_lenient("{'a': '\\ud800'}", "x", "a <tool_call> block")
    with pytest.raises(RecordError) as info:  # JSON that Python would change: not retried as a Python literal
        loads_lenient('{"a": {"b": 1, "b": 2}}', "x", "a <tool_call> block")
    assert (info.value.path, info.value.message) == ("x.a", "a <tool_call> block: " + DUP.format("b"))
    with pytest.raises(RecordError, match='a function schema after the prompt: key "name" appears more than once'):
        parse_functions('SYSTEM: You can call -\n{"name": "f", "name": "g", "parameters": {}}')


def test_training_preparation_reads_gzip_and_parquet_like_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from minicpm_plugin.formats.prepare import prepare_dataset_file, read_prepared

    repo = Path(__file__).resolve().parents[1]
    plain = repo / "examples/data/tool_calls.jsonl"
    records = [json.loads(line) for line in plain.read_text().splitlines()]
    (tmp_path / "tc.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    for r in records:  # the hub's layout: objects whose keys differ between rows kept as JSON strings
        r["tools"] = json.dumps(r["tools"])
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "tc.parquet")
    want = [c for c, _ in read_prepared(prepare_dataset_file(plain, out_dir=tmp_path / "p").path)]
    for name in ("tc.jsonl.gz", "tc.parquet"):
        prepared = prepare_dataset_file(tmp_path / name, out_dir=tmp_path / "p")
        assert (prepared.rows, prepared.written, prepared.skipped) == (len(records), len(records), {})
        got = list(read_prepared(prepared.path))
        assert [c for c, _ in got] == want
        assert got[4][1] == f"{tmp_path / name}:5"
