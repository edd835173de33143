"""The one rule for function and argument names, shared by the call parser and dataset validation.

An argument (or parameter) name is a Python identifier (`str.isidentifier`, keywords included:
`from=` is fine); a function name is one or more identifiers joined by dots. The parser reads a name
as a run of `NAME_CHARS` and accepts it exactly when these functions do, so validation accepts
exactly the names that `parse_assistant` reads back, and the parser reads every name it accepts.
"""

from __future__ import annotations

import re

#: Characters a name token is read from: ASCII letters, digits and `_`, and any non-ASCII character
#: that is not whitespace. Every identifier is such a run; the run is then checked with the rules below.
NAME_CHARS = r"[^\s\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
NAME_RUN = re.compile(NAME_CHARS + "+")
DOTTED_NAME_RUN = re.compile(f"{NAME_CHARS}+(?:\\.{NAME_CHARS}+)*")


def is_argument_name(name: object) -> bool:
    """True for a name that can be written as `name=value` in a call (a Python identifier)."""
    return isinstance(name, str) and name.isidentifier()


def is_function_name(name: object) -> bool:
    """True for a name that can be written as `name(...)`: identifiers joined by dots."""
    return isinstance(name, str) and all(part.isidentifier() for part in name.split("."))
