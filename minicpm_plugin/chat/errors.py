"""Errors of the format core. Both carry enough context to point at the offending field."""

from __future__ import annotations


class FormatError(ValueError):
    """A conversation or tool schema that cannot be rendered in MiniCPM3's format.

    `path` names the field (e.g. ``messages[3].tool_calls[0].arguments``) so that loaders can
    report ``FILE:LINE: path: message``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path

    def at(self, prefix: str) -> FormatError:
        """The same error with `prefix` put in front of its field path."""
        path = f"{prefix}.{self.path}" if self.path and not self.path.startswith("[") else prefix + self.path
        return FormatError(self.message, path)


class ToolCallParseError(ValueError):
    """Model text whose tool-call block is not a list of well-formed keyword-argument calls."""

    def __init__(self, message: str, call: str | None = None) -> None:
        super().__init__(f"{message}: {call!r}" if call else message)
        self.message = message
        self.call = call
