"""``tools/*.py --help``: every tool prints its help and exits 0, and no option's help states its
default twice (a hand-written "default: ..." plus argparse's appended "(default: ...)")."""

from __future__ import annotations

import argparse
import importlib.util
import re

import pytest

from ..conftest import REPO_ROOT

TOOLS = sorted(p.name for p in (REPO_ROOT / "tools").glob("*.py"))
#: One statement of a default: "(default ..." or "default: ...".
_DEFAULT = re.compile(r"\(default\b|\bdefault:", re.I)


def default_statements(text: str) -> int:
    return len(_DEFAULT.findall(text))


def test_default_statements():
    assert default_statements("CLIP cosine a match needs (default: 0.2)") == 1
    assert default_statements("default: $RANK or 0 (default: None)") == 2
    assert default_statements("(default: the most similar noun) (default: False)") == 2
    assert default_statements("a registered dataset, 'default', or a number (default: default)") == 1
    assert default_statements("SAM checkpoint (default pretrained_checkpoint/<official file>)") == 1


def _help_of(tool: str, monkeypatch, capsys) -> tuple[str, list[argparse.ArgumentParser]]:
    """The tool's ``--help`` output and the parser(s) that printed it."""
    spec = importlib.util.spec_from_file_location(f"help_{tool[:-3]}", REPO_ROOT / "tools" / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    printed: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.print_help

    def print_help(self, file=None):
        printed.append(self)
        original(self, file)

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", print_help)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out, printed


@pytest.mark.parametrize("tool", TOOLS)
def test_help_states_each_default_once(tool, monkeypatch, capsys):
    out, parsers = _help_of(tool, monkeypatch, capsys)
    assert out.startswith("usage: ") and len(parsers) == 1, out[:200]
    parser = parsers[0]
    formatter = parser._get_formatter()
    twice = {}
    for action in parser._actions:
        if not action.help or action.help is argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action)  # the option's help as printed, unwrapped
        if default_statements(text) > 1:
            twice["/".join(action.option_strings) or action.dest] = text
    assert not twice, f"{tool}: options whose help states the default twice: {twice}"
