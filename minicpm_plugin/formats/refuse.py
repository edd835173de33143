"""Rows that cannot be trained right by MiniCPM3 SFT, refused by name instead of being dropped.

* Preference rows (a chosen and a rejected answer, or a KTO label): SFT would train one answer and
  silently lose the other, or train answers labelled undesirable. They belong to `rl: dpo` with a
  dataset of `type: minicpm_plugin.dpo`.
* Images, videos and audio (``images``/``videos``/``audios`` fields, ``<image>``-style placeholders,
  media content parts): MiniCPM3 is text-only.

`record_refusals` looks at a raw record of any format (the scanner calls it before converting);
the canonical checks use `MEDIA_PART_TYPES` and `placeholders` on message text. `PreferenceFormat`
makes a file made only of preference rows detectable, so that each row gets this reason instead
of "no known format".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minicpm_plugin.formats.base import MATCH, NO, Format, RecordError

PREFERENCE_CODE = "preference-data"
MEDIA_CODE = "multimodal"
TEXT_ONLY = "MiniCPM3 is text-only"
DPO_HINT = "train it with `rl: dpo` and a dataset of `type: minicpm_plugin.dpo`"

#: Content-part types that carry media (OpenAI, LLaMA-Factory v1, ms-swift, Qwen-VL style).
MEDIA_PART_TYPES = frozenset({
    "image", "image_url", "input_image", "video", "video_url", "input_video", "audio", "audio_url", "input_audio",
})
#: Placeholders that multimodal datasets put where a medium is inserted.
PLACEHOLDERS = ("<image>", "<video>", "<audio>")
#: Record fields that carry media (ms-swift and LLaMA-Factory use the plural, LLaVA-style data the singular).
_MEDIA_KEYS = {"images": "image", "videos": "video", "audios": "audio", "image": "image", "video": "video",
               "audio": "audio"}
_PAIRS = (("chosen", "rejected"), ("chosen_messages", "rejected_messages"))


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def preference_refusal(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(path, message) when ``record`` is a preference or KTO row, else None."""
    for good, bad in _PAIRS:
        if good in record and bad in record:
            return (f"{good}, {bad}", "this is preference data (a chosen and a rejected answer per row), which SFT "
                    f"cannot train without dropping one of them; {DPO_HINT}")
    if "rejected_response" in record:
        return ("rejected_response", "this is preference data (messages with a rejected_response), which SFT cannot "
                f"train without dropping the rejected answer; {DPO_HINT}")
    if "kto_tag" in record or (isinstance(record.get("label"), bool) and not {"messages", "conversations",
                                                                             "completion"}.isdisjoint(record)):
        key = "kto_tag" if "kto_tag" in record else "label"
        return (key, "this is KTO data (each answer labelled desirable or not), which SFT would train whatever "
                "the label says; train it with a KTO trainer, or keep only the desirable rows for SFT")
    return None


def record_refusals(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(path, message, code) for every reason this raw record cannot be trained by MiniCPM3 SFT."""
    out: list[tuple[str, str, str]] = []
    pref = preference_refusal(record)
    if pref:
        out.append((*pref, PREFERENCE_CODE))
    for key, kind in _MEDIA_KEYS.items():
        value = record.get(key)
        if _present(value):
            n = len(value) if isinstance(value, (list, tuple)) else 1
            out.append((key, f"this row has {n} {kind}{'s' if n != 1 else ''}; {TEXT_ONLY} and cannot be trained on "
                        f"{'it' if n == 1 else 'them'} (remove the media and their placeholders, or train a multimodal "
                        "model)", MEDIA_CODE))
    return out


def placeholders(text: str) -> list[str]:
    """The media placeholders (``<image>``, ``<video>``, ``<audio>``) that occur in ``text``."""
    return [p for p in PLACEHOLDERS if p in text] if "<" in text else []


class PreferenceFormat(Format):
    """Preference rows in any layout: detected so that a whole preference file is refused row by row."""

    name = "preference"
    description = "preference pairs (chosen/rejected, rejected_response) or KTO rows: refused for SFT, use rl: dpo"
    example = '{"prompt": "2+2?", "chosen": "4", "rejected": "5"}'
    specializes = ("seed", "openai", "sharegpt", "glaive", "xlam", "hermes", "llamafactory_v1", "swift", "alpaca",
                   "query_response")

    def detect(self, record: Mapping[str, Any]) -> int:
        return MATCH if preference_refusal(record) else NO

    def convert(self, record: Mapping[str, Any]) -> dict[str, Any]:
        found = preference_refusal(record)
        path, message = found or ("", "not a preference row")
        raise RecordError(message, path, PREFERENCE_CODE)
