"""Strings capsviz did not write itself, shown as typed: file names, folder names, cards, reports, errors.

Streamlit reads Markdown almost everywhere text is shown (markdown, captions, alerts, table cells),
so such a string could add links, remote images or styling to the page. `plain` is the one way
they reach it: cut short, on one line, every Markdown character escaped. Such a string never
goes into a code span either: a backtick in it would close the span.
"""

from __future__ import annotations

import re

MAX_FIELD_CHARS = 100  # a one-line field: a name, a device, a folder
MAX_MESSAGE_CHARS = 600  # an error message that may quote a path or a header's field
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~$:&])")  # what Streamlit's Markdown could read as markup
# newlines, tabs, the other controls, and the invisible marks that turn or hide the text after them
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")


def plain(text, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` cut to `limit` characters, on one line, its Markdown escaped so it shows as typed (no links, images)."""
    return _MARKDOWN.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)[:limit]))
