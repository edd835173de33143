"""Preference-pair formats: detect a record's shape and convert it into a loose pair.

A loose pair (:class:`RawPair`) is the prompt messages, the chosen and the rejected assistant
message and the tools, in the loose OpenAI shape the SFT formats produce (arguments as JSON strings,
``reasoning_content``, ``<think>``, flat calls, ``tools`` as a JSON string). The common step in
:mod:`minicpm_plugin.formats.preference` validates it with the SFT rules. Shapes read here (see
docs/data_formats.md, "Preference pairs"):

* ``trl``: ``prompt`` (messages or text), ``chosen``/``rejected`` (a message, a list holding one, or
  full conversations that start with the prompt; with no ``prompt`` the shared prefix is the prompt),
  optional ``tools``.
* ``openai_pairs``: ``messages`` (the prompt) + ``chosen``/``rejected`` assistant messages, ``tools``.
* ``openai_dpo``: OpenAI's preference fine-tuning file: ``input: {messages, tools}``,
  ``preferred_output`` / ``non_preferred_output`` (lists with one assistant message).
* ``llamafactory_ranking``: ``conversations`` (from/value) + ``chosen``/``rejected`` from/value
  objects, optional ``system`` and ``tools`` (a JSON string).
* ``swift_rlhf``: ms-swift's ``messages`` ending with the chosen answer (``tool_call`` turns included) +
  ``rejected_response`` (text) or ``rejected_messages``.
* ``text_pairs``: ``prompt`` (or ``instruction`` + ``input``) text, ``chosen``/``rejected`` text,
  optional ``system``.

Answers given as text may be raw MiniCPM3 output (``<|thought_start|>``, ``<|tool_call_start|>``):
they are parsed with :func:`minicpm_plugin.parse_assistant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from minicpm_plugin.chat import parse_assistant
from minicpm_plugin.chat.tokens import THOUGHT_START, TOOL_CALL_START
from minicpm_plugin.formats.base import (
    MATCH,
    NO,
    Converted,
    Format,
    RecordError,
    as_tool,
    is_message_list,
    load_json_field,
)
from minicpm_plugin.formats.openai import OpenAIFormat
from minicpm_plugin.formats.sharegpt import ShareGPTFormat, parse_call_value
from minicpm_plugin.formats.swift import SwiftAgentFormat


@dataclass
class RawPair:
    """A converted record: prompt messages and both answers, with the source field of each."""

    prompt: list[Any]
    chosen: Any
    rejected: Any
    tools: Any = None
    prompt_sources: list[str] = field(default_factory=list)
    chosen_source: str = "chosen"
    rejected_source: str = "rejected"
    tools_source: str = "tools"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def answer_from_text(text: str, path: str) -> dict[str, Any]:
    """An assistant message from answer text; raw MiniCPM3 output (thought/call markers) is parsed."""
    if TOOL_CALL_START not in text and THOUGHT_START not in text:
        return {"role": "assistant", "content": text}
    parsed = parse_assistant(text)
    if parsed["error"]:
        raise RecordError(f"is MiniCPM3 output that does not parse: {parsed['error']}", path, "bad-tool-call")
    msg: dict[str, Any] = {"role": "assistant", "content": parsed["content"]}
    if parsed["thought"] is not None:
        msg["thought"] = parsed["thought"]
    if parsed["tool_calls"]:
        msg["tool_calls"] = [{"type": "function", "function": c} for c in parsed["tool_calls"]]
    return msg


def answer(value: Any, path: str) -> dict[str, Any]:
    """One assistant answer: text, a message, or a list holding exactly one message."""
    if isinstance(value, str):
        return answer_from_text(value, path)
    if isinstance(value, list):
        if len(value) != 1:
            raise RecordError(f"must hold exactly one assistant message, got {len(value)} messages; a preference "
                              "answer is one assistant turn (put earlier turns into the prompt)", path, "bad-preference")
        value, path = value[0], f"{path}[0]"
        if isinstance(value, str):
            return answer_from_text(value, path)
    if not isinstance(value, Mapping):
        raise RecordError(f"must be an assistant message (an object with role and content) or text, got {_kind(value)}",
                          path, "bad-preference")
    role = value.get("role", "assistant")
    if role != "assistant":
        raise RecordError(f"must be an assistant message, got role {role!r}", f"{path}.role", "bad-preference")
    return dict(value, role="assistant")


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, Mapping) and isinstance(b, Mapping) and a.get("role") == b.get("role") and (
        a.get("content") == b.get("content")) and a.get("tool_calls") == b.get("tool_calls")


def _completion(value: Any, prompt: list[Any], path: str) -> tuple[dict[str, Any], str]:
    """The answer of a TRL-style column: a message or one-message list, or a whole conversation that
    starts with the prompt (e.g. UltraFeedback-binarized: ``chosen = [user, assistant]``)."""
    if isinstance(value, list) and len(value) > 1 and isinstance(value[0], Mapping) and value[0].get("role") != "assistant":
        n = len(prompt)
        if len(value) != n + 1 or not all(_same(a, b) for a, b in zip(value[:n], prompt, strict=False)):
            raise RecordError("is a whole conversation but does not consist of the prompt plus one assistant message",
                              path, "bad-preference")
        return answer(value[n], f"{path}[{n}]"), f"{path}[{n}]"
    return answer(value, path), path


def _tools(record: Mapping[str, Any], key: str = "tools") -> Any:
    if record.get(key) is None:
        return None
    tools = load_json_field(record, key, allow=(list, dict))
    if isinstance(tools, dict):
        tools = [tools]
    return [as_tool(t) for t in tools] if tools else None


def _has_pair(record: Mapping[str, Any]) -> bool:
    return "chosen" in record and "rejected" in record


class TRLFormat(Format):
    name = "trl"
    aliases = ("trl_conversational",)
    description = "TRL preference: prompt (messages or text) + chosen/rejected messages (or implicit prompt), tools"
    example = ('{"prompt": [{"role": "user", "content": "Weather in Paris?"}], "chosen": [{"role": "assistant", '
               '"tool_calls": [...]}], "rejected": [{"role": "assistant", "content": "I cannot check."}], "tools": [...]}')

    def detect(self, record: Mapping[str, Any]) -> int:
        if not _has_pair(record) or "messages" in record or "conversations" in record:
            return NO
        conversational = any(isinstance(record.get(k), (list, dict)) for k in ("prompt", "chosen", "rejected"))
        return MATCH if conversational and not isinstance(record.get("prompt"), (int, float, bool)) else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        prompt, chosen, rejected = record.get("prompt"), record["chosen"], record["rejected"]
        if prompt is None:  # implicit prompt: the messages both conversations share
            if not (isinstance(chosen, list) and isinstance(rejected, list)):
                raise RecordError("without a prompt column, chosen and rejected must both be whole conversations "
                                  "(lists of messages)", "prompt", "bad-preference")
            n = 0
            while n < min(len(chosen), len(rejected)) - 1 and _same(chosen[n], rejected[n]):
                n += 1
            if n == 0 or len(chosen) != n + 1 or len(rejected) != n + 1:
                raise RecordError("chosen and rejected must share every message but their last one (the implicit "
                                  "prompt) and differ only in one final assistant message", "chosen", "bad-preference")
            prompt_msgs: list[Any] = list(chosen[:n])
            sources = [f"chosen[{i}]" for i in range(n)]
        elif isinstance(prompt, str):
            prompt_msgs, sources = [{"role": "user", "content": prompt}], ["prompt"]
        elif isinstance(prompt, list):
            prompt_msgs, sources = list(prompt), [f"prompt[{i}]" for i in range(len(prompt))]
        else:
            raise RecordError(f"must be a list of messages or text, got {_kind(prompt)}", "prompt", "bad-preference")
        c, c_src = _completion(chosen, prompt_msgs, "chosen")
        r, r_src = _completion(rejected, prompt_msgs, "rejected")
        return RawPair(prompt_msgs, c, r, _tools(record), sources, c_src, r_src)


class OpenAIPairsFormat(Format):
    name = "openai_pairs"
    aliases = ("messages_pairs",)
    description = "OpenAI-like: messages (the prompt) + chosen/rejected assistant messages, tools"
    example = ('{"messages": [{"role": "user", "content": "Weather in Paris?"}], "chosen": {"role": "assistant", '
               '"tool_calls": [...]}, "rejected": {"role": "assistant", "content": "..."}, "tools": [...]}')

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if _has_pair(record) and is_message_list(record.get("messages"), "role", "content") else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        conv = OpenAIFormat().convert(record)  # messages, and tools or the legacy functions
        messages = conv["messages"]
        c, c_src = _completion(record["chosen"], messages, "chosen")
        r, r_src = _completion(record["rejected"], messages, "rejected")
        tools_source = "functions" if record.get("functions") is not None else "tools"
        return RawPair(list(messages), c, r, conv["tools"], [f"messages[{i}]" for i in range(len(messages))], c_src,
                       r_src, tools_source)


class OpenAIDPOFormat(Format):
    name = "openai_dpo"
    aliases = ("openai_preference",)
    description = "OpenAI preference fine-tuning: input {messages, tools} + preferred_output / non_preferred_output"
    example = ('{"input": {"messages": [...], "tools": [...]}, "preferred_output": [{"role": "assistant", ...}], '
               '"non_preferred_output": [{"role": "assistant", ...}]}')

    def detect(self, record: Mapping[str, Any]) -> int:
        ok = isinstance(record.get("input"), Mapping) and "preferred_output" in record and "non_preferred_output" in record
        return MATCH if ok else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        inp = record["input"]
        try:
            conv = OpenAIFormat().convert(inp)
        except RecordError as exc:
            raise RecordError(exc.message, f"input.{exc.path}", exc.code) from None
        messages = conv["messages"]
        return RawPair(list(messages), answer(record["preferred_output"], "preferred_output"),
                       answer(record["non_preferred_output"], "non_preferred_output"), conv["tools"],
                       [f"input.messages[{i}]" for i in range(len(messages))], "preferred_output",
                       "non_preferred_output", "input.tools")


class LlamaFactoryRankingFormat(Format):
    name = "llamafactory_ranking"
    aliases = ("sharegpt_ranking", "llamafactory_dpo")
    description = "LLaMA-Factory ranking (ShareGPT): conversations + chosen/rejected from/value turns, system, tools"
    example = ('{"conversations": [{"from": "human", "value": "Weather in Paris?"}], "chosen": {"from": "function_call", '
               '"value": "{\\"name\\": \\"get_weather\\", ...}"}, "rejected": {"from": "gpt", "value": "..."}, "tools": "[...]"}')

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if _has_pair(record) and is_message_list(record.get("conversations"), "from", "value") else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        sharegpt = ShareGPTFormat()
        prompt = sharegpt.convert({"conversations": record.get("conversations"), "system": record.get("system"),
                                   "tools": record.get("tools")})
        answers = []
        for key in ("chosen", "rejected"):
            turn = record[key]
            if isinstance(turn, list) and len(turn) == 1:
                turn, key = turn[0], f"{key}[0]"
            if isinstance(turn, str):
                answers.append(answer_from_text(turn, key))
                continue
            if not isinstance(turn, Mapping):
                raise RecordError(f"must be one {{from, value}} turn, got {_kind(turn)}", key, "bad-preference")
            who = turn.get("from")
            if who not in ("gpt", "assistant", "model", "function_call"):
                raise RecordError(f"must be a gpt or function_call turn, got from {who!r}", f"{key}.from", "bad-preference")
            if who == "function_call":
                answers.append({"role": "assistant", "content": "",
                                "tool_calls": parse_call_value(turn.get("value"), f"{key}.value")})
            else:
                value = turn.get("value")
                msg = answer_from_text(value, f"{key}.value") if isinstance(value, str) else {"role": "assistant", "content": value}
                for extra in ("thought", "reasoning_content"):
                    if extra in turn:
                        msg[extra] = turn[extra]
                answers.append(msg)
        assert isinstance(prompt, Converted)
        return RawPair(prompt.conversation["messages"], answers[0], answers[1], prompt.conversation["tools"],
                       list(prompt.sources or []))


def _swift_messages(messages: Any, key: str) -> tuple[list[dict[str, Any]], list[str]]:
    """ms-swift messages as loose OpenAI messages, read by the SFT `swift` format (a run of assistant and
    tool_call entries is one assistant turn; tool_response is a tool result)."""
    try:
        converted = SwiftAgentFormat().convert({"messages": messages})
    except RecordError as exc:
        raise RecordError(exc.message, key + exc.path[len("messages"):] if exc.path.startswith("messages") else exc.path,
                          exc.code) from None
    sources = [key + src[len("messages"):] for src in converted.sources or []]
    return list(converted.conversation["messages"]), sources


class SwiftFormat(Format):
    name = "swift_rlhf"
    aliases = ("swift_dpo", "ms_swift_rlhf")  # "swift" is the SFT agent format
    description = "ms-swift RLHF: messages ending with the chosen answer (tool_call turns too) + rejected_response"
    example = ('{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "tool_call", "content": '
               '"{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}"}], "rejected_response": '
               '"I cannot check the weather.", "tools": "[...]"}')

    def detect(self, record: Mapping[str, Any]) -> int:
        has_rejected = "rejected_response" in record or "rejected_messages" in record
        return MATCH if has_rejected and isinstance(record.get("messages"), list) else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        messages, sources = _swift_messages(record.get("messages"), "messages")
        if not messages or messages[-1].get("role") != "assistant":
            raise RecordError("must end with the chosen answer (an assistant or tool_call message)", "messages", "bad-preference")
        prompt, chosen = messages[:-1], messages[-1]
        tools = _tools(record)
        if record.get("rejected_messages") is not None:
            if record.get("rejected_response") is not None:
                raise RecordError("has both rejected_response and rejected_messages; keep one", "rejected_messages",
                                  "bad-preference")
            rejected_msgs, r_sources = _swift_messages(record["rejected_messages"], "rejected_messages")
            if (len(rejected_msgs) != len(messages) or rejected_msgs[-1].get("role") != "assistant"
                    or not all(_same(a, b) for a, b in zip(rejected_msgs[:-1], prompt, strict=False))):
                raise RecordError("must repeat the messages before the chosen answer and end with the rejected answer",
                                  "rejected_messages", "bad-preference")
            rejected_tools = _tools(record, "rejected_tools")
            if rejected_tools is not None and rejected_tools != tools:
                raise RecordError("differ from tools: both answers of a pair must see the same tools", "rejected_tools",
                                  "bad-preference")
            rejected, r_src = rejected_msgs[-1], r_sources[-1]
        else:
            value = record.get("rejected_response")
            if not isinstance(value, str):
                raise RecordError(f"must be the rejected answer as text, got {_kind(value)}", "rejected_response",
                                  "bad-preference")
            rejected, r_src = answer_from_text(value, "rejected_response"), "rejected_response"
        return RawPair(prompt, chosen, rejected, tools, sources[:-1], sources[-1], r_src)


class TextPairsFormat(Format):
    name = "text_pairs"
    aliases = ("text", "single_turn", "alpaca_ranking")
    description = "single turn as text: prompt (or instruction + input) + chosen/rejected text, optional system"
    example = '{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}'

    def detect(self, record: Mapping[str, Any]) -> int:
        if not (_has_pair(record) and isinstance(record["chosen"], str) and isinstance(record["rejected"], str)):
            return NO
        return MATCH if isinstance(record.get("prompt"), str) or isinstance(record.get("instruction"), str) else NO

    def convert(self, record: Mapping[str, Any]) -> RawPair:
        if isinstance(record.get("prompt"), str):
            text, source = record["prompt"], "prompt"
        else:
            text, source = record.get("instruction"), "instruction"
            extra = record.get("input")
            if not isinstance(text, str):
                raise RecordError(f"must be text, got {_kind(text)}", "instruction", "bad-content")
            if isinstance(extra, str) and extra:
                text = f"{text}\n\n{extra}" if text else extra
        prompt: list[Any] = [{"role": "user", "content": text}]
        sources = [source]
        system = record.get("system")
        if system is not None and system != "":
            prompt.insert(0, {"role": "system", "content": system})
            sources.insert(0, "system")
        for key in ("chosen", "rejected"):
            if not isinstance(record[key], str):
                raise RecordError(f"must be text, got {_kind(record[key])}", key, "bad-preference")
        return RawPair(prompt, answer_from_text(record["chosen"], "chosen"),
                       answer_from_text(record["rejected"], "rejected"), None, sources)


#: The built-in preference formats, in detection order.
PREFERENCE_FORMATS: tuple[Format, ...] = (
    TRLFormat(), OpenAIPairsFormat(), OpenAIDPOFormat(), LlamaFactoryRankingFormat(), SwiftFormat(), TextPairsFormat(),
)
#: Keys whose presence marks a record as a preference pair rather than an SFT conversation.
PAIR_MARKERS = (("chosen", "rejected"), ("rejected_response",), ("rejected_messages",),
                ("preferred_output", "non_preferred_output"))


def looks_like_pair(record: Any) -> bool:
    """Whether a record has the keys of a preference pair (chosen/rejected and the like)."""
    return isinstance(record, Mapping) and any(all(k in record for k in keys) for keys in PAIR_MARKERS)
