"""Auto-detection per file: one format, none, several; forcing; aliases; `specializes`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import BUILTIN_FORMATS
from test_formats_glaive import glaive_record
from test_formats_hermes import hermes_record
from test_formats_sharegpt import llamafactory_record
from test_formats_xlam import xlam_record

from minicpm_plugin.formats import MATCH, NO, Format, FormatLookupError, Registry, get_registry, scan_file
from minicpm_plugin.formats.manager import build_registry

OPENAI = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "content": "ok"},
    {"role": "assistant", "content": "done"}], "tools": [{"type": "function", "function": {"name": "f"}}]}
SEED = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write(tmp_path: Path, records: list[Any], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(("records", "expected"), [
    ([SEED, SEED], "seed"),
    ([SEED, OPENAI], "openai"),  # plain chats mixed with tool calls: openai reads both
    ([llamafactory_record()], "sharegpt"),
    ([glaive_record()], "glaive"),
    ([xlam_record()], "xlam"),
    ([hermes_record(), {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}], "hermes"),
    ([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}], "sharegpt"),
])
def test_detects_each_format(tmp_path: Path, records: list[Any], expected: str) -> None:
    scanned = scan_file(write(tmp_path, records))
    assert scanned.format == expected
    assert [p for p in scanned.problems if p.is_error] == []


def test_builtins_are_registered_through_the_hook() -> None:
    reg = build_registry(entry_points=False)
    assert reg.names() == BUILTIN_FORMATS
    assert set(reg.origins.values()) == {"builtin"}
    assert reg.plugin_manager is not None and reg.plugin_manager.get_plugin("builtin") is not None
    assert "builtin" in get_registry().origins.values()


def test_no_format_matches(tmp_path: Path) -> None:
    scanned = scan_file(write(tmp_path, [{"prompt": "hi", "completion": "yo"}]), file="pc.jsonl")
    assert scanned.format is None and scanned.rows == []
    assert [str(p) for p in scanned.problems] == [
        "pc.jsonl: no known format reads every record (1 record checked; keys of the first record: prompt, completion). "
        "Known formats: seed, openai, sharegpt, glaive, xlam, hermes, llamafactory_v1, swift, alpaca, query_response, "
        "preference; force one with --format NAME (check/render) or "
        "`minicpm3_format: NAME` (training config), or add a format plugin (entry-point group minicpm_plugin.formats) "
        "[no-format]"
    ]


def test_mixed_file_says_which_formats_partly_match(tmp_path: Path) -> None:
    scanned = scan_file(write(tmp_path, [OPENAI, llamafactory_record()]), file="mixed.jsonl")
    (problem,) = scanned.problems
    assert problem.code == "no-format"
    assert "partly: openai 1, sharegpt 1 of 2 (a mixed file? force a format to list the records that do not fit it)" in str(problem)


class PromptCompletion(Format):
    name = "pc"
    description = "prompt/completion"

    def detect(self, record: Any) -> int:
        return MATCH if "chat" in record or "prompt" in record else NO

    def convert(self, record: Any) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]}


def test_several_formats_match(tmp_path: Path) -> None:
    base = build_registry(entry_points=False)
    reg = Registry(formats={**base.formats, "pc": PromptCompletion()}, origins={**base.origins, "pc": "test"})
    scanned = scan_file(write(tmp_path, [glaive_record()]), file="g.jsonl", registry=reg)
    assert [str(p) for p in scanned.problems] == [
        "g.jsonl: the file matches several formats: glaive, pc (1 record checked); force one with --format NAME "
        "(check/render) or `minicpm3_format: NAME` (training config) [several-formats]"
    ]
    forced = scan_file(write(tmp_path, [glaive_record()]), registry=reg, format="glaive")
    assert forced.format == "glaive" and forced.problems == []


def test_forcing_unknown_format_and_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, [llamafactory_record()])
    assert scan_file(path, format="LLaMAFactory").format == "sharegpt"
    scanned = scan_file(path, file="x.jsonl", format="dolly")
    assert [str(p) for p in scanned.problems] == [
        f"x.jsonl: unknown format 'dolly'; known formats: {', '.join(BUILTIN_FORMATS)} [no-format]"]
    with pytest.raises(FormatLookupError):
        get_registry().get("dolly")


def test_forced_format_reports_records_it_cannot_read(tmp_path: Path) -> None:
    scanned = scan_file(write(tmp_path, [SEED, glaive_record()]), file="d.jsonl", format="seed")
    assert [str(p) for p in scanned.problems] == ["d.jsonl:2: this record does not look like seed; its keys: system, chat [wrong-format]"]
    assert scanned.rows[0].ok and not scanned.rows[1].ok


def test_broken_converter_is_reported_not_raised(tmp_path: Path) -> None:
    class Broken(PromptCompletion):
        name = "broken"

        def convert(self, record: Any) -> dict[str, Any]:
            raise KeyError("completion")

    reg = Registry(formats={"broken": Broken()})
    scanned = scan_file(write(tmp_path, [{"prompt": "x"}]), file="b.jsonl", registry=reg)
    assert [str(p) for p in scanned.problems] == ["b.jsonl:1: the broken converter failed: KeyError: 'completion' [bad-record]"]


def test_docs_cover_every_code_and_format_and_the_plugin_example_works() -> None:
    import re

    from minicpm_plugin.formats import CODES, canonicalize

    doc = (Path(__file__).resolve().parent.parent / "docs" / "data_formats.md").read_text(encoding="utf-8")
    assert all(f"| `{code}` | {sev} |" in doc for code, (sev, _) in CODES.items())
    assert all(f"| `{name}`" in doc for name in get_registry().names() if get_registry().origins[name] == "builtin")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "hookimpl" in b]
    namespace: dict[str, Any] = {}
    exec(compile(example, "data_formats.md", "exec"), namespace)
    (fmt,) = namespace["minicpm_plugin_formats"]()
    record = {"instruction": "Add", "context": "1+1", "response": "2", "category": "closed_qa"}
    assert fmt.detect(record) == MATCH
    conv, issues = canonicalize(fmt.convert(record))
    assert issues == [] and conv["messages"][0]["content"] == "Add\n\n1+1"


def test_formats_and_cli_modules_import_no_heavy_dependencies() -> None:
    import subprocess
    import sys

    code = ("import sys, minicpm_plugin.formats, minicpm_plugin.cli.check, minicpm_plugin.cli.render\n"
            "from minicpm_plugin.formats import scan_file\n"
            "print([m for m in ('torch', 'axolotl', 'transformers', 'datasets', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "[]"
