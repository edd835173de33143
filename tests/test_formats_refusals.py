"""Preference rows and media are refused by name in every format, in check and in training preparation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin.formats import DataError, canonicalize, prepare_dataset_file, scan_file
from minicpm_plugin.formats.refuse import record_refusals

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
KTO = "this is KTO data (each answer labelled desirable or not), which SFT would train whatever the label says; train " \
      "it with a KTO trainer, or keep only the desirable rows for SFT"


def write(tmp_path: Path, *records: Any, name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(("record", "expected"), [
    ({"messages": CHAT, "label": False}, [("label", KTO, "preference-data")]),
    ({"conversations": [{"from": "human", "value": "hi"}], "kto_tag": True}, [("kto_tag", KTO, "preference-data")]),
    ({"chosen_messages": CHAT, "rejected_messages": CHAT}, [("chosen_messages, rejected_messages", "this is preference "
     "data (a chosen and a rejected answer per row), which SFT cannot train without dropping one of them; train it "
     "with `rl: dpo` and a dataset of `type: minicpm_plugin.dpo`", "preference-data")]),
    ({"image": "coco/1.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}]}, [("image", "this row "
     "has 1 image; MiniCPM3 is text-only and cannot be trained on it (remove the media and their placeholders, or "
     "train a multimodal model)", "multimodal")]),
    ({"messages": CHAT, "videos": ["a.mp4", "b.mp4"]}, [("videos", "this row has 2 videos; MiniCPM3 is text-only and "
     "cannot be trained on them (remove the media and their placeholders, or train a multimodal model)", "multimodal")]),
    ({"messages": CHAT, "images": [], "videos": None, "audios": ""}, []),  # empty media columns (Arrow exports)
    ({"messages": CHAT, "label": 1}, []),  # a classification label, not KTO
])
def test_record_refusals(record: dict[str, Any], expected: list[tuple[str, str, str]]) -> None:
    assert record_refusals(record) == expected


def test_media_inside_messages(tmp_path: Path) -> None:
    tool_image = {"messages": [{"role": "user", "content": "shot"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "screenshot", "arguments": {}}}]},
        {"role": "tool", "content": [{"type": "image_url", "image_url": {"url": "s.png"}}]},
        {"role": "assistant", "content": "done"}], "tools": [{"name": "screenshot"}]}
    system_audio = {"messages": [{"role": "system", "content": "Transcribe <audio>"}, *CHAT]}
    svg = {"messages": [{"role": "user", "content": 'Why does <image href="a.png"/> not show in my SVG?'},
                        {"role": "assistant", "content": "Use an absolute path."}]}
    input_audio = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "..."}}]},
                                CHAT[1]]}
    scanned = scan_file(write(tmp_path, tool_image, system_audio, svg, input_audio), file="d.jsonl")
    assert [str(p) for p in scanned.problems] == [
        "d.jsonl:1: messages[2].content[0]: content part of type 'image_url' is not supported; MiniCPM3 is text-only "
        "[multimodal]",
        "d.jsonl:2: messages[0].content: contains the <audio> placeholder of multimodal data; MiniCPM3 is text-only, so "
        "the medium it stands for cannot be trained [multimodal]",
        "d.jsonl:4: messages[0].content[0]: content part of type 'input_audio' is not supported; MiniCPM3 is text-only "
        "[multimodal]",
    ]
    assert scanned.rows[2].ok  # an SVG element is not a media placeholder


def test_training_preparation_refuses_or_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path, {"messages": CHAT}, {"messages": CHAT, "rejected_response": "go away"},
                 {"messages": CHAT, "images": ["x.png"]}, name="mixed.jsonl")
    with pytest.raises(DataError) as info:
        prepare_dataset_file(path, out_dir=tmp_path / "out")
    assert [p.code for p in info.value.problems] == ["preference-data", "multimodal"]
    assert info.value.summary == f"{path}: 2 of 3 rows have errors (format openai):"
    prepared = prepare_dataset_file(path, out_dir=tmp_path / "out", on_bad_rows="skip")
    assert (prepared.written, prepared.skipped) == (1, {"preference-data": 1, "multimodal": 1})


def test_tool_results_as_json_values() -> None:
    deep: Any = 0
    for _ in range(100_000):
        deep = [deep]
    conv = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {}}}]}, {"role": "tool", "content": []},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "content": [{"type": "text", "text": "a"}, {"type": "text", "value": "b"}]},
        {"role": "assistant", "content": "ok"}], "tools": [{"name": "f"}]}
    result, issues = canonicalize(conv)
    assert issues == [] and result is not None
    assert [m["content"] for m in result["messages"] if m["role"] == "tool"] == ["[]", "ab"]
    conv["messages"][2]["content"] = deep
    result, issues = canonicalize(conv)
    assert result is None
    assert [(i.path, i.code) for i in issues] == [("messages[2].content", "bad-content")]
    assert issues[0].message.startswith("a tool result that is not a string must be a JSON value (")
