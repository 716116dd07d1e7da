"""The command line's ``--help`` text, read from docstrings as they are written.

tyro joins a docstring's wrapped lines into one paragraph only where the next line starts with a letter (a line
that starts otherwise, such as ``- item``, begins a new one). The field docstrings it reads through
docstring_parser keep their continuation lines' source indentation, so every multi-line option started a new
line at each of its source line breaks, and the terminal then rewrapped the pieces mid-sentence. `cli` joins each
paragraph's lines first: paragraphs (a blank line) and list items still break where they are written.
"""

from __future__ import annotations

import functools
import re
import textwrap

import tyro

_ITEM = re.compile(r"([-*\u2022]|\d+[.)])\s")
"""The start of a list item, which begins a line of its own."""


def _paragraphs(helptext: str) -> str:
    """``helptext`` with each paragraph's wrapped lines joined by a space, whatever they start with (tyro keeps a
    break before a line that starts with a digit or a backquote); blank lines and list items stay where they are."""
    first, _, rest = helptext.partition("\n")
    lines = [first, *textwrap.dedent(rest).split("\n")] if rest else [first]
    joined = lines[:1]
    for line in lines[1:]:
        if line.strip() and joined[-1].strip() and not _ITEM.match(line.lstrip()):
            joined[-1] = f"{joined[-1].rstrip()} {line.strip()}"
        else:
            joined.append(line)
    return "\n".join(joined)


@functools.cache
def _join_indented_lines() -> None:
    # tyro reads this private helper from its module at each call. Should a tyro release move it, the help keeps
    # tyro's own line breaks: a worse-looking --help, never a command line that fails to start.
    try:
        from tyro import _strings
    except ImportError:
        return
    join = getattr(_strings, "remove_single_line_breaks", None)
    if join is None:
        return

    def remove_single_line_breaks(helptext: str) -> str:
        return join(_paragraphs(helptext))

    _strings.remove_single_line_breaks = remove_single_line_breaks


def cli(f, **kwargs):
    """`tyro.cli` with docstrings' wrapped lines joined into paragraphs (the module's docstring says why)."""
    _join_indented_lines()
    return tyro.cli(f, **kwargs)
