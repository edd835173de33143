"""The intake corpus (tests/data/intake/): one file per real-world shape, each trained exactly or refused.

Every trainable fixture is checked down to the exact MiniCPM3 text `render_chat` produces for its rows;
every refused one down to the exact `FILE:LINE: ... [code]` line, in-process and through the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from minicpm_plugin import render_chat
from minicpm_plugin.chat.tool_stubs import TOOLS_HEADER, TOOLS_RULES
from minicpm_plugin.cli import main
from minicpm_plugin.formats import scan_file

INTAKE = Path(__file__).parent / "data" / "intake"
DPO = "train it with `rl: dpo` and a dataset of `type: minicpm_plugin.dpo`"
TAIL = "token counts need --tokenizer DIR"


def scan(name: str, **kw: Any):
    return scan_file(INTAKE / name, file=name, **kw)


def rendered(name: str) -> list[str]:
    """The MiniCPM3 text of every good row of a fixture."""
    scanned = scan(name)
    return [render_chat(r.conversation["messages"], r.conversation["tools"]) for r in scanned.good_rows]


def system(text: str, stubs: str) -> str:
    return f"<|im_start|>system\n{text}{TOOLS_HEADER}{stubs}{TOOLS_RULES}<|im_end|>\n"


def turn(role: str, text: str) -> str:
    return f"<|im_start|>{role}\n{text}<|im_end|>\n"


def calls(*lines: str) -> str:
    return "<|tool_call_start|>\n```python\n" + "".join(f"{line}\n" for line in lines) + "```\n<|tool_call_end|>\n"


def thought(text: str) -> str:
    return f"<|thought_start|>\n{text}\n<|thought_end|>\n"


WEATHER_STUB = '\n\ndef get_weather(city):\n    """Weather for a city.\n\n    Args:\n        city: str\n    """\n'
AQI_STUB = ('\n\ndef realtime_aqi(city):\n    """Weather forecast. Get real-time air quality, including current air quality, '
            'PM2.5, and PM10 information.\n\n    Args:\n        city: str = Field(..., description="City name, e.g., '
            'Shanghai")\n    """\n')
# LLaMA-Factory v1 tools use Python type names: dict -> object, float -> number, str -> string, int -> integer,
# bool -> boolean, list/tuple -> array, any -> no type (what the official template writes as Union[]).
V1_STUBS = (
    '\n\ndef multiply(a, b):\n    """A function that multiplies two numbers\n\n    Args:\n'
    '        a: float = Field(..., description="The first number")\n'
    '        b: float = Field(..., description="The second number")\n    """\n'
    '\n\ndef book_table(restaurant, guests, outdoor=False, dishes=None, slot=None, notes=None):\n'
    '    """Book a restaurant table.\n\n    Args:\n'
    '        restaurant: str = Field(..., description="Restaurant name")\n'
    '        guests: int = Field(..., description="Number of guests")\n'
    '        outdoor: Optional[bool] = Field(False, description="Sit outside")\n'
    '        dishes: Optional[List[str]] = Field(None, description="Dishes to pre-order")\n'
    '        slot: Optional[List[Union[]]] = Field(None, description="Start and end hour")\n'
    '        notes: Optional[Union[]] = Field(None, description="Anything else")\n    """\n'
)


def test_llamafactory_v1() -> None:
    scanned = scan("llamafactory_v1.jsonl")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("llamafactory_v1", 3, [])
    one, two, three = rendered("llamafactory_v1.jsonl")
    assert one == (system("You are a helpful assistant.", V1_STUBS) + turn("user", "What is 6*8?")
                   + turn("assistant", thought("I need to use the multiply function to calculate 6*8.")
                          + calls("multiply(a=6,b=8)"))
                   + turn("tool", "48.") + turn("assistant", "The result of 6*8 is 48."))
    assert two == (system("", V1_STUBS) + turn("user", "Table for 4 at Luigi's and at Chez Marie, outside, 19 to 21h.")
                   + turn("assistant", calls('book_table(restaurant="Luigi\'s",guests=4,outdoor=true,slot=[19, 21],notes=null)',
                                             'book_table(restaurant="Chez Marie",guests=4,outdoor=true,dishes=["crêpes"],'
                                             'slot=[19, 21])'))
                   + turn("tool", '{"ok": true}') + turn("tool", '{"ok": false, "reason": "full"}')
                   + turn("assistant", "Luigi's is booked; Chez Marie is full."))
    assert three == turn("user", "Hi") + turn("assistant", "Hello! How can I help?")
    # loss_weight 0.0 on the call turn keeps it as context only
    assert [m.get("train") for m in scanned.rows[1].conversation["messages"]] == [None, False, None, None, None]


def test_swift_agent() -> None:
    scanned = scan("swift_agent.jsonl")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("swift", 2, [])
    one, two = rendered("swift_agent.jsonl")
    assert one == (system("", AQI_STUB) + turn("user", "What is the weather like in Beijing and Shanghai today?")
                   + turn("assistant", calls('realtime_aqi(city="Beijing")', 'realtime_aqi(city="Shanghai")'))
                   + turn("tool", '{"city": "Beijing", "aqi": "10", "unit": "celsius"}')
                   + turn("tool", '{"city": "Shanghai", "aqi": "72", "unit": "fahrenheit"}')
                   + turn("assistant", "According to the weather forecast tool, the air quality index (AQI) in Beijing "
                          "is 10, which indicates good air quality; whereas in Shanghai, the AQI is 72, indicating mild "
                          "pollution."))
    # the assistant's <think> turn and the tool_call after it are one turn: thought + call
    assert two == (system("You are an air-quality assistant.", AQI_STUB) + turn("user", "上海空气怎么样？")
                   + turn("assistant", thought("I can check the current air quality with the tool.")
                          + calls('realtime_aqi(city="上海")'))
                   + turn("tool", '{"city": "上海", "aqi": "72"}') + turn("assistant", "上海的AQI是72，轻度污染。"))


def test_alpaca_and_query_response() -> None:
    scanned = scan("alpaca.json")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("alpaca", 2, [])
    assert rendered("alpaca.json") == [
        turn("user", "Give three tips for staying healthy.")
        + turn("assistant", "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep well."),
        turn("system", "You are a translator.") + turn("user", "Translate to French: hello") + turn("assistant", "Bonjour")
        + turn("user", "Translate to French\nThe cat sleeps.") + turn("assistant", "Le chat dort."),
    ]
    scanned = scan("query_response.jsonl")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("query_response", 2, [])
    assert rendered("query_response.jsonl") == [
        turn("system", "You are a calculator.") + turn("user", "What is 1 + 1?") + turn("assistant", "It equals 2")
        + turn("user", "What about adding 1?") + turn("assistant", "It equals 3"),
        turn("user", "Tell me tomorrow's weather") + turn("assistant", "Tomorrow's weather will be sunny"),
    ]


def test_glaive_on_one_line() -> None:
    scanned = scan("glaive_oneline.jsonl")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("glaive", 2, [])
    bmi = ('\n\ndef calculate_bmi(weight, height):\n    """Calculate the Body Mass Index (BMI)\n\n    Args:\n'
           '        weight: float = Field(..., description="The weight in kilograms")\n'
           '        height: float = Field(..., description="The height in meters")\n    """\n')
    one, two = rendered("glaive_oneline.jsonl")
    prompt = "You are a helpful assistant with access to the following functions. Use them if required -"
    assert one == (system(prompt, bmi)
                   + turn("user", "Hi, I would like to calculate my BMI. I weigh 70 kilograms and my height is 1.75 meters.")
                   + turn("assistant", calls("calculate_bmi(weight=70,height=1.75)")) + turn("tool", '{"bmi": 22.86}')
                   + turn("assistant", "Your Body Mass Index (BMI) is 22.86. This is considered a healthy weight for your "
                          "height."))
    assert two == (turn("system", "You are a helpful assistant, with no access to external functions.")
                   + turn("user", "Can you order a pizza for me?")
                   + turn("assistant", "I'm sorry, but I can't perform external tasks like ordering a pizza."))


def test_content_parts_and_json_tool_results() -> None:
    scanned = scan("content_parts.jsonl")
    assert (scanned.format, len(scanned.rows), scanned.problems) == ("openai", 2, [])
    one, two = rendered("content_parts.jsonl")
    assert one == (system("Answer in one line.", WEATHER_STUB) + turn("user", "Weather in Zürich?")
                   + turn("assistant", calls('get_weather(city="Zürich")'))
                   + turn("tool", '{"city": "Zürich", "temp_c": 21.5, "sky": "☀"}')  # JSON, ensure_ascii=False
                   + turn("assistant", "Sunny, 21.5 °C."))
    assert turn("tool", '[{"flight": "MU5101", "price": 1180.0}, {"flight": "CA1501", "price": 990}]') in two


def test_minicpm_markup_is_read_strictly_and_respelling_is_counted() -> None:
    scanned = scan("minicpm_markup.jsonl")
    assert (scanned.format, len(scanned.rows)) == ("openai", 2)
    assert [str(p) for p in scanned.problems] == [
        "minicpm_markup.jsonl:2: warning: messages[1].content: MiniCPM3 markup read as a thought and 2 calls; it is "
        "rendered with a different spelling (first difference: \"get_weather(city='Paris')\" -> "
        "'get_weather(city=\"Paris\")') [markup-respelled]"]
    assert scanned.stats()["respelled"] == 1
    assert scanned.rows[1].conversation["messages"][1] == {
        "role": "assistant", "content": "Checking both.", "thought": "Two cities, two calls.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]}
    one, two = rendered("minicpm_markup.jsonl")
    original = scan("minicpm_markup.jsonl").rows[0]
    assert one == (system("", WEATHER_STUB) + turn("user", "Weather in Paris?")
                   + turn("assistant", thought("I should call get_weather for Paris.") + calls('get_weather(city="Paris")'))
                   + turn("tool", '{"temp_c": 18}') + turn("assistant", "It is 18 °C in Paris."))
    assert original.problems == []  # already canonical: trained byte for byte as written
    assert turn("assistant", thought("Two cities, two calls.") + calls('get_weather(city="Paris")',
                                                                       'get_weather(city="Rome")') + "Checking both.") in two


def test_calls_without_tools_train_with_a_warning() -> None:
    scanned = scan("calls_without_tools.jsonl")
    assert (scanned.format, len(scanned.good_rows)) == ("openai", 1)
    assert scanned.stats()["calls_without_tools"] == 1
    assert rendered("calls_without_tools.jsonl") == [
        turn("user", "Weather in Oslo?") + turn("assistant", calls('get_weather(city="Oslo")')) + turn("tool", "-3")
        + turn("assistant", "-3 °C.")]


CLI_CASES = [
    ("llamafactory_v1.jsonl", 0, [], "llamafactory_v1): 3 rows, 0 with errors, 0 warnings; 2 conversations with tools, "
     "3 calls, 1 thoughts"),
    ("swift_agent.jsonl", 0, [], "swift): 2 rows, 0 with errors, 0 warnings; 2 conversations with tools, 3 calls, 1 thoughts"),
    ("alpaca.json", 0, [], "alpaca): 2 rows, 0 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("query_response.jsonl", 0, [], "query_response): 2 rows, 0 with errors, 0 warnings; 0 conversations with tools, "
     "0 calls, 0 thoughts"),
    ("glaive_oneline.jsonl", 0, [], "glaive): 2 rows, 0 with errors, 0 warnings; 1 conversations with tools, 1 calls, "
     "0 thoughts"),
    ("content_parts.jsonl", 0, [], "openai): 2 rows, 0 with errors, 0 warnings; 2 conversations with tools, 2 calls, "
     "0 thoughts"),
    ("minicpm_markup.jsonl", 0, [
        "minicpm_markup.jsonl:2: warning: messages[1].content: MiniCPM3 markup read as a thought and 2 calls; it is "
        "rendered with a different spelling (first difference: \"get_weather(city='Paris')\" -> "
        "'get_weather(city=\"Paris\")') [markup-respelled]"],
     "openai): 2 rows, 0 with errors, 1 warnings; 2 conversations with tools, 3 calls, 2 thoughts; 1 assistant turns "
     "of MiniCPM3 markup respelled"),
    ("calls_without_tools.jsonl", 0, [
        "calls_without_tools.jsonl:1: warning: messages[1].tool_calls: calls get_weather in a conversation that "
        "declares no tools: trained as written (MiniCPM3's template renders calls without tools); add the functions "
        "to tools so that the model sees their schemas [calls-without-tools]"],
     "openai): 1 rows, 0 with errors, 1 warnings; 0 conversations with tools, 1 calls, 0 thoughts; 1 conversations "
     "with calls but no tools (trained as written)"),
    ("unknown_function.jsonl", 1, [
        "unknown_function.jsonl:1: messages[1].tool_calls[0].function.name: tool call to 'get_wether', which is not "
        "in tools (declared: get_weather) [unknown-function]"],
     "openai): 1 rows, 1 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("preference_sharegpt.json", 1, [
        f"preference_sharegpt.json:{n}: chosen, rejected: this is preference data (a chosen and a rejected answer per "
        f"row), which SFT cannot train without dropping one of them; {DPO} [preference-data]" for n in (1, 2)],
     "preference): 2 rows, 2 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("preference_swift.jsonl", 1, [
        "preference_swift.jsonl:1: rejected_response: this is preference data (messages with a rejected_response), "
        f"which SFT cannot train without dropping the rejected answer; {DPO} [preference-data]"],
     "openai): 2 rows, 1 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("preference_trl.jsonl", 1, [
        "preference_trl.jsonl:1: chosen, rejected: this is preference data (a chosen and a rejected answer per row), "
        f"which SFT cannot train without dropping one of them; {DPO} [preference-data]"],
     "preference): 1 rows, 1 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("multimodal_sharegpt.json", 1, [
        "multimodal_sharegpt.json:1: images: this row has 1 image; MiniCPM3 is text-only and cannot be trained on it "
        "(remove the media and their placeholders, or train a multimodal model) [multimodal]"],
     "openai): 1 rows, 1 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("multimodal_swift.jsonl", 1, [
        "multimodal_swift.jsonl:1: images: this row has 2 images; MiniCPM3 is text-only and cannot be trained on them "
        "(remove the media and their placeholders, or train a multimodal model) [multimodal]",
        "multimodal_swift.jsonl:2: audios: this row has 1 audio; MiniCPM3 is text-only and cannot be trained on it "
        "(remove the media and their placeholders, or train a multimodal model) [multimodal]"],
     "openai): 3 rows, 2 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
    ("multimodal_parts.jsonl", 1, [
        "multimodal_parts.jsonl:1: messages[0].content[1]: content part of type 'image_url' is not supported; "
        "MiniCPM3 is text-only [multimodal]",
        "multimodal_parts.jsonl:2: messages[0].content: contains the <video> placeholder of multimodal data; MiniCPM3 "
        "is text-only, so the medium it stands for cannot be trained [multimodal]"],
     "seed): 2 rows, 2 with errors, 0 warnings; 0 conversations with tools, 0 calls, 0 thoughts"),
]


def test_every_fixture_has_a_cli_case() -> None:
    assert sorted(p.name for p in INTAKE.iterdir()) == sorted(c[0] for c in CLI_CASES)


#: Preference files: `check` validates them as pairs (the DPO path); the SFT scan refuses them by name.
PREFERENCE_CASES = [c for c in CLI_CASES if c[0].startswith("preference_")]
SFT_CASES = [c for c in CLI_CASES if c not in PREFERENCE_CASES]


@pytest.mark.parametrize(("name", "code", "problems", "summary"), PREFERENCE_CASES, ids=[c[0] for c in PREFERENCE_CASES])
def test_preference_files_are_refused_for_sft_and_checked_as_pairs(
        name: str, code: int, problems: list[str], summary: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scanned = scan(name)
    assert [str(p) for p in scanned.problems] == problems
    assert f"{scanned.format}): {scanned.stats()['rows']} rows, {scanned.stats()['bad']} with errors" in summary
    monkeypatch.chdir(INTAKE)
    mixed = name == "preference_swift.jsonl"  # one pair and one plain chat: neither an SFT nor a preference file
    assert main(["check", name]) == (1 if mixed else 0)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert (f"{name}: format unknown" if mixed else "0 with errors") in out.splitlines()[-1]
    assert out.splitlines()[-1].startswith("checked 1 preference file (")


@pytest.mark.parametrize(("name", "code", "problems", "summary"), SFT_CASES, ids=[c[0] for c in SFT_CASES])
def test_check_cli_on_each_fixture(name: str, code: int, problems: list[str], summary: str,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(INTAKE)
    assert main(["check", name]) == code
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [*problems, f"checked 1 file ({name}: {summary}; {TAIL}"]


def test_check_cli_subprocess_on_the_whole_corpus_never_shows_a_traceback() -> None:
    names = sorted(c[0] for c in SFT_CASES)
    proc = subprocess.run([sys.executable, "-m", "minicpm_plugin.cli", "check", *names], cwd=INTAKE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    rows = sum(int(c[3].split("): ")[1].split(" rows")[0]) for c in SFT_CASES)
    bad = sum(int(c[3].split(" rows, ")[1].split(" with errors")[0]) for c in SFT_CASES)
    assert proc.stdout.splitlines()[-1].startswith(f"checked {len(names)} files (")
    assert f": {rows} rows, {bad} with errors, " in proc.stdout.splitlines()[-1]
