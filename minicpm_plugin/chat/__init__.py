"""Placeholder while the format core is written (replaced in the next commit)."""
CHAT_TEMPLATE = ""
CHAT_TEMPLATE_PYTHON = ""


class FormatError(ValueError):
    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ToolCallParseError(ValueError):
    pass


def render_chat(*a, **k):
    raise NotImplementedError


def render_conversation(*a, **k):
    raise NotImplementedError


def parse_assistant(*a, **k):
    raise NotImplementedError
