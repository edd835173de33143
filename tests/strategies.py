"""Hypothesis strategies for tools, JSON values and conversations in MiniCPM3's shape."""

from __future__ import annotations

import keyword
from typing import Any

from hypothesis import strategies as st

# Text that may appear in content/values: printable unicode incl. CJK, quotes, backslashes,
# newlines; no surrogates (not encodable) and none of the format's own markers.
_MARKERS = ("<|im_start|>", "<|im_end|>", "<|thought_start|>", "<|thought_end|>", "<|tool_call_start|>",
            "<|tool_call_end|>", "```")
text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFFF),
        st.sampled_from(list("\"'\\\n\t{}[]()=,:<|>` 中文北京")),
    ),
    max_size=30,
).filter(lambda s: not any(m in s for m in _MARKERS))

identifier = st.one_of(
    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    st.sampled_from(sorted(set(keyword.kwlist) | {"from", "class", "import", "lambda", "True", "None"})),
)

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(allow_nan=False, allow_infinity=False), text,
)
json_value = st.recursive(
    json_scalar,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=10,
)
arguments = st.dictionaries(identifier, json_value, max_size=5)

_simple_types = st.sampled_from(["string", "number", "integer", "boolean", "null"])


@st.composite
def schema(draw: Any, depth: int = 0) -> dict[str, Any]:
    kinds = ["basic", "enum", "array", "union", "dict", "notype"]
    if depth < 2:
        kinds += ["object", "array_of_objects"]
    kind = draw(st.sampled_from(kinds))
    spec: dict[str, Any]
    if kind == "basic":
        spec = {"type": draw(_simple_types)}
    elif kind == "enum":
        spec = {"type": "string", "enum": draw(st.lists(st.one_of(text, st.integers()), min_size=1, max_size=3))}
    elif kind == "array":
        spec = {"type": "array"}
        if draw(st.booleans()):
            spec["items"] = draw(schema(depth + 1)) if depth < 2 else {"type": draw(_simple_types)}
    elif kind == "union":
        spec = {"type": draw(st.lists(st.sampled_from(["string", "number", "integer", "boolean", "null", "object", "array"]), min_size=1, max_size=3))}
    elif kind == "dict":
        spec = {"type": "object"}
        if draw(st.booleans()):
            spec["additionalProperties"] = draw(st.one_of(st.just(True), st.builds(dict, type=_simple_types)))
    elif kind == "notype":
        spec = {}
    elif kind == "object":
        spec = draw(object_schema(depth + 1))
    else:
        spec = {"type": "array", "items": draw(object_schema(depth + 1))}
    if draw(st.booleans()):
        spec["default"] = draw(json_value)
    for key in ("description", "title", "pattern"):
        if draw(st.integers(0, 3)) == 0:
            spec[key] = draw(text)
    return spec


@st.composite
def object_schema(draw: Any, depth: int = 0) -> dict[str, Any]:
    names = draw(st.lists(identifier, unique=True, max_size=4))
    props = {n: draw(schema(depth)) for n in names}
    spec: dict[str, Any] = {"type": "object", "properties": props}
    if draw(st.booleans()):
        spec["required"] = [n for n in names if draw(st.booleans())]
    return spec


@st.composite
def tool(draw: Any) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True))}
    if draw(st.integers(0, 4)):
        fn["description"] = draw(text)
    choice = draw(st.integers(0, 5))
    if choice == 0:
        pass  # no parameters at all
    elif choice == 1:
        fn["parameters"] = {"type": "object", "properties": {}, "required": []}
    else:
        fn["parameters"] = draw(object_schema())
    return {"type": "function", "function": fn} if draw(st.integers(0, 5)) else fn


def call(draw: Any, names: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": draw(st.sampled_from(names)), "arguments": draw(arguments)}}


@st.composite
def assistant_message(draw: Any, names: list[str]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": draw(text)}
    if draw(st.booleans()):
        msg["thought"] = draw(text)
    if names and draw(st.booleans()):
        msg["tool_calls"] = [call(draw, names) for _ in range(draw(st.integers(1, 3)))]
        if msg["content"].startswith("<|tool_call_start|>"):
            msg["content"] = ""
    return msg


@st.composite
def conversation(draw: Any) -> dict[str, Any]:
    tools = draw(st.lists(tool(), max_size=3)) if draw(st.booleans()) else None
    names = [t.get("function", t)["name"] for t in tools or []] or ["fn"]
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(text)})
        a = draw(assistant_message(names))
        messages.append(a)
        for _ in a.get("tool_calls", []):
            messages.append({"role": "tool", "content": draw(text)})
    return {"messages": messages, "tools": tools, "add_generation_prompt": draw(st.booleans())}
