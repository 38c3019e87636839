"""Argument types the command lines share: argparse reports a value they refuse as a usage error
(the flag named, one sentence, exit status 2) before any work starts. Also the help formatter
that shows each option's default once."""

from __future__ import annotations

import argparse
import re

__all__ = ["int_at_least", "file_size", "memory_size", "run_device", "DefaultsHelpFormatter"]


def int_at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def file_size(text: str) -> str:
    """An argparse type: a size such as ``50mb``, ``1gb`` or ``500kb`` (returned as given, in lower case)."""
    if not re.fullmatch(r"\d+(\.\d+)?\s*(b|kb|mb|gb)", text.strip().lower()):
        raise argparse.ArgumentTypeError(f"expected a size such as 50mb, 1gb or 500kb, got {text!r}")
    return text.strip().lower().replace(" ", "")


_UNITS = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40}


def memory_size(text: str) -> int:
    """An argparse type: an amount of memory such as ``6gb`` or ``512mb``, in bytes (1 kb = 1024 b)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb)", text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected an amount of memory such as 6gb or 512mb, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def run_device(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` that appends ``(default: X)`` only where it informs: not
    when the help already states its default (``"default: $RANK or 0"``), not for a default of
    None (a required option, or one whose default is computed at run time and described in its
    help), and not for on/off flags (``store_true`` / ``store_false``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.default is None
            or action.default is argparse.SUPPRESS
            or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        ):
            return text
        return super()._get_help_string(action)
