"""Write the sample data the shipped recipes train on. Deterministic: same files on every run.

    python examples/data/make_sample_data.py            # (re)writes the three files next to this script
    python examples/data/make_sample_data.py --check    # exit 1 if the files on disk differ

Files:
- chat_seed.json         the official finetune.py ("seed") format: a JSON *array* of {"messages": [...]},
                         roles system/user/assistant; 40 Chinese and English multi-turn chats.
- tool_calls.jsonl       OpenAI-format tool-calling conversations, one JSON object per line, with a
                         top-level "tools" list; arguments are JSON *strings* as OpenAI sends them;
                         the assistant's reasoning sits in "reasoning_content" (MiniCPM3's "thought").
- tool_calls_eval.jsonl  held-out rows of the same kind (other cities, amounts, dates) for evaluation.

The tool-call rows cover what breaks converters: enums, nested objects, arrays (of strings and of
objects), parallel calls, thoughts, content beside tool calls, null / boolean / float arguments,
a Python keyword as an argument name (`from`), non-ASCII values, answers that need no call.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 20240905

Message = dict[str, Any]
Row = dict[str, Any]

# --------------------------------------------------------------------------------------------------
# Chat data (seed format)
# --------------------------------------------------------------------------------------------------

SYSTEM_ZH = "你是一个乐于助人、回答简洁准确的中文助手。"
SYSTEM_EN = "You are a helpful assistant. Answer clearly and concisely."

# Hand-written conversations: (system or None, [user, assistant, user, assistant, ...]).
HANDWRITTEN: list[tuple[str | None, list[str]]] = [
    (None, [
        "你好，介绍一下北京。",
        "北京是中国的首都，有三千多年建城史，故宫、天坛、长城等名胜都在这里。它也是全国的政治、文化和国际交往中心。",
        "第一次去，三天怎么安排比较好？",
        "可以这样安排：第一天故宫和景山公园，傍晚去什刹海；第二天早起去八达岭或慕田峪长城；第三天上午天坛，下午逛南锣鼓巷和国家博物馆。故宫和国博都要提前在网上预约。",
    ]),
    (SYSTEM_ZH, [
        "帮我写一句生日祝福，送给我妈妈。",
        "妈妈，生日快乐！谢谢您这些年的陪伴和付出，愿您健康平安，每天都笑得像今天一样开心。",
        "再短一点，适合发朋友圈。",
        "祝我最爱的妈妈生日快乐，岁岁平安，永远年轻！",
    ]),
    (None, [
        "What's the difference between a list and a tuple in Python?",
        "A list is mutable: you can append, remove or change items. A tuple is immutable once created. "
        "Tuples are hashable (if their items are), so they can be dict keys or set members, and they signal "
        "a fixed-size record; lists suit collections that grow or change.",
        "Which one is faster?",
        "Creating and iterating a tuple is slightly faster and it uses a little less memory, but the "
        "difference rarely matters. Choose by meaning: fixed record -> tuple, changing collection -> list.",
    ]),
    (SYSTEM_EN, [
        "Give me three tips for writing a good commit message.",
        "1. Start with a short summary line (about 50 characters) in the imperative mood, e.g. "
        "\"Fix crash when config is empty\".\n2. Leave a blank line, then explain why the change was "
        "needed, not just what changed.\n3. Keep one logical change per commit so the message can stay "
        "specific.",
    ]),
    (None, [
        "我最近总是失眠，有什么办法吗？",
        "可以先从作息入手：每天固定时间起床，睡前一小时不看手机，下午以后少喝咖啡和浓茶，卧室保持安静偏凉。"
        "如果躺下二十分钟还睡不着，就起来做点放松的事，困了再回床上。长期失眠建议去医院睡眠科看看。",
        "睡前喝牛奶有用吗？",
        "温牛奶能让一些人感到放松，但效果因人而异，没有强有力的证据表明它能治疗失眠。"
        "把它当作睡前的放松习惯可以，别指望它单独解决问题。",
    ]),
    (None, [
        "Translate to Chinese: The meeting has been moved to Thursday afternoon.",
        "会议已改到周四下午。",
        "And make it more formal.",
        "兹通知，会议时间已调整至本周四下午，请各位准时参加。",
    ]),
    (None, [
        "把这句话翻译成英文：这个周末我们去爬山吧。",
        "Let's go hiking this weekend.",
    ]),
    (SYSTEM_EN, [
        "Explain what a mutex is to a beginner.",
        "A mutex (mutual exclusion lock) is like a single key to a room. A thread must take the key "
        "before touching shared data and give it back when done. While one thread holds the key, the "
        "others wait, so two threads never modify the same data at the same time.",
        "What happens if a thread forgets to give the key back?",
        "Every other thread that needs the key waits forever: the program hangs. That is why code "
        "usually releases a mutex in a finally block or uses a scoped guard such as Python's `with lock:`.",
    ]),
    (None, [
        "用一句话解释什么是机器学习。",
        "机器学习是让计算机从数据中自动找出规律，并用这些规律对新数据做出预测或决策的方法。",
        "那深度学习呢？",
        "深度学习是机器学习的一个分支，用多层神经网络从原始数据中逐层学习特征，特别擅长图像、语音和文本任务。",
    ]),
    (None, [
        "Can you suggest a name for a small coffee shop near a university?",
        "Some ideas: \"The Study Grind\", \"Footnote Coffee\", \"Campus Roast\", \"Office Hours\", "
        "\"The Syllabus Café\". \"Office Hours\" works well if you want a friendly, slightly witty tone.",
        "I like Footnote. Write a one-line slogan for it.",
        "Footnote Coffee: the small detail that makes the whole day read better.",
    ]),
    (SYSTEM_ZH, [
        "红烧肉怎么做才不油腻？",
        "选肥瘦相间的五花肉，切块后冷水下锅焯水去血沫；先小火煸炒出一部分油并倒掉，再炒糖色、加生抽老抽和热水，"
        "小火炖一小时左右，最后大火收汁。煸油和收汁这两步做好，成品就不会腻。",
        "没有冰糖可以用白糖吗？",
        "可以。白糖同样能炒出糖色，只是颜色和光泽略逊一些；用量和冰糖差不多，炒的时候火要小，防止炒糊发苦。",
    ]),
    (None, [
        "Is it safe to run `rm -rf` inside a Docker container?",
        "It only affects the container's filesystem, so it cannot delete files on the host unless a host "
        "directory is mounted into the container. Check `docker inspect` for mounts before running it on a "
        "path that might be a volume.",
    ]),
    (None, [
        "帮我想一个周报的开头。",
        "本周主要完成了三项工作：一是按计划上线了订单查询功能；二是修复了上周反馈的五个缺陷；三是完成了下季度需求的初步评审。下面分别说明进展和风险。",
    ]),
    (SYSTEM_EN, [
        "What's a good way to learn SQL in two weeks?",
        "Week 1: SELECT, WHERE, ORDER BY, GROUP BY and JOINs, practising every day on a sample database "
        "such as SQLite's Chinook. Week 2: subqueries, window functions, indexes and reading query plans, "
        "then build a small project, e.g. analysing your own expenses.",
        "Which database should I install?",
        "Start with SQLite: nothing to configure, one file per database. Move to PostgreSQL when you want "
        "a server, users and more advanced features.",
    ]),
    (None, [
        "春节和元宵节分别是农历哪一天？",
        "春节是农历正月初一，元宵节是农历正月十五。",
        "元宵节有什么习俗？",
        "主要有吃元宵或汤圆、赏花灯、猜灯谜，一些地方还有舞龙舞狮、踩高跷等活动。",
    ]),
    (None, [
        "My plant's leaves are turning yellow. What could be wrong?",
        "The most common cause is overwatering: soil that stays wet starves the roots of oxygen. Other "
        "causes are too little light, a lack of nitrogen, or natural ageing of the lowest leaves. Check "
        "whether the soil is soggy and whether the pot drains.",
        "The soil is dry actually.",
        "Then underwatering is more likely. Water thoroughly until it drains out of the bottom, let the top "
        "few centimetres dry, then water again. Also check that it is not sitting in hot direct sun.",
    ]),
    (SYSTEM_ZH, [
        "写一首关于秋天的五言绝句。",
        "西风吹落叶，\n雁字写长空。\n一夜霜华重，\n山山染晚红。",
    ]),
    (None, [
        "How do I politely decline a meeting invitation?",
        "Something like: \"Thanks for the invite. Unfortunately I can't make it at that time. Could you "
        "share the notes afterwards, or let me know if there's anything you need from me beforehand?\"",
    ]),
    (None, [
        "Python 里怎么读取一个 JSON 文件？",
        "用标准库 json：\n\n```python\nimport json\n\nwith open(\"data.json\", encoding=\"utf-8\") as f:\n    data = json.load(f)\n```\n\n如果文件每行一个 JSON 对象（JSONL），就逐行调用 json.loads。",
        "中文显示成 \\u 开头的编码怎么办？",
        "那是写文件时的问题：json.dump 默认 ensure_ascii=True，会把中文转成 \\u 转义。写的时候传 ensure_ascii=False 即可，例如 json.dump(data, f, ensure_ascii=False, indent=2)。",
    ]),
    (SYSTEM_EN, [
        "Summarise the plot of Romeo and Juliet in two sentences.",
        "Two teenagers from feuding families in Verona fall in love and marry in secret. A chain of "
        "misunderstandings leads both to take their own lives, which finally reconciles their families.",
    ]),
    (None, [
        "我想开始跑步，新手怎么开始？",
        "建议从跑走结合开始：跑一分钟、走两分钟，重复八到十次，每周三次。每周把跑的时间稍微加长一点，六到八周后就能连续跑二十到三十分钟。"
        "穿合适的跑鞋，跑前热身，跑后拉伸。",
        "膝盖有点疼还要继续吗？",
        "先停下来休息几天，疼痛明显或持续就去看医生。恢复后减少跑量，尽量在软一点的路面上跑，同时加强大腿和臀部的力量训练。",
    ]),
    (None, [
        "What does HTTP status 429 mean?",
        "429 Too Many Requests: the client has sent too many requests in a given time and is being rate "
        "limited. Check the Retry-After header and back off before retrying.",
    ]),
    (SYSTEM_ZH, [
        "帮我给客户写一封延期交付的致歉邮件，简短一些。",
        "尊敬的王经理：\n\n您好！由于关键零部件供应延迟，原定本月20日交付的设备需推迟至下月5日。给您带来不便，我们深表歉意。"
        "我们已安排加急生产，并将每周向您同步进度。\n\n如有任何问题，请随时与我联系。\n\n此致\n敬礼",
    ]),
    (None, [
        "Write a haiku about debugging.",
        "Silent stack trace glows,\none missing semicolon,\nmidnight coffee cools.",
        "Now one about code review.",
        "Green checks line the page,\na single comment lingers:\n\"nit: rename this var\".",
    ]),
    (None, [
        "地球到月球有多远？",
        "平均约 38.4 万公里。由于月球轨道是椭圆，距离在约 36.3 万到 40.6 万公里之间变化。",
        "光从月球到地球要多久？",
        "大约 1.3 秒。",
    ]),
    (SYSTEM_EN, [
        "I have 2 hours before my flight. Is that enough time to leave the airport for lunch?",
        "Usually not for an international flight: security and boarding leave you maybe 40 minutes at "
        "best. For a domestic flight with a short security line it can work if a restaurant is within ten "
        "minutes, but eating airside after security is the safer choice.",
    ]),
    (None, [
        "Git 里怎么撤销最近一次提交但保留修改？",
        "用 git reset --soft HEAD~1。提交会被撤销，修改保留在暂存区；如果想让修改回到未暂存状态，用 git reset HEAD~1（默认 --mixed）。",
        "如果已经推送到远程了呢？",
        "已推送的提交最好用 git revert <提交号> 生成一个反向提交再推送，这样不会改写别人已拉取的历史。",
    ]),
    (None, [
        "Recommend a book for someone who liked 'The Martian'.",
        "Try \"Project Hail Mary\", also by Andy Weir: a lone astronaut, a lot of problem solving with "
        "real science, and the same humour. \"Seveneves\" by Neal Stephenson is a longer, more serious option.",
    ]),
]


def _computed_chats(rng: random.Random) -> list[Row]:
    """Chats whose answers the script computes, so every number in them is right."""
    rows: list[Row] = []
    for km in rng.sample([5, 10, 21, 42, 100, 160], 3):
        miles = km * 0.621371
        rows.append({"messages": [
            {"role": "user", "content": f"{km} 公里等于多少英里？"},
            {"role": "assistant", "content": f"{km} 公里约等于 {miles:.2f} 英里（1 公里 ≈ 0.6214 英里）。"},
        ]})
    for f in rng.sample([32, 50, 68, 86, 98.6, 104], 3):
        c = (f - 32) * 5 / 9
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM_EN},
            {"role": "user", "content": f"Convert {f}°F to Celsius."},
            {"role": "assistant", "content": f"{f}°F is {c:.1f}°C. (Subtract 32, then multiply by 5/9.)"},
            {"role": "user", "content": "And back to Fahrenheit?"},
            {"role": "assistant", "content": f"{c:.1f}°C × 9/5 + 32 = {c * 9 / 5 + 32:.1f}°F."},
        ]})
    for bill, pct in rng.sample([(48.6, 15), (120.0, 18), (36.25, 20), (75.4, 10), (210.0, 12)], 3):
        tip = bill * pct / 100
        rows.append({"messages": [
            {"role": "user", "content": f"What's a {pct}% tip on a ${bill:.2f} bill?"},
            {"role": "assistant", "content": f"A {pct}% tip is ${tip:.2f}, so the total is ${bill + tip:.2f}."},
            {"role": "user", "content": "Split between 3 people?"},
            {"role": "assistant", "content": f"${(bill + tip) / 3:.2f} each (rounded to the cent)."},
        ]})
    for price, discount in rng.sample([(299, 8), (1280, 7.5), (86, 9), (4599, 8.8)], 3):
        pay = price * discount / 10
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM_ZH},
            {"role": "user", "content": f"原价 {price} 元的东西打 {discount} 折，要付多少钱？"},
            {"role": "assistant", "content": f"{discount} 折就是原价的 {discount * 10:g}%，需要付 {pay:.2f} 元，省了 {price - pay:.2f} 元。"},
        ]})
    return rows


def make_chats() -> list[Row]:
    rng = random.Random(SEED)
    rows: list[Row] = []
    for system, turns in HANDWRITTEN:
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        for i, text in enumerate(turns):
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        rows.append({"messages": messages})
    rows.extend(_computed_chats(rng))
    rng.shuffle(rows)
    return rows


# --------------------------------------------------------------------------------------------------
# Tool-call data (OpenAI format)
# --------------------------------------------------------------------------------------------------


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }}


TOOLS: dict[str, dict[str, Any]] = {t["function"]["name"]: t for t in [
    _fn("get_weather", "Get the current weather and an optional forecast for a city.", {
        "city": {"type": "string", "description": "City name, e.g. Beijing or 上海"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
        "days": {"type": "integer", "description": "Number of forecast days", "default": 1},
    }, ["city"]),
    _fn("convert_currency", "Convert an amount of money from one currency to another at today's rate.", {
        "amount": {"type": "number", "description": "Amount to convert"},
        "from": {"type": "string", "description": "ISO 4217 code of the source currency, e.g. CNY"},
        "to": {"type": "string", "description": "ISO 4217 code of the target currency, e.g. USD"},
    }, ["amount", "from", "to"]),
    _fn("search_flights", "Search one-way flights between two airports.", {
        "origin": {"type": "string", "description": "IATA code of the departure airport"},
        "destination": {"type": "string", "description": "IATA code of the arrival airport"},
        "date": {"type": "string", "description": "Departure date, YYYY-MM-DD"},
        "passengers": {"type": "object", "description": "Who is travelling", "properties": {
            "adults": {"type": "integer"}, "children": {"type": "integer"},
        }, "required": ["adults"]},
        "cabin": {"type": "string", "enum": ["economy", "premium_economy", "business", "first"]},
        "nonstop_only": {"type": "boolean", "default": False},
        "max_price": {"type": ["number", "null"], "description": "Price cap per person in CNY, null for none"},
    }, ["origin", "destination", "date"]),
    _fn("create_event", "Create a calendar event.", {
        "title": {"type": "string"},
        "start": {"type": "string", "description": "ISO 8601 start time"},
        "end": {"type": "string", "description": "ISO 8601 end time"},
        "attendees": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "email": {"type": "string"},
        }, "required": ["email"]}},
        "location": {"type": ["string", "null"], "description": "Room or address, null if online"},
        "reminders": {"type": "array", "items": {"type": "integer"}, "description": "Minutes before start"},
        "all_day": {"type": "boolean", "default": False},
    }, ["title", "start", "end"]),
    _fn("send_email", "Send an email.", {
        "to": {"type": "array", "items": {"type": "string"}, "description": "Recipient addresses"},
        "subject": {"type": "string"},
        "body": {"type": "string"},
        "cc": {"type": "array", "items": {"type": "string"}},
        "priority": {"type": "string", "enum": ["low", "normal", "high"], "default": "normal"},
    }, ["to", "subject", "body"]),
    _fn("search_products", "Search the shop's product catalogue.", {
        "query": {"type": "string"},
        "category": {"type": "string", "enum": ["electronics", "books", "home", "sports", "clothing"]},
        "price_range": {"type": "object", "properties": {
            "min": {"type": "number"}, "max": {"type": "number"},
        }},
        "in_stock": {"type": "boolean", "default": True},
        "sort_by": {"type": "string", "enum": ["relevance", "price_asc", "price_desc", "rating"],
                    "default": "relevance"},
    }, ["query"]),
    _fn("calculate_bmi", "Compute the body-mass index.", {
        "weight_kg": {"type": "number"},
        "height_m": {"type": "number"},
    }, ["weight_kg", "height_m"]),
    _fn("set_thermostat", "Set a room's thermostat.", {
        "room": {"type": "string"},
        "temperature": {"type": "number", "description": "Target temperature in °C"},
        "mode": {"type": "string", "enum": ["heat", "cool", "auto", "off"]},
        "schedule": {"type": ["object", "null"], "properties": {
            "start": {"type": "string"}, "end": {"type": "string"},
        }, "description": "Active hours, null for always"},
    }, ["room", "temperature"]),
    _fn("translate_text", "Translate text between languages.", {
        "text": {"type": "string"},
        "target_lang": {"type": "string", "enum": ["en", "zh", "ja", "fr", "de"]},
        "source_lang": {"type": ["string", "null"], "description": "Source language code, null to detect"},
        "formal": {"type": "boolean", "default": False},
    }, ["text", "target_lang"]),
    _fn("lookup_order", "Look up an order in the shop's database.", {
        "order_id": {"type": "string"},
        "include_items": {"type": "boolean", "default": False},
    }, ["order_id"]),
]}

CITIES = [("Beijing", "北京"), ("Shanghai", "上海"), ("Shenzhen", "深圳"), ("Chengdu", "成都"),
          ("Hangzhou", "杭州"), ("Paris", "巴黎"), ("Tokyo", "东京"), ("London", "伦敦"),
          ("New York", "纽约"), ("Singapore", "新加坡")]
AIRPORTS = [("PEK", "北京首都"), ("PVG", "上海浦东"), ("SZX", "深圳宝安"), ("CTU", "成都天府"),
            ("HGH", "杭州萧山"), ("CAN", "广州白云"), ("XIY", "西安咸阳")]
RATES = {("CNY", "USD"): 0.1389, ("USD", "CNY"): 7.2, ("EUR", "CNY"): 7.83, ("CNY", "JPY"): 20.61,
         ("GBP", "USD"): 1.27, ("USD", "EUR"): 0.92}
CONDITIONS = [("sunny", "晴"), ("cloudy", "多云"), ("light rain", "小雨"), ("overcast", "阴")]


class ToolRows:
    """Builds conversations; each builder returns one row. Call ids count up per row."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _calls(self, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        out = []
        for name, args in calls:
            self.n += 1
            out.append({"id": f"call_{self.n:04d}", "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}})
        return out

    @staticmethod
    def _assistant(calls: list[dict[str, Any]], content: str = "", thought: str | None = None) -> Message:
        msg: Message = {"role": "assistant", "content": content}
        if thought is not None:
            msg["reasoning_content"] = thought
        msg["tool_calls"] = calls
        return msg

    @staticmethod
    def _results(calls: list[dict[str, Any]], results: list[Any]) -> list[Message]:
        return [{"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
                 "content": json.dumps(r, ensure_ascii=False)} for c, r in zip(calls, results, strict=True)]

    @staticmethod
    def _row(tools: list[str], messages: list[Message], system: str | None = None) -> Row:
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        return {"messages": messages, "tools": [TOOLS[t] for t in tools]}

    # -- scenarios -------------------------------------------------------------------------------
    def weather(self) -> Row:
        (en, zh), (cond_en, cond_zh) = self.rng.choice(CITIES), self.rng.choice(CONDITIONS)
        temp = self.rng.randint(-3, 33)
        if self.rng.random() < 0.5:
            user = f"{zh}今天天气怎么样？"
            args: dict[str, Any] = {"city": zh}
            answer = f"{zh}今天{cond_zh}，气温 {temp}°C。"
            result = {"city": zh, "condition": cond_zh, "temp_c": temp}
            thought = f"用户问{zh}的天气，调用 get_weather。"
        else:
            user = f"What's the weather like in {en} right now, in fahrenheit?"
            args = {"city": en, "unit": "fahrenheit"}
            temp_f = round(temp * 9 / 5 + 32, 1)
            answer = f"It's {cond_en} in {en}, {temp_f}°F."
            result = {"city": en, "condition": cond_en, "temp_f": temp_f}
            thought = "The user wants the current weather in fahrenheit; call get_weather with unit=fahrenheit."
        calls = self._calls([("get_weather", args)])
        use_thought = self.rng.random() < 0.6
        return self._row(["get_weather", "convert_currency"], [
            {"role": "user", "content": user},
            self._assistant(calls, thought=thought if use_thought else None),
            *self._results(calls, [result]),
            {"role": "assistant", "content": answer},
        ])

    def parallel_weather(self) -> Row:
        picks = self.rng.sample(CITIES, 3)
        days = self.rng.choice([2, 3, 5])
        args = [{"city": picks[0][0]}, {"city": picks[1][0], "days": days}, {"city": picks[2][0], "unit": "celsius"}]
        calls = self._calls([("get_weather", a) for a in args])
        conds = [self.rng.choice(CONDITIONS)[0] for _ in picks]
        temps = [self.rng.randint(0, 30) for _ in picks]
        results = [{"city": p[0], "condition": c, "temp_c": t} for p, c, t in zip(picks, conds, temps, strict=True)]
        summary = "; ".join(f"{p[0]}: {c}, {t}°C" for p, c, t in zip(picks, conds, temps, strict=True))
        return self._row(["get_weather"], [
            {"role": "user", "content": f"Weather in {picks[0][0]} and {picks[2][0]} today, "
                                        f"and a {days}-day forecast for {picks[1][0]}?"},
            self._assistant(calls, thought="Three independent lookups; call get_weather three times in parallel."),
            *self._results(calls, results),
            {"role": "assistant", "content": f"{summary}. The {picks[1][0]} forecast covers the next {days} days."},
        ], system=SYSTEM_EN)

    def currency(self) -> Row:
        (src, dst), rate = self.rng.choice(list(RATES.items()))
        amount = self.rng.choice([100, 250.5, 1.61, 999.99, 12000, 0.1, 3.75])
        converted = round(amount * rate, 2)
        calls = self._calls([("convert_currency", {"amount": amount, "from": src, "to": dst})])
        if self.rng.random() < 0.5:
            user = f"{amount} {src} 能换多少 {dst}？"
            answer = f"按今天的汇率 {rate}，{amount} {src} 约合 {converted} {dst}。"
        else:
            user = f"How much is {amount} {src} in {dst}?"
            answer = f"At today's rate of {rate}, {amount} {src} is about {converted} {dst}."
        return self._row(["convert_currency", "get_weather"], [
            {"role": "user", "content": user},
            self._assistant(calls, thought="Currency conversion needs today's rate: call convert_currency."
                            if self.rng.random() < 0.5 else None),
            *self._results(calls, [{"amount": converted, "currency": dst, "rate": rate}]),
            {"role": "assistant", "content": answer},
        ])

    def flights(self) -> Row:
        (o, o_zh), (d, d_zh) = self.rng.sample(AIRPORTS, 2)
        day = f"2024-{self.rng.randint(10, 12)}-{self.rng.randint(1, 28):02d}"
        adults, children = self.rng.choice([(1, 0), (2, 0), (2, 1), (3, 2)])
        cabin = self.rng.choice(["economy", "business", "premium_economy"])
        cap = self.rng.choice([None, 1500.0, 2399.5, None])
        nonstop = self.rng.random() < 0.5
        args: dict[str, Any] = {"origin": o, "destination": d, "date": day,
                                "passengers": {"adults": adults, "children": children},
                                "cabin": cabin, "nonstop_only": nonstop, "max_price": cap}
        calls = self._calls([("search_flights", args)])
        who = f"{adults}个大人" + (f"{children}个小孩" if children else "")
        cap_text = "不限价格" if cap is None else f"每人不超过{cap:g}元"
        price = round(self.rng.uniform(600, 1400), 1) if cap is None else round(cap * 0.8, 1)
        flight = f"{self.rng.choice(['MU', 'CA', 'CZ', 'HU'])}{self.rng.randint(1000, 9999)}"
        return self._row(["search_flights", "get_weather"], [
            {"role": "user", "content": f"帮我查{day}从{o_zh}到{d_zh}的航班，{who}，"
                                        f"{ {'economy': '经济舱', 'business': '商务舱', 'premium_economy': '超级经济舱'}[cabin]}，"
                                        f"{'只要直飞' if nonstop else '可以转机'}，{cap_text}。"},
            self._assistant(calls, content="好的，我来查一下。",
                            thought="用户给出了日期、出发地、目的地、人数、舱位和价格要求，直接调用 search_flights。"),
            *self._results(calls, [[{"flight": flight, "price": price, "nonstop": True, "depart": "08:35"}]]),
            {"role": "assistant", "content": f"找到 {flight}，08:35 起飞，直飞，每人 {price:g} 元。需要我帮你预订吗？"},
        ])

    def event(self) -> Row:
        people = self.rng.sample([("Alice", "alice@example.com"), ("王磊", "wanglei@example.cn"),
                                  ("Bob", "bob@example.com"), ("李娜", "lina@example.cn")], 2)
        hour = self.rng.randint(9, 16)
        day = f"2024-11-{self.rng.randint(4, 29):02d}"
        online = self.rng.random() < 0.5
        args = {"title": "Design review", "start": f"{day}T{hour:02d}:00:00+08:00",
                "end": f"{day}T{hour + 1:02d}:00:00+08:00",
                "attendees": [{"name": n, "email": e} for n, e in people],
                "location": None if online else "Room 3B", "reminders": [30, 5], "all_day": False}
        calls = self._calls([("create_event", args)])
        where = "online" if online else "in Room 3B"
        return self._row(["create_event", "send_email"], [
            {"role": "user", "content": f"Book a one-hour design review on {day} at {hour}:00 with "
                                        f"{people[0][0]} and {people[1][0]}, {where}; remind us 30 and 5 minutes before."},
            self._assistant(calls, thought="All details are given; create the event with both attendees."),
            *self._results(calls, [{"event_id": f"evt_{self.rng.randint(10000, 99999)}", "status": "confirmed"}]),
            {"role": "assistant", "content": f"Done: the design review is booked for {day} {hour}:00-{hour + 1}:00 "
                                             f"{where}, with reminders 30 and 5 minutes before."},
        ])

    def email_and_event(self) -> Row:
        day = f"2024-12-{self.rng.randint(2, 20):02d}"
        calls = self._calls([
            ("create_event", {"title": "季度复盘", "start": f"{day}T14:00:00+08:00", "end": f"{day}T16:00:00+08:00",
                              "attendees": [{"name": "团队", "email": "team@example.cn"}],
                              "location": "5楼大会议室", "reminders": [60], "all_day": False}),
            ("send_email", {"to": ["team@example.cn"], "subject": "季度复盘会议通知",
                            "body": f"各位好，季度复盘会定于{day} 14:00-16:00 在5楼大会议室举行，请准时参加。",
                            "cc": ["manager@example.cn"], "priority": "high"}),
        ])
        return self._row(["create_event", "send_email"], [
            {"role": "user", "content": f"{day}下午两点到四点在5楼大会议室开季度复盘会，帮我建日程，"
                                        "提前一小时提醒，再发邮件通知 team@example.cn，抄送 manager@example.cn，标为高优先级。"},
            self._assistant(calls, content="马上安排。",
                            thought="需要两个独立操作：创建日程和发送通知邮件，可以并行调用。"),
            *self._results(calls, [{"event_id": "evt_55012", "status": "confirmed"}, {"sent": True}]),
            {"role": "assistant", "content": "日程已创建（提前一小时提醒），通知邮件也已发给团队并抄送经理。"},
        ], system=SYSTEM_ZH)

    def products(self) -> Row:
        query, category = self.rng.choice([("noise cancelling headphones", "electronics"),
                                           ("running shoes", "sports"), ("机械键盘", "electronics"),
                                           ("科幻小说", "books"), ("air fryer", "home")])
        lo, hi = self.rng.choice([(0, 500), (199.9, 899), (50, 150.5), (1000, 3000)])
        sort_by = self.rng.choice(["price_asc", "rating", "relevance"])
        in_stock = self.rng.random() < 0.8
        calls = self._calls([("search_products", {"query": query, "category": category,
                                                  "price_range": {"min": lo, "max": hi},
                                                  "in_stock": in_stock, "sort_by": sort_by})])
        item = {"name": f"{query} {self.rng.choice(['Pro', 'Lite', 'X2', '青春版'])}",
                "price": round(self.rng.uniform(lo, hi), 2), "rating": round(self.rng.uniform(3.8, 4.9), 1)}
        order = {"price_asc": "cheapest first", "rating": "best rated first", "relevance": "most relevant first"}
        return self._row(["search_products", "lookup_order"], [
            {"role": "user", "content": f"Find {query} between {lo:g} and {hi:g}, {order[sort_by]}"
                                        f"{', only in stock' if in_stock else ', include out-of-stock items'}."},
            self._assistant(calls),
            *self._results(calls, [[item]]),
            {"role": "assistant", "content": f"Top result: {item['name']} at {item['price']} "
                                             f"(rated {item['rating']})."},
        ])

    def bmi(self) -> Row:
        weight, height = self.rng.choice([(72.5, 1.78), (55.0, 1.61), (90.2, 1.85), (48.3, 1.55)])
        value = round(weight / height**2, 1)
        calls = self._calls([("calculate_bmi", {"weight_kg": weight, "height_m": height})])
        return self._row(["calculate_bmi"], [
            {"role": "user", "content": f"我身高{height}米，体重{weight}公斤，BMI 是多少？"},
            self._assistant(calls, thought="用户给了身高和体重，调用 calculate_bmi。"),
            *self._results(calls, [{"bmi": value}]),
            {"role": "assistant", "content": f"你的 BMI 约为 {value}。"
                                             + ("在正常范围（18.5-24）内。" if 18.5 <= value < 24 else
                                                "不在 18.5-24 的正常范围内，建议咨询医生或营养师。")},
        ])

    def thermostat(self) -> Row:
        room = self.rng.choice(["living room", "bedroom", "office"])
        temp = self.rng.choice([21.5, 23.0, 19.5, 25.0])
        mode = "heat" if temp < 22 else "cool"
        night = self.rng.random() < 0.5
        schedule = {"start": "22:00", "end": "07:00"} if night else None
        calls = self._calls([("set_thermostat", {"room": room, "temperature": temp, "mode": mode,
                                                 "schedule": schedule})])
        return self._row(["set_thermostat", "get_weather"], [
            {"role": "user", "content": f"Set the {room} to {temp:g} degrees, {mode} mode"
                                        f"{', only overnight from 10pm to 7am' if night else ', all day'}."},
            self._assistant(calls, thought=f"Set {room} to {temp} °C in {mode} mode"
                                           f"{' with an overnight schedule' if night else ' with no schedule (null)'}."),
            *self._results(calls, [{"ok": True}]),
            {"role": "assistant", "content": f"The {room} is set to {temp:g}°C ({mode})"
                                             f"{' from 22:00 to 07:00' if night else ''}."},
        ])

    def translate(self) -> Row:
        text, target, source, formal, out = self.rng.choice([
            ("今天的会议取消了。", "en", None, False, "Today's meeting has been cancelled."),
            ("Thank you for your patience.", "zh", "en", True, "感谢您的耐心等待。"),
            ("Where is the train station?", "fr", None, False, "Où est la gare ?"),
            ("请在周五前提交报告。", "ja", "zh", True, "金曜日までに報告書をご提出ください。"),
            ("Happy birthday!", "de", "en", False, "Alles Gute zum Geburtstag!"),
        ])
        calls = self._calls([("translate_text", {"text": text, "target_lang": target, "source_lang": source,
                                                 "formal": formal})])
        return self._row(["translate_text"], [
            {"role": "user", "content": f"Translate into {target}{' (formal)' if formal else ''}: {text}"},
            self._assistant(calls),
            *self._results(calls, [{"translation": out}]),
            {"role": "assistant", "content": out},
        ])

    def order_then_email(self) -> Row:
        order_id = f"SO-{self.rng.randint(100000, 999999)}"
        calls1 = self._calls([("lookup_order", {"order_id": order_id, "include_items": True})])
        status = self.rng.choice(["shipped", "delayed"])
        result1 = {"order_id": order_id, "status": status, "eta": "2024-11-20",
                   "items": [{"sku": "KB-87", "qty": 1}, {"sku": "MS-02", "qty": 2}]}
        body = (f"Your order {order_id} has {'shipped' if status == 'shipped' else 'been delayed'}; "
                "expected delivery 2024-11-20.")
        calls2 = self._calls([("send_email", {"to": ["customer@example.com"],
                                              "subject": f"Update on order {order_id}", "body": body,
                                              "priority": "high" if status == "delayed" else "normal"})])
        return self._row(["lookup_order", "send_email"], [
            {"role": "user", "content": f"Check order {order_id} with its items and email the customer "
                                        "(customer@example.com) an update."},
            self._assistant(calls1, thought="First look the order up; the email depends on its status."),
            *self._results(calls1, [result1]),
            self._assistant(calls2, thought=f"The order is {status}; send the update"
                                            f"{' with high priority' if status == 'delayed' else ''}."),
            *self._results(calls2, [{"sent": True}]),
            {"role": "assistant", "content": f"Order {order_id} is {status} (ETA 2024-11-20, 3 items). "
                                             "I've emailed the customer."},
        ])

    def no_call_needed(self) -> Row:
        user, thought, answer = self.rng.choice([
            ("What does 'celsius' mean?", "A definition; no function is needed.",
             "Celsius is a temperature scale where water freezes at 0° and boils at 100° at sea level."),
            ("人民币的货币代码是什么？", "这是常识问题，不需要调用函数。", "人民币的 ISO 4217 代码是 CNY。"),
            ("Thanks, that's all!", "The user is closing the conversation; no call.", "You're welcome, have a nice day!"),
        ])
        return self._row(["get_weather", "convert_currency"], [
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer, "reasoning_content": thought},
        ])

    def ask_for_more(self) -> Row:
        _city_en, city_zh = self.rng.choice(CITIES)
        first = {"role": "assistant", "content": "请问您想查询哪个城市的天气？",
                 "reasoning_content": "用户没有说城市，先询问。"}
        calls = self._calls([("get_weather", {"city": city_zh, "days": 3})])
        cond = self.rng.choice(CONDITIONS)[1]
        return self._row(["get_weather"], [
            {"role": "user", "content": "帮我看看未来三天的天气。"},
            first,
            {"role": "user", "content": city_zh},
            self._assistant(calls),
            *self._results(calls, [{"city": city_zh, "forecast": [cond, cond, "晴"]}]),
            {"role": "assistant", "content": f"{city_zh}未来三天：{cond}、{cond}、晴。"},
        ])


SCENARIOS: list[Callable[[ToolRows], Row]] = [
    ToolRows.weather, ToolRows.parallel_weather, ToolRows.currency, ToolRows.flights, ToolRows.event,
    ToolRows.email_and_event, ToolRows.products, ToolRows.bmi, ToolRows.thermostat, ToolRows.translate,
    ToolRows.order_then_email, ToolRows.no_call_needed, ToolRows.ask_for_more,
]
N_TRAIN, N_EVAL = 60, 8


def make_tool_rows() -> tuple[list[Row], list[Row]]:
    """60 training rows and 8 held-out rows; every scenario occurs in the training rows."""
    builder = ToolRows(random.Random(SEED + 1))
    train: list[Row] = []
    held_out: list[Row] = []
    seen: set[str] = set()
    i = 0
    while len(held_out) < N_EVAL:
        row = SCENARIOS[i % len(SCENARIOS)](builder)
        i += 1
        key = json.dumps(row["messages"][:2], ensure_ascii=False, sort_keys=True)
        if key in seen:  # the same request twice would leak held-out rows into training
            continue
        seen.add(key)
        (train if len(train) < N_TRAIN else held_out).append(row)
    return train, held_out


# --------------------------------------------------------------------------------------------------


def render_files() -> dict[str, str]:
    train, held_out = make_tool_rows()

    def jsonl(rows: list[Row]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    return {
        "chat_seed.json": json.dumps(make_chats(), ensure_ascii=False, indent=2) + "\n",
        "tool_calls.jsonl": jsonl(train),
        "tool_calls_eval.jsonl": jsonl(held_out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_files().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} lines)")
    if stale:
        print("out of date: " + ", ".join(stale) + " (run examples/data/make_sample_data.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
