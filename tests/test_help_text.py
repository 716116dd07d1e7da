"""`salesrl_jax.help_text`: docstrings' wrapped lines read as paragraphs in ``--help``."""

import pytest

from salesrl_jax.cli import main
from salesrl_jax.help_text import _paragraphs


def test_wrapped_lines_join_whatever_they_start_with():
    doc = ("First line of a field's docstring that\n    continues here, then\n    3,088 floats and\n"
           "    `code` too.\n\n    A second paragraph:\n    - an item\n      wrapped\n    - 2nd item\n    1. numbered")
    assert _paragraphs(doc) == ("First line of a field's docstring that continues here, then 3,088 floats and "
                                "`code` too.\n\nA second paragraph:\n- an item wrapped\n- 2nd item\n1. numbered")
    assert _paragraphs("one line") == "one line"


def test_a_tyro_without_the_private_helper_keeps_its_own_help(monkeypatch, capsys):
    """The paragraph joining patches a private tyro function: were it gone, --help must still work."""
    from tyro import _strings

    from salesrl_jax import help_text

    help_text._join_indented_lines.cache_clear()
    monkeypatch.delattr(_strings, "remove_single_line_breaks")
    help_text._join_indented_lines()  # nothing to patch: returns
    assert not hasattr(_strings, "remove_single_line_breaks")
    monkeypatch.undo()
    help_text._join_indented_lines.cache_clear()


def test_a_long_option_help_reads_as_one_paragraph(capsys, monkeypatch):
    # Before, tyro kept each source line break of the docstring and the terminal wrapped the pieces again, leaving
    # short lines mid-sentence; as a paragraph every line but the last fills the column.
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if "--regime" in line) + 1
    block = []
    for line in out[start:]:
        text = line.strip("│ ")
        if text.startswith("--") or not text:
            break
        block.append(text)
    assert "How the recipe adapts" in block[0] and "(default: auto)" in block[-1]
    assert all(len(text) > 70 for text in block[:-1]), block


def test_train_reads_its_arrays_from_data_like_every_subcommand(tmp_path, capsys):
    # --data is --data.train: the run gets as far as the missing arrays, named in one error line.
    missing = tmp_path / "no-arrays"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(missing), "--workdir", str(tmp_path / "run")])
    assert str(exit_info.value.code).startswith("error: ") and "no-arrays" in str(exit_info.value.code)


SUBCOMMANDS = [["generate"], ["split"], ["embed"], ["train"], ["evaluate"], ["score"], ["quantize"], ["calibrate"],
               ["confidence"], ["crossval"], ["study"], ["bench"], ["demo"], ["guidance", "train"],
               ["guidance", "ab"], ["convert", "archive"], ["convert", "persuasionforgood"], ["convert", "casino"]]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_option_says_what_it_does(argv, capsys, monkeypatch):
    """``--help`` is the documentation: an option shown with its default alone is a field without a docstring."""
    import re

    # One column of options, each a flag line and its indented description: on a wider terminal tyro sets groups side
    # by side, and a default in one column can land on the line of another column's option.
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    blocks: list[list[str]] = []
    for line in capsys.readouterr().out.splitlines():
        raw = line.lstrip("│")
        indent, text = len(raw) - len(raw.lstrip(" ")), raw.strip("│ ")
        if indent <= 2 and re.match(r"-{1,2}[a-zA-Z]", text):  # a flag (a border of dashes is not one)
            blocks.append([text])
        elif blocks and text and indent > 2:  # a description line of the option above
            blocks[-1].append(text)
        elif blocks and blocks[-1]:  # a group's border, title or description: no option's text
            blocks.append([])
    bare = []
    for block in filter(None, blocks):
        flag, *same_line = re.split(r"\s{2,}", block[0], maxsplit=1)  # a short option's text shares its flag's line
        described = " ".join([*same_line, *block[1:]]).strip()
        if not described or re.fullmatch(r"\((default[^)]*|required)\)", described):
            bare.append(flag)
    assert len(list(filter(None, blocks))) > 3, blocks  # the parse found the options
    assert not bare, bare
