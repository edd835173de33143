"""`CHAT_TEMPLATE`: our Jinja chat template, rendering exactly what `render_chat` renders.

It is the one written into every tokenizer we save, so serving (transformers, vLLM) renders the
same text training saw. Unlike the official template it also accepts OpenAI-style `arguments` given
as a JSON string; those are re-spaced the way `tojson` writes them, which is exact for strings
written by `json.dumps(..., ensure_ascii=False)` (any spacing). Escapes such as `\\u4e2d` and number
spellings such as `1e5` are copied as written (the Python renderer parses and re-writes them).
"""

from __future__ import annotations

from minicpm_plugin.chat.literals import PY_HEX_ESCAPED
from minicpm_plugin.chat.tool_stubs import TOOLS_HEADER, TOOLS_RULES


def _jinja_string(text: str) -> str:
    """`text` as a double-quoted Jinja string literal (Jinja decodes Python-style escapes)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    out = out.replace("\t", "\\t")
    return '"' + "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}" for c in out) + '"'


def _hex_escape(c: str) -> str:
    return f"\\x{ord(c):02x}"


_SCHEMA_MACROS = r'''
{%- macro py_type(name, spec) -%}
{%- set basic = {'string': 'str', 'number': 'float', 'integer': 'int', 'boolean': 'bool', 'null': 'None'} -%}
{%- if spec is mapping and spec.enum -%}{{- name|title -}}
{%- elif spec is not mapping or spec.type is not defined -%}{{- 'Union[]' -}}
{%- elif spec.type is string -%}
{%- if spec.type in basic -%}{{- basic[spec.type] -}}
{%- elif spec.type == 'array' -%}{{- 'List[' ~ py_type(name, spec['items'] if 'items' in spec else none) ~ ']' -}}
{%- elif spec.type == 'object' and spec.properties -%}{{- name|title -}}
{%- elif spec.type == 'object' -%}{{- 'Dict[str, ' ~ py_type(name, spec.additionalProperties or 'Any') ~ ']' -}}
{%- else -%}{{- raise_exception('unknown JSON-schema type ' ~ spec.type|tojson) -}}
{%- endif -%}
{%- elif spec.type is iterable -%}
{{- 'Union[' -}}{%- for t in spec.type -%}{{- py_type(name, {'type': t}) -}}{{- ', ' if not loop.last -}}{%- endfor -%}{{- ']' -}}
{%- else -%}{{- 'Any' -}}
{%- endif -%}
{%- endmacro -%}

{%- macro default_lit(spec) -%}
{%- if spec is mapping and 'default' in spec -%}
{{- spec.default|tojson if spec.default is string else spec.default|string -}}
{%- else -%}{{- 'None' -}}
{%- endif -%}
{%- endmacro -%}

{%- macro object_fields(spec, indent, header) -%}
{%- set ns = namespace(lines=header) -%}
{%- set props = spec.properties if (spec is mapping and spec.properties is mapping) else {} -%}
{%- set req = spec.required if (spec is mapping and spec.required is defined) else [] -%}
{%- for pname, field in props|items -%}
{%- set items = field['items'] if 'items' in field else none -%}
{%- if field.enum -%}
{{- '\n\nclass ' ~ pname|title ~ '(Enum):\n' -}}
{%- for opt in field.enum -%}{{- '    enum_' ~ loop.index0 ~ ' = ' ~ opt|tojson ~ '\n' -}}{%- endfor -%}
{%- elif field.type == 'object' and field.properties -%}
{{- object_fields(field, '    ', '\n\nclass ' ~ pname|title ~ '(BaseModel):\n') -}}
{%- elif field.type == 'array' and items is mapping and items.type == 'object' and items.properties -%}
{{- object_fields(items, '    ', '\n\nclass ' ~ pname|title ~ '(BaseModel):\n') -}}
{%- endif -%}
{%- set line = indent ~ pname ~ ': ' ~ (py_type(pname, field) if pname in req else 'Optional[' ~ py_type(pname, field) ~ ']') -%}
{%- if not field.title and not field.description and not field.pattern -%}
{%- set line = line ~ ('' if pname in req else ' = ' ~ default_lit(field)) -%}
{%- else -%}
{%- set line = line ~ (' = Field(...' if pname in req else ' = Field(' ~ default_lit(field)) -%}
{%- set line = line ~ (', description=' ~ field.description|tojson if field.description else '') -%}
{%- set line = line ~ (', regex=' ~ field.pattern|tojson if field.pattern else '') -%}
{%- set line = line ~ (', title=' ~ field.title|tojson if field.title else '') ~ ')' -%}
{%- endif -%}
{%- set ns.lines = ns.lines ~ line ~ '\n' -%}
{%- endfor -%}
{{- ns.lines -}}
{%- endmacro -%}

{%- macro render_tools(tools) -%}
{%- for tool in tools -%}
{%- if tool.type is not defined or tool.type == 'function' -%}
{%- set fn = tool.function if tool.function is defined else tool -%}
{%- set params = fn.parameters if fn.parameters is defined else none -%}
{%- set sig = namespace(text='') -%}
{%- if params -%}
{%- set req = params.required if params.required is defined else [] -%}
{%- for pname, field in (params.properties if params.properties is mapping else {})|items -%}
{%- set sig.text = sig.text ~ (', ' if not loop.first else '') ~ pname ~ ('' if pname in req else '=' ~ default_lit(field)) -%}
{%- endfor -%}
{%- endif -%}
{%- set doc = fn.description|string if fn.description is defined else '' -%}
{{- object_fields(params, '        ', '\n\ndef ' ~ fn.name ~ '(' ~ sig.text ~ '):\n    """' ~ doc ~ ('\n\n    Args:\n' if params else '\n')) -}}
{{- '    """\n' -}}
{%- endif -%}
{%- endfor -%}
{%- endmacro -%}
'''

_JSON_LITERAL_MACROS = r"""
{%- macro lit(v) -%}{{- v|tojson -}}{%- endmacro -%}
{%- macro json_string_lit(tok) -%}{{- '"' ~ tok ~ '"' -}}{%- endmacro -%}
{%- macro word_lit(w) -%}{{- w -}}{%- endmacro -%}
"""

_PYTHON_LITERAL_MACROS = (
    r"""
{%- macro pystr(s) -%}
{%- set q = '"' if ("'" in s and '"' not in s) else "'" -%}
{%- set e = namespace(text=s|replace('\\', '\\\\')|replace(q, '\\' ~ q)|replace('\n', '\\n')|replace('\r', '\\r')|replace('\t', '\\t')) -%}
{%- for pair in HEX_ESCAPES -%}{%- set e.text = e.text|replace(pair[0], pair[1]) -%}{%- endfor -%}
{{- q ~ e.text ~ q -}}
{%- endmacro -%}
{%- macro lit(v) -%}
{%- if v is none -%}{{- 'None' -}}
{%- elif v is boolean -%}{{- 'True' if v else 'False' -}}
{%- elif v is string -%}{{- pystr(v) -}}
{%- elif v is mapping -%}{{- '{' -}}{%- for k, x in v|items -%}{{- pystr(k) ~ ': ' ~ lit(x) -}}{{- ', ' if not loop.last -}}{%- endfor -%}{{- '}' -}}
{%- elif v is iterable -%}{{- '[' -}}{%- for x in v -%}{{- lit(x) -}}{{- ', ' if not loop.last -}}{%- endfor -%}{{- ']' -}}
{%- else -%}{{- v|tojson -}}
{%- endif -%}
{%- endmacro -%}
{%- macro json_string_lit(tok) -%}
{%- if '\\u' in tok -%}{{- '"' ~ tok ~ '"' -}}
{%- else -%}{{- pystr(tok|replace('\\\\', '\ue000')|replace('\\"', '"')|replace('\\/', '/')|replace('\\n', '\n')|replace('\\r', '\r')|replace('\\t', '\t')|replace('\\b', '\b')|replace('\\f', '\f')|replace('\ue000', '\\')) -}}
{%- endif -%}
{%- endmacro -%}
{%- macro word_lit(w) -%}{{- {'true': 'True', 'false': 'False', 'null': 'None'}.get(w, w) -}}{%- endmacro -%}
"""
).replace(
    "HEX_ESCAPES",
    "[" + ", ".join(f"[{_jinja_string(c)}, {_jinja_string(_hex_escape(c))}]" for c in PY_HEX_ESCAPED) + "]",
)

# Reads an arguments object given as a JSON string and writes `k=v,k2=v2` the way the dict path
# does: whitespace outside strings dropped, nested separators as `, ` and `: `.
_JSON_ARGS_MACRO = r"""
{%- macro json_args(s) -%}
{%- set ns = namespace(out='', depth=0, instr=false, esc=false, tok='', word='', key=true) -%}
{%- for c in s ~ ' ' -%}
{%- if ns.instr -%}
{%- if ns.esc -%}{%- set ns.esc = false -%}{%- set ns.tok = ns.tok ~ c -%}
{%- elif c == '\\' -%}{%- set ns.esc = true -%}{%- set ns.tok = ns.tok ~ c -%}
{%- elif c == '"' -%}
{%- set ns.instr = false -%}
{%- set ns.out = ns.out ~ (ns.tok if (ns.depth == 1 and ns.key) else json_string_lit(ns.tok)) -%}
{%- else -%}{%- set ns.tok = ns.tok ~ c -%}
{%- endif -%}
{%- elif c in '"{}[]:, \t\r\n' -%}
{%- if ns.word -%}{%- set ns.out = ns.out ~ word_lit(ns.word) -%}{%- set ns.word = '' -%}{%- endif -%}
{%- if c == '"' -%}{%- set ns.instr = true -%}{%- set ns.tok = '' -%}
{%- elif c in '{[' -%}{%- set ns.depth = ns.depth + 1 -%}{%- set ns.key = true -%}{%- set ns.out = ns.out ~ (c if ns.depth > 1 else '') -%}
{%- elif c in '}]' -%}{%- set ns.out = ns.out ~ (c if ns.depth > 1 else '') -%}{%- set ns.depth = ns.depth - 1 -%}
{%- elif c == ':' -%}{%- set ns.key = false -%}{%- set ns.out = ns.out ~ ('=' if ns.depth == 1 else ': ') -%}
{%- elif c == ',' -%}{%- set ns.key = true -%}{%- set ns.out = ns.out ~ (',' if ns.depth == 1 else ', ') -%}
{%- endif -%}
{%- else -%}{%- set ns.word = ns.word ~ c -%}
{%- endif -%}
{%- endfor -%}
{{- ns.out -}}
{%- endmacro -%}
"""

_BODY = (
    r"""
{%- if messages[0].role == 'system' -%}
{%- set system_message = messages[0].content if messages[0].content is string else '' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set system_message = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- if system_message or tools -%}
{{- '<|im_start|>system\n' ~ system_message -}}
{%- if tools -%}{{- TOOLS_HEADER ~ render_tools(tools) ~ TOOLS_RULES -}}{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
{%- set content = message.content if message.content is string else '' -%}
{%- if message.role == 'assistant' and (message.tool_calls or message.thought) -%}
{{- '<|im_start|>assistant\n' -}}
{%- if message.thought -%}{{- '<|thought_start|>\n' ~ message.thought ~ '\n<|thought_end|>\n' -}}{%- endif -%}
{%- if message.tool_calls -%}
{{- '<|tool_call_start|>\n```python\n' -}}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{{- fn.name ~ '(' -}}
{%- if fn.arguments is mapping -%}
{%- for k, v in fn.arguments|items -%}{{- k ~ '=' ~ lit(v) -}}{{- ',' if not loop.last -}}{%- endfor -%}
{%- elif fn.arguments is string -%}{{- json_args(fn.arguments) -}}
{%- endif -%}
{{- ')\n' -}}
{%- endfor -%}
{{- '```\n<|tool_call_end|>\n' -}}
{{- content if not content.startswith('<|tool_call_start|>') else '' -}}
{%- else -%}{{- content -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' ~ message.role ~ '\n' ~ content ~ '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""
    .replace("TOOLS_HEADER", _jinja_string(TOOLS_HEADER))
    .replace("TOOLS_RULES", _jinja_string(TOOLS_RULES))
)


def _build(literal_macros: str) -> str:
    return (_SCHEMA_MACROS + literal_macros + _JSON_ARGS_MACRO + _BODY).strip() + "\n"


#: Jinja chat template equal to `render_chat(..., literal_style="json")` (the default).
CHAT_TEMPLATE: str = _build(_JSON_LITERAL_MACROS)
#: Jinja chat template equal to `render_chat(..., literal_style="python")`.
CHAT_TEMPLATE_PYTHON: str = _build(_PYTHON_LITERAL_MACROS)


def chat_template_for(literal_style: str) -> str:
    return CHAT_TEMPLATE_PYTHON if literal_style == "python" else CHAT_TEMPLATE
