"""Errors caused by the user's input, and how command lines report them.

A user error (a path that does not exist, a config value of the wrong type, a file that is not a
checkpoint, ...) carries one sentence that names the problem and the fix. Command lines print
that sentence alone on stderr and exit with :data:`USER_ERROR_EXIT_CODE` (2, argparse's code for
a bad command line); ``--debug`` or the environment variable ``FROZENSEG_DEBUG=1`` shows the
traceback instead. Any other exception is a bug and keeps its traceback.

:class:`UserInputError` is the base of every user error of the package: the ones defined here
and each module's own (``DatasetNotFoundError``, ``VocabularyError``, ``DatasetDescriptionError``,
``CLIPBackboneError``, ``SAMCheckpointError``, ``SamMaskCacheError``, ``ImageReadError``,
``UnknownConfigKeyError``, the dataset-preparation ``InputError``, ...), each also deriving from
the built-in exception that callers may already catch (``ValueError``, ``FileNotFoundError``,
``KeyError``).
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
    "AnnotationError",
    "USER_ERROR_EXIT_CODE",
    "DEBUG_ENV",
    "LOG_FILE_ONLY",
    "debug_enabled",
    "is_user_error",
    "is_out_of_memory",
    "exit_on_user_error",
    "user_error_sentence",
]

#: Exit status of a command line stopped by a user error (argparse's status for a bad command).
USER_ERROR_EXIT_CODE = 2
#: Environment variable that makes command lines show the traceback of user errors.
DEBUG_ENV = "FROZENSEG_DEBUG"
#: Log-record attribute (``extra={LOG_FILE_ONLY: True}``) of records meant for log files only:
#: the console handler of :func:`frozenseg.engine.env.setup_logger` drops them.
LOG_FILE_ONLY = "frozenseg_file_only"

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


class AnnotationError(UserInputError, ValueError):
    """A ground-truth annotation file cannot be read, or does not fit its image."""


def debug_enabled() -> bool:
    """True when ``FROZENSEG_DEBUG`` is set to a true value (``--debug`` sets it)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_user_error(exc: BaseException) -> bool:
    """True for a :class:`UserInputError` (every one-sentence error of the package derives from it)."""
    return isinstance(exc, UserInputError)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure: ``torch.OutOfMemoryError`` (a device), ``MemoryError``, or
    the ``RuntimeError`` PyTorch's CPU allocator raises ("can't allocate memory")."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def user_error_sentence(exc: BaseException) -> str:
    """The sentence of a user error; one raised in a data-loader worker arrives re-raised with the
    worker's traceback in its message (PyTorch's ``ExceptionWrapper``): its last line is the
    sentence."""
    text = str(exc)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


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
        sentence = user_error_sentence(e)
        log = logging.getLogger("frozenseg")
        if log.handlers:  # for the run's log file; the terminal gets the stderr line below
            log.error("Stopped: %s", sentence, extra={LOG_FILE_ONLY: True})
        prog = prog or os.path.basename(sys.argv[0]) or "frozenseg"
        sys.stderr.write(f"{prog}: error: {sentence}\n")
        sys.stderr.flush()
        raise SystemExit(USER_ERROR_EXIT_CODE) from None
