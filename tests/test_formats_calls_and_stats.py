"""One reader of tool calls for the renderer and the validation; file statistics computed once."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.chat import CallError, calls, render
from minicpm_plugin.cli import main
from minicpm_plugin.formats import ScannedFile, canonical, canonicalize, prepare_dataset_file


def test_renderer_and_validation_share_the_call_reader() -> None:
    assert render.call_arguments is calls.call_arguments is canonical.call_arguments


@pytest.mark.parametrize("call", [
    {"type": "function", "function": {"name": "f", "arguments": '{"x": 1.61, "y": null}'}},
    {"function": {"name": "f", "arguments": {"x": 1.61, "y": None}}},
    {"name": "f", "arguments": '{"x": 1.61, "y": null}'},
    {"name": "f", "arguments": {"x": 1.61, "y": None}, "id": "c1"},
])
def test_every_call_shape_reads_the_same(call: dict[str, Any]) -> None:
    assert calls.call_arguments(call, "c") == ("f", {"x": 1.61, "y": None})
    conv = {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}],
            "tools": [{"name": "f", "parameters": {"type": "object", "properties": {"x": {}, "y": {}}}}]}
    result, issues = canonicalize(conv)
    assert issues == [] and result["messages"][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": {
        "x": 1.61, "y": None}}
    assert 'f(x=1.61,y=null)' in render_chat(result["messages"], result["tools"])


def test_nan_is_accepted_by_the_renderer_and_refused_by_the_validation() -> None:
    call = {"function": {"name": "f", "arguments": '{"x": NaN}'}}
    name, args = calls.call_arguments(call, "c")
    assert name == "f" and math.isnan(args["x"])
    with pytest.raises(CallError) as info:
        calls.call_arguments(call, "c", allow_nan=False)
    assert (info.value.kind, info.value.path, info.value.message) == (
        "json", "c.function.arguments", "arguments are not valid JSON (NaN is not valid JSON)")
    with pytest.raises(CallError) as info:
        calls.call_arguments({"function": {"name": "f", "arguments": "[" * 100_000}}, "c")
    assert info.value.kind == "json"


def test_stats_are_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    counted: list[int] = []
    original = ScannedFile._count

    def spy(self: ScannedFile) -> dict[str, int]:
        counted.append(1)
        return original(self)

    monkeypatch.setattr(ScannedFile, "_count", spy)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]})
                    + "\n", encoding="utf-8")
    prepared = prepare_dataset_file(path, out_dir=tmp_path / "out")
    # prepare streams the file and counts each row once as it goes (no ScannedFile holds the rows)
    assert (prepared.rows, prepared.written, len(counted)) == (1, 1, 0)
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    assert len(counted) == 1  # one scan of the file by the check command
