"""Errors caused by the user's input, and how command lines report them.

A user error (a path that does not exist, a config value of the wrong type, a file that is not a
checkpoint, ...) carries one sentence that names the problem and the fix. Command lines print
that sentence alone on stderr and exit with :data:`USER_ERROR_EXIT_CODE` (2, argparse's code for
a bad command line); ``--debug`` or the environment variable ``FROZENSEG_DEBUG=1`` shows the
traceback instead. Any other exception is a bug and keeps its traceback.

:class:`UserInputError` is the base of the user errors defined here; :func:`is_user_error` also
recognises the one-sentence errors that other modules of the package define with their own
bases (the table :data:`OTHER_USER_ERRORS`), so this is the one place that decides what a user
error is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

__all__ = [
    "UserInputError",
    "ConfigFileNotFoundError",
    "ConfigValueError",
    "CheckpointNotFoundError",
    "CheckpointError",
    "OTHER_USER_ERRORS",
    "USER_ERROR_EXIT_CODE",
    "DEBUG_ENV",
    "debug_enabled",
    "is_user_error",
    "exit_on_user_error",
]

#: Exit status of a command line stopped by a user error (argparse's status for a bad command).
USER_ERROR_EXIT_CODE = 2
#: Environment variable that makes command lines show the traceback of user errors.
DEBUG_ENV = "FROZENSEG_DEBUG"

#: ``(module, class name)`` of the package's one-sentence errors with a base of their own; a
#: class counts once its module is imported (an exception of it cannot exist before that).
OTHER_USER_ERRORS = (
    ("frozenseg.data.loaders", "DatasetNotFoundError"),
    ("frozenseg.data.vocabulary", "VocabularyError"),
    ("frozenseg.modeling.backbone.clip", "CLIPBackboneError"),
    ("frozenseg.utils.image_io", "ImageReadError"),
    ("frozenseg.utils.sam_mask_cache", "SamMaskCacheError"),
)


class UserInputError(Exception):
    """An error caused by the user's input; its message is one sentence naming the fix."""


class ConfigFileNotFoundError(UserInputError, FileNotFoundError):
    """A config file (``--config-file`` or a ``_BASE_`` it names) does not exist."""

    def __str__(self) -> str:  # FileNotFoundError would format (errno, strerror)
        return str(self.args[0])


class ConfigValueError(UserInputError, ValueError):
    """A config value has the wrong type or an invalid value."""


class CheckpointNotFoundError(UserInputError, FileNotFoundError):
    """A checkpoint file does not exist."""

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointError(UserInputError, ValueError):
    """A checkpoint file cannot be read, is truncated, or does not fit the model."""


def debug_enabled() -> bool:
    """True when ``FROZENSEG_DEBUG`` is set to a true value (``--debug`` sets it)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_user_error(exc: BaseException) -> bool:
    """True for a :class:`UserInputError` or one of :data:`OTHER_USER_ERRORS`."""
    if isinstance(exc, UserInputError):
        return True
    for module_name, class_name in OTHER_USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return True
    return False


@contextlib.contextmanager
def exit_on_user_error(prog: str | None = None) -> Iterator[None]:
    """Turn a user error raised inside the block into ``prog: error: <sentence>`` on stderr and
    ``SystemExit(USER_ERROR_EXIT_CODE)``; other exceptions, and every exception when
    :func:`debug_enabled`, propagate unchanged (with their traceback).

    When the ``frozenseg`` logger has handlers (a run's ``log.txt``), the sentence is logged
    there too, so the log of a failed run says why it stopped."""
    try:
        yield
    except Exception as e:
        if not is_user_error(e) or debug_enabled():
            raise
        log = logging.getLogger("frozenseg")
        if log.handlers:
            log.error("Stopped: %s", e)
        prog = prog or os.path.basename(sys.argv[0]) or "frozenseg"
        sys.stderr.write(f"{prog}: error: {e}\n")
        sys.stderr.flush()
        raise SystemExit(USER_ERROR_EXIT_CODE) from None
