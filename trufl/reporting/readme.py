"""Generated blocks of README.md: text between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` is owned by a script and rewritten from its outputs;
everything outside the markers is hand-written and never touched.

    from trufl.reporting.readme import replace_block
    text = replace_block(text, "performance", body)   # body: markdown, without the markers
"""

from __future__ import annotations

import re
from pathlib import Path

from ..atomic import write_text_atomic

from .repository import README


class MissingBlockError(KeyError):
    """README.md has no (or an unbalanced) generated block of this name."""


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{re.escape(name)} -->\n)(.*?)(<!-- /generated:{re.escape(name)} -->)", re.S)


def block(text: str, name: str) -> str:
    """The current body of block ``name`` (without the markers)."""
    found = _pattern(name).search(text)
    if found is None:
        raise MissingBlockError(f"no '<!-- generated:{name} -->' … '<!-- /generated:{name} -->' block in the text")
    return found.group(2)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with block ``name``'s body replaced by ``body`` (a trailing newline is added)."""
    block(text, name)  # raises a clear error when the markers are missing
    body = body if body.endswith("\n") else body + "\n"
    return _pattern(name).sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def update(name: str, body: str, path: Path = README) -> bool:
    """Rewrite block ``name`` of ``path``; True when its content changed."""
    text = path.read_text()
    new = replace_block(text, name, body)
    if new != text:
        write_text_atomic(path, new)
    return new != text
