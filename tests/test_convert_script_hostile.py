r"""convert-script on hostile input: every bad file is one `FILE:LINE: what to change` line, exit 1.

Plus the odd shapes that must still convert: deep `$(...)` nesting, huge lines, CRLF endings, a
UTF-8 byte-order mark, `\ #` comments with a tab or a trailing backslash, bare words in odd places,
and values that would break the recipe's YAML comments.
"""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minicpm_plugin.cli import main
from minicpm_plugin.tools.convert import ScriptError, convert_script, decode_script, find_traps, read_launch

LAUNCH = "deepspeed --include localhost:0 finetune.py \\\n"


def _cli(tmp_path, capsys, data: bytes, name: str = "s.sh", *extra: str) -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_bytes(data)
    rc = main(["convert-script", str(path), "--base-dir", ".", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


BAD = [
    ("empty", b"", r"s\.sh:1: the file is empty: expected a launch script"),
    ("blank", b"\n   \n\t\n", r"s\.sh:1: the file is empty"),
    ("bom only", "\ufeff\n".encode(), r"s\.sh:1: the file is empty"),
    ("utf16", (LAUNCH + "  --output_dir o\n").encode("utf-16"), r"s\.sh:1: UTF-16 text .*save it as UTF-8"),
    ("utf16 no bom", (LAUNCH + "  --output_dir o\n").encode("utf-16-le"),
     r"s\.sh:1: NUL byte at offset 1: a binary file"),
    ("binary", b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8, r"s\.sh:1: NUL byte at offset 7"),
    ("gbk", "echo hi\npython finetune.py --output_dir o # 中文注释\n".encode("gbk"),
     r"s\.sh:2: byte 0xd6 \(column 37\) is not UTF-8: save the script as UTF-8"),
    ("no launch", b"echo hello\nls -l | head\nexport A=1\n",
     r"s\.sh: no training command found: expected a line like `deepspeed \.\.\. finetune\.py"),
    ("double quote", (LAUNCH + '  --output_dir "out \\\n  --bf16\n').encode(),
     r's\.sh:2: the double quote \(\"\) opened on this line is never closed: add the closing "'),
    ("single quote", (LAUNCH + "  --output_dir o \\\n  --run_name 'x\n").encode(),
     r"s\.sh:3: the single quote \('\) opened on this line is never closed"),
    ("backquote", (LAUNCH + "  --output_dir out-`date\n").encode(), r"s\.sh:2: the backquote"),
    ("command substitution", ("T=$(date +%s\n" + LAUNCH + "  --output_dir o\n").encode(),
     r"s\.sh:1: the command substitution \$\( opened on this line is never closed: add the closing \)"),
    ("parameter", (b"python finetune.py --output_dir ${OUT:-o\n"), r"s\.sh:1: the \$\{ opened"),
    ("deep ${}", ("python finetune.py --output_dir o --run_name " + "${A:-" * 100 + "x" + "}" * 100 + "\n")
     .encode(), r"s\.sh:1: \$\{\.\.\.:-\.\.\.\} defaults nested more than 32 deep: set the variable directly"),
    ("bad value", (LAUNCH + "  --output_dir o \\\n  --learning_rate " + "9" * 5000 + "x\n").encode(),
     r"s\.sh:3: --learning_rate expects a number, got '9{50,}…"),
]


@pytest.mark.parametrize("data,message", [(d, m) for _, d, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, data, message):
    rc, out, err = _cli(tmp_path, capsys, data)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.match(r"minicpm-plugin convert-script: error: \S*" + message, err), err


def test_unreadable_paths(tmp_path, capsys):
    assert main(["convert-script", str(tmp_path)]) == 1  # a directory
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and "Traceback" not in err


def test_deep_command_substitution_converts_with_a_short_warning(tmp_path, capsys):
    depth = 3000
    text = LAUNCH + "  --output_dir o \\\n  --run_name " + "$(" * depth + "x" + ")" * depth + " \\\n  --bf16\n"
    rc, out, err = _cli(tmp_path, capsys, text.encode())
    assert rc == 0 and "Traceback" not in err
    recipe = yaml.safe_load(out)
    assert recipe["output_dir"] == "o" and recipe["bf16"] is True
    shell = [line for line in err.splitlines() if "which only the shell knows" in line]
    assert len(shell) == 1 and len(shell[0]) < 300  # the 6000-character value is cut, not printed


def test_huge_line_converts(tmp_path, capsys):
    name = "n" * 2_000_000
    text = f"python finetune.py --output_dir o --run_name {name} --seed 7 --bf16\n"
    rc, out, err = _cli(tmp_path, capsys, text.encode(), "big.sh", "-o", str(tmp_path / "r.yml"))
    assert rc == 0
    recipe = yaml.safe_load((tmp_path / "r.yml").read_text(encoding="utf-8"))
    assert recipe["seed"] == 7 and recipe["bf16"] is True
    assert max(len(line) for line in err.splitlines()) < 400


def test_crlf_and_byte_order_mark_are_read_as_meant():
    text = "\ufeffformatted_time=$(date)\r\n" + LAUNCH.replace("\n", "\r\n") + \
        "  --output_dir out/$formatted_time \\\r\n  --learning_rate 2e-5 \\\r\n  --bf16\r\n"
    conv = convert_script(text, "w.sh")
    assert conv.warnings[0].startswith("w.sh:1: starts with a UTF-8 byte-order mark")
    assert conv.warnings[1].startswith("w.sh:1: Windows line endings (CRLF) on 5 line(s): bash reads each "
                                       "line-continuation backslash as escaping the CR")
    assert "dos2unix w.sh" in conv.warnings[1]
    assert (conv.recipe["output_dir"], conv.recipe["learning_rate"], conv.recipe["bf16"]) == ("out", 2e-5, True)


def test_decode_script_accepts_utf8():
    assert decode_script("python finetune.py # 注释\n".encode(), "s.sh") == "python finetune.py # 注释\n"
    with pytest.raises(ScriptError, match=r"^s\.sh:1: UTF-16"):
        decode_script(b"\xfe\xff" + "x".encode("utf-16-be"), "s.sh")


@pytest.mark.parametrize("script,flags,lines", [
    # one space, then '#': the guide's shape
    ("python finetune.py --output_dir o \\ # 输出\n  --bf16\n", [("output_dir", "o"), ("bf16", True)], [1]),
    # a tab instead of the space
    ("python finetune.py --output_dir o \\\t# tab\n  --bf16\n", [("output_dir", "o"), ("bf16", True)], [1]),
    # the comment ends in a backslash: bash goes on, but passes " #" and the comment's words
    ("python finetune.py --output_dir o \\ # 注释 \\\n  --seed 3\n", [("output_dir", "o"), ("seed", "3")], [1]),
    # the bare words after a comment line
    ("python finetune.py --output_dir o \\\n  # 注释\n  qlora \\\n  use_lora\n",
     [("output_dir", "o"), ("qlora", True), ("use_lora", True)], [2]),
    # at the end of the command a `\ #` is no trap: bash and the author agree on the stray words
    ("python finetune.py --output_dir o \\ # 结尾\necho done\n", [("output_dir", "o"), ("", " #"), ("", "结尾")], []),
])
def test_escaped_hash_shapes(script, flags, lines):
    assert [t.line for t in find_traps(script)[1]] == lines
    launch, _, _ = read_launch(script)
    assert [(f.name, f.value) for f in launch.flags] == flags


def test_escaped_hash_warnings_name_what_bash_does():
    conv = convert_script("python finetune.py --output_dir o \\ # 注释 \\\n  --bf16 \\ # c2\n  --seed 3\n", "s.sh")
    assert conv.warnings[:2] == [
        "s.sh:1: '\\ #': the backslash escapes the blank after it, so '#' starts no comment; bash passes ' #' "
        "'注释' to finetune.py as stray argument(s), which finetune.py's argument parser rejects "
        "(HfArgumentParser: 'Some specified arguments are not used'); converted as the author meant",
        "s.sh:2: bash ends the command here ('\\ #': the backslash escapes the blank after it, so '#' starts "
        "no comment), passes ' #' 'c2' to finetune.py as extra argument(s) (which its argument parser "
        "rejects) and drops the 1 flag(s) after this line (--seed); converted as the author meant (all flags)",
    ]
    conv = convert_script("python finetune.py --output_dir o \\ # it's bf16\n  --bf16\n", "s.sh")
    assert conv.warnings[0] == (
        "s.sh:1: '\\ #': the backslash escapes the blank after it, so '#' starts no comment; bash stops with a "
        "syntax error and runs nothing from line 1 on (the single quote (') opened on line 1 is never "
        "closed); converted as the author meant")
    assert conv.recipe["bf16"] is True


def test_many_lines_list_a_bounded_number_of_line_numbers():
    text = LAUNCH + "".join(f"    # 注释 {i}\n    --seed{i} {i} \\\n" for i in range(200)) + "    --output_dir o\n"
    conv = convert_script(text, "s.sh")
    assert conv.warnings[0].startswith("s.sh:2: bash ends the command here (a comment line")
    assert conv.warnings[1].startswith("s.sh:4: the same at line(s) 4, 6, 8")
    assert conv.warnings[1].endswith(", ... (199 lines)")


def test_yaml_comments_survive_line_breaks_in_values():
    text = ('python finetune.py --output_dir "o\u2028x" --run_name "a\nb # c\x85" --"we\nird" 1 --bf16 '
            "--report_to 'x\ry'\n")
    conv = convert_script(text, "s\u2028.sh")
    assert yaml.safe_load(conv.to_yaml("r e.yml")) == conv.recipe
    assert conv.recipe["output_dir"] == "o\u2028x"


_SHELL_BITS = st.sampled_from([
    "python finetune.py ", "deepspeed --include localhost:0,1 finetune.py ", "--output_dir o ", "--bf16 ",
    "--fp16 ", "--use_lora ", "use_lora ", "qlora ", "--learning_rate 1e-4 ", "--deepspeed z3.json ", "\\\n",
    "\\ # c\n", "\\  # c\n", "# c\n", "\n", "'", '"', "$(", ")", "${", "}", "`", "$X ", "X=1 ", "export Y=2\n",
    ";", "|", "&&", " 2>&1 ", "\r\n", "\ufeff", "\t", "中文", "--seed ", "7 ", "=", "--model_max_length=",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_SHELL_BITS | st.text(max_size=8), max_size=40))
def test_any_text_converts_or_fails_with_a_script_error(parts):
    text = "".join(parts)
    try:
        conv = convert_script(text, "f.sh")
    except ScriptError as exc:
        message = str(exc)
        assert message.startswith("f.sh") and "\n" not in message
        return
    assert yaml.safe_load(conv.to_yaml()) == conv.recipe
