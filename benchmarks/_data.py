"""Deterministic, offline synthetic MiniCPM3 data for the benchmarks.

`tool_conversations(n, seed)` gives OpenAI-style conversations with tools (1-4 tools with enums,
nested objects, arrays of objects and defaults; 1-6 rounds; parallel calls; thoughts; tool results;
Chinese and English; arguments with nulls, short decimals such as 1.61 and nested values).
`plain_conversations(n, seed)` gives multi-turn chats without tools. Call arguments are JSON
objects, as MiniCPM3's own template needs them. The same (n, seed) always gives the same data.
"""

from __future__ import annotations

import json
import random
from typing import Any

Json = dict[str, Any]

_EN_SUBJECTS = ("The report", "Our team", "The new policy", "This approach", "The customer", "The system",
                "The weather service", "The flight schedule", "The quarterly budget", "The research group")
_EN_VERBS = ("explains", "improves", "depends on", "changes", "summarises", "reviews", "updates",
             "compares", "describes", "affects")
_EN_OBJECTS = ("the main results", "the delivery timeline", "several open questions", "the cost per unit",
               "the data pipeline", "the travel plans", "the local regulations", "the test coverage",
               "the user feedback", "the exchange rate", "the hotel options", "the meeting agenda")
_EN_TAILS = ("in more detail.", "for next week.", "as expected.", "without extra steps.", "quite a lot.",
             "in the second quarter.", "for most users.", "after the last update.", "step by step.", "today.")
_ZH_SUBJECTS = ("这份报告", "我们的团队", "新的政策", "这个方法", "客户", "系统", "天气服务", "航班时刻表",
                "季度预算", "研究小组", "北京分公司", "上海的会议")
_ZH_VERBS = ("详细说明了", "改进了", "取决于", "改变了", "总结了", "检查了", "更新了", "比较了", "描述了", "影响了")
_ZH_OBJECTS = ("主要结果", "交付时间表", "几个未解决的问题", "单位成本", "数据流程", "旅行计划", "当地法规",
               "测试覆盖率", "用户反馈", "汇率", "酒店选择", "会议议程")
_ZH_TAILS = ("。", "，请注意。", "，情况良好。", "，需要进一步确认。", "，大家都很满意。", "，下周再讨论。")
_EN_QUESTIONS = ("Can you help me with this?", "What do you think?", "Could you check it for me?",
                 "Is that possible?", "Please be brief.", "Thanks in advance!")
_ZH_QUESTIONS = ("你能帮我看看吗？", "你觉得怎么样？", "可以帮我查一下吗？", "这样可以吗？", "请简单回答。", "先谢谢了！")

_CITIES = ("Beijing", "Shanghai", "北京", "上海", "杭州", "深圳", "Paris", "London", "New York", "Tokyo",
           "San Francisco", "成都")
_WORDS = ("budget", "travel", "report", "天气", "会议", "priority", "review", "新闻", "draft", "summary")
_NAMES = ("alice", "bob", "carol", "王伟", "李娜", "dave", "张敏", "erin")
_DECIMALS = (1.61, 0.1, 19.99, 3.14159, 2.675, 0.3, 1.1, 99.95, 12.5, 0.07, 7.77, 45.3)


def _sentence(rng: random.Random, zh: bool) -> str:
    if zh:
        return rng.choice(_ZH_SUBJECTS) + rng.choice(_ZH_VERBS) + rng.choice(_ZH_OBJECTS) + rng.choice(_ZH_TAILS)
    return " ".join((rng.choice(_EN_SUBJECTS), rng.choice(_EN_VERBS), rng.choice(_EN_OBJECTS), rng.choice(_EN_TAILS)))


def _text(rng: random.Random, zh: bool, lo: int, hi: int, question: bool = False) -> str:
    parts = [_sentence(rng, zh) for _ in range(rng.randint(lo, hi))]
    if question:
        parts.append(rng.choice(_ZH_QUESTIONS if zh else _EN_QUESTIONS))
    return ("" if zh else " ").join(parts)


def _decimal(rng: random.Random) -> float:
    if rng.random() < 0.5:
        return rng.choice(_DECIMALS)
    return round(rng.uniform(0, 500), rng.randint(1, 3))


# ---- parameter kinds: (schema builder, value builder) -------------------------------------------

def _p_string(rng: random.Random, zh: bool) -> Json:
    return {"type": "string", "description": "城市或关键词" if zh else "A city name or keyword, e.g. Beijing"}


def _p_integer(rng: random.Random, zh: bool) -> Json:
    spec: Json = {"type": "integer", "description": "数量" if zh else "How many items to return"}
    if rng.random() < 0.4:
        spec["default"] = rng.choice((1, 5, 10))
    return spec


def _p_number(rng: random.Random, zh: bool) -> Json:
    return {"type": "number", "description": "金额或比例" if zh else "An amount, price or ratio"}


def _p_boolean(rng: random.Random, zh: bool) -> Json:
    return {"type": "boolean", "description": "是否包含详细信息" if zh else "Whether to include details",
            "default": False}


_ENUMS = (("celsius", "fahrenheit"), ("asc", "desc"), ("low", "medium", "high"), ("zh", "en", "ja"),
          ("快速", "标准", "经济"), ("json", "text", "markdown"))


def _p_enum(rng: random.Random, zh: bool) -> Json:
    return {"type": "string", "enum": list(rng.choice(_ENUMS)), "description": "选项" if zh else "One of the options"}


def _p_object(rng: random.Random, zh: bool) -> Json:
    return {
        "type": "object",
        "description": "筛选条件" if zh else "Filters to apply",
        "properties": {
            "min_price": {"type": "number", "description": "Lowest price"},
            "max_price": {"type": "number", "description": "Highest price"},
            "brand": {"type": "string", "description": "Brand name"},
            "location": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                "required": ["lat", "lon"],
            },
        },
        "required": ["max_price"],
    }


def _p_array(rng: random.Random, zh: bool) -> Json:
    return {"type": "array", "items": {"type": "string"}, "description": "标签列表" if zh else "A list of tags"}


def _p_array_objects(rng: random.Random, zh: bool) -> Json:
    return {
        "type": "array",
        "description": "订单项目" if zh else "Order items",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "quantity": {"type": "integer"},
                "unit_price": {"type": "number"},
            },
            "required": ["name", "quantity"],
        },
    }


_KINDS = {
    "string": _p_string, "integer": _p_integer, "number": _p_number, "boolean": _p_boolean, "enum": _p_enum,
    "object": _p_object, "array": _p_array, "array_objects": _p_array_objects,
}
_PARAM_NAMES = {
    "string": ("city", "query", "title", "location", "keyword", "from"),
    "integer": ("limit", "days", "passengers", "count", "page"),
    "number": ("amount", "price", "ratio", "temperature", "weight"),
    "boolean": ("urgent", "include_details", "verbose"),
    "enum": ("unit", "order", "priority", "language", "mode", "format"),
    "object": ("filters", "options"),
    "array": ("tags", "attendees", "keywords"),
    "array_objects": ("items", "lines"),
}
_VERBS = ("get", "search", "create", "update", "book", "convert", "send", "list", "calculate", "translate")
_NOUNS = ("weather", "flights", "hotel", "order", "event", "currency", "email", "news", "stock_price", "route",
          "invoice", "reminder")


def _value(rng: random.Random, spec: Json, zh: bool, depth: int = 0) -> Any:
    kind = spec.get("type")
    if "enum" in spec:
        return rng.choice(spec["enum"])
    if kind == "string":
        return rng.choice(_CITIES) if rng.random() < 0.6 else rng.choice(_WORDS)
    if kind == "integer":
        return rng.randint(0, 300)
    if kind == "number":
        return _decimal(rng) if rng.random() < 0.85 else rng.randint(1, 99)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        items = spec.get("items", {"type": "string"})
        return [_value(rng, items, zh, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "object":
        out: Json = {}
        required = spec.get("required", [])
        for name, sub in spec.get("properties", {}).items():
            if name in required or rng.random() < 0.5:
                out[name] = None if name not in required and rng.random() < 0.25 else _value(rng, sub, zh, depth + 1)
        return out
    return None


def make_tool(rng: random.Random, zh: bool, used: list[str]) -> Json:
    """One OpenAI-style function tool with 1-6 parameters of mixed kinds."""
    while True:
        name = f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}"
        if name not in used:
            used.append(name)
            break
    props: Json = {}
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(tuple(_KINDS))
        pname = rng.choice(_PARAM_NAMES[kind])
        if pname not in props:
            props[pname] = _KINDS[kind](rng, zh)
    names = list(props)
    required = [n for i, n in enumerate(names) if i == 0 or rng.random() < 0.4]
    desc = _text(rng, zh, 1, 2)
    return {"type": "function", "function": {
        "name": name, "description": desc,
        "parameters": {"type": "object", "properties": props, "required": required},
    }}


def _arguments(rng: random.Random, tool: Json, zh: bool) -> Json:
    params = tool["function"]["parameters"]
    args: Json = {}
    for name, spec in params["properties"].items():
        if name in params["required"]:
            args[name] = _value(rng, spec, zh)
        elif rng.random() < 0.45:
            args[name] = None if rng.random() < 0.25 else _value(rng, spec, zh)
    return args


def _result(rng: random.Random, name: str, args: Json, zh: bool) -> str:
    body: Json = {"name": name, "status": "ok", "value": _decimal(rng), "items": rng.randint(0, 20)}
    if rng.random() < 0.5:
        body["note"] = _sentence(rng, zh)
    return json.dumps(body, ensure_ascii=False)


def _maybe_thought(rng: random.Random, zh: bool, p: float) -> Json:
    return {"thought": _text(rng, zh, 1, 2)} if rng.random() < p else {}


def tool_conversation(rng: random.Random) -> Json:
    """One conversation with 1-4 tools and 1-6 rounds, most of them calling tools."""
    zh = rng.random() < 0.5
    used: list[str] = []
    tools = [make_tool(rng, zh, used) for _ in range(rng.randint(1, 4))]
    messages: list[Json] = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": _text(rng, zh, 1, 2)})
    for _ in range(rng.randint(1, 6)):
        messages.append({"role": "user", "content": _text(rng, zh, 1, 3, question=True)})
        if rng.random() < 0.75:
            for _step in range(1 if rng.random() < 0.8 else 2):
                calls = []
                for _c in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):  # parallel calls
                    tool = rng.choice(tools)
                    calls.append({"type": "function", "function": {
                        "name": tool["function"]["name"], "arguments": _arguments(rng, tool, zh)}})
                messages.append({"role": "assistant", "content": "", **_maybe_thought(rng, zh, 0.5), "tool_calls": calls})
                for call in calls:
                    fn = call["function"]
                    messages.append({"role": "tool", "content": _result(rng, fn["name"], fn["arguments"], zh)})
        messages.append({"role": "assistant", "content": _text(rng, zh, 1, 4), **_maybe_thought(rng, zh, 0.15)})
    return {"messages": messages, "tools": tools}


def plain_conversation(rng: random.Random) -> Json:
    """One chat of 1-6 rounds without tools."""
    zh = rng.random() < 0.5
    messages: list[Json] = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": _text(rng, zh, 1, 2)})
    for _ in range(rng.randint(1, 6)):
        messages.append({"role": "user", "content": _text(rng, zh, 1, 3, question=True)})
        messages.append({"role": "assistant", "content": _text(rng, zh, 2, 8)})
    return {"messages": messages}


def tool_conversations(n: int, seed: int = 0) -> list[Json]:
    rng = random.Random(f"tools-{seed}")
    return [tool_conversation(rng) for _ in range(n)]


def plain_conversations(n: int, seed: int = 0) -> list[Json]:
    rng = random.Random(f"plain-{seed}")
    return [plain_conversation(rng) for _ in range(n)]


def write_jsonl(path: Any, rows: list[Json]) -> None:
    """One JSON object per line, non-ASCII as is (how such datasets are usually shipped)."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
