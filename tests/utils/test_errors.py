"""frozenseg.utils.errors: what counts as a user error and how a command line reports it."""

from __future__ import annotations

import importlib

import pytest

from frozenseg.utils import errors
from frozenseg.utils.errors import (
    USER_ERROR_EXIT_CODE,
    CheckpointError,
    exit_on_user_error,
    is_user_error,
)


#: every module's one-sentence error, and the built-in exception its callers may catch
PACKAGE_USER_ERRORS = [
    ("frozenseg.data.loaders", "DatasetNotFoundError", FileNotFoundError),
    ("frozenseg.data.vocabulary", "VocabularyError", ValueError),
    ("frozenseg.data.custom", "DatasetDescriptionError", ValueError),
    ("frozenseg.data.sam_mask_cache", "SamMaskCacheError", ValueError),
    ("frozenseg.data.prepare.common", "InputError", RuntimeError),
    ("frozenseg.modeling.backbone.clip_weights", "CLIPBackboneError", Exception),
    ("frozenseg.modeling.backbone.clip_text", "UnsupportedTextTowerError", RuntimeError),
    ("frozenseg.modeling.sam.checkpoint", "SAMCheckpointError", RuntimeError),
    ("frozenseg.utils.image_io", "ImageReadError", ValueError),
    ("frozenseg.config.config", "UnknownConfigKeyError", KeyError),
]


@pytest.mark.parametrize("module_name,class_name,builtin", PACKAGE_USER_ERRORS)
def test_package_user_errors_are_recognised(module_name, class_name, builtin):
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, builtin)
    err = cls("Some file is wrong; fix it.")
    assert is_user_error(err)
    assert str(err) == "Some file is wrong; fix it."


def test_bugs_are_not_user_errors():
    from frozenseg.config import UnknownConfigKeyError

    assert is_user_error(UnknownConfigKeyError("k"))
    assert not is_user_error(ValueError("x")) and not is_user_error(KeyError(101))


def test_user_error_becomes_one_line_and_exit_status_2(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as info:
        with exit_on_user_error("prog"):
            raise CheckpointError("Checkpoint 'x.pth' is truncated.")
    assert info.value.code == USER_ERROR_EXIT_CODE == 2
    assert capsys.readouterr().err == "prog: error: Checkpoint 'x.pth' is truncated.\n"


def test_debug_and_bugs_keep_the_exception(capsys, monkeypatch):
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(CheckpointError):
        with exit_on_user_error("prog"):
            raise CheckpointError("x")
    monkeypatch.setenv(errors.DEBUG_ENV, "0")
    with pytest.raises(ZeroDivisionError):
        with exit_on_user_error("prog"):
            raise ZeroDivisionError()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: __import__("frozenseg.data.build", fromlist=["x"]).micro_batch_size(5, 2, 1), "IMS_PER_BATCH"),
        (lambda: __import__("frozenseg.data.build", fromlist=["x"]).micro_batch_size(4, 1, 0), "GRAD_ACCUM_STEPS"),
    ],
)
def test_config_value_errors_are_user_errors(call, match):
    """A wrong config value ends in one sentence on the command line, and stays a ValueError."""
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert is_user_error(e.value)
