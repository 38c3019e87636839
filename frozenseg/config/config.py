"""Configuration nodes: fvcore's yacs-based CfgNode with Detectron2's conventions.

``_BASE_`` inheritance (relative to the including file) comes from fvcore. This module adds
one-sentence errors for unknown keys, missing config files and values of the wrong type, and the
``configurable`` pattern: a class or function declares a ``from_config(cfg, ...)`` that turns a
config into keyword arguments.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from typing import Any, Callable

from fvcore.common.config import CfgNode as _FvCfgNode

from ..utils.errors import ConfigFileNotFoundError, ConfigValueError, UserInputError

__all__ = ["CfgNode", "get_cfg", "configurable", "UnknownConfigKeyError"]

#: How a config value's expected type is named in a type-mismatch message.
_TYPE_NAMES = {
    bool: "True or False",
    int: "an integer",
    float: "a number with a decimal point (e.g. 1.0)",
    str: "a string",
    tuple: "a list such as (1, 2)",
    list: "a list such as [1, 2]",
}
_TYPE_MISMATCH = re.compile(r"^Type mismatch .* for config key: (?P<key>\S+)$", re.S)


class UnknownConfigKeyError(UserInputError, KeyError):
    """A config file or command-line override names a key that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def _all_keys(node: "_FvCfgNode", prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, _FvCfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


class CfgNode(_FvCfgNode):
    """A yacs/fvcore CfgNode whose merges name unknown keys with a suggestion."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = True) -> None:
        """Merge a YAML file (with ``_BASE_`` inheritance) into this config."""
        source = f"config file {cfg_filename!r}"
        if not os.path.isfile(cfg_filename):
            raise ConfigFileNotFoundError(
                f"Config file {cfg_filename!r} does not exist; give --config-file the path of a "
                ".yaml file, e.g. configs/synthetic/frozenseg_tiny_shapes.yaml."
            )
        try:
            super().merge_from_file(cfg_filename, allow_unsafe=allow_unsafe)
        except FileNotFoundError as e:  # a _BASE_ file
            raise ConfigFileNotFoundError(
                f"Config file {e.filename or cfg_filename!r}, named by _BASE_ in {cfg_filename!r} "
                "(or in a file it includes), does not exist; fix the _BASE_ path (it is relative "
                "to the including file)."
            ) from None
        except KeyError as e:
            if "Non-existent" not in str(e):
                raise
            raise self._unknown_key_error(e, source) from None
        except ValueError as e:
            raise self._type_mismatch_error(e, source) from None

    def merge_from_list(self, cfg_list: list) -> None:
        """Merge ``["KEY", "VALUE", ...]`` overrides (values parsed as YAML literals)."""
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Overrides must come as KEY VALUE pairs; got an odd number of items: {cfg_list}."
            )
        source = "command-line overrides"
        try:
            super().merge_from_list(cfg_list)
        except (KeyError, AssertionError) as e:  # yacs reports unknown override keys by assert
            if "Non-existent" not in str(e):
                raise
            raise self._unknown_key_error(e, source) from None
        except ValueError as e:
            given = {str(k): self._decode_cfg_value(v) for k, v in zip(cfg_list[0::2], cfg_list[1::2])}
            raise self._type_mismatch_error(e, source, given) from None

    def _unknown_key_error(self, err: Exception, source: str) -> UnknownConfigKeyError:
        msg = str(err.args[0]) if err.args else str(err)
        key = msg.split(":", 1)[1].strip() if "Non-existent" in msg else msg
        close = difflib.get_close_matches(key, _all_keys(self), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return UnknownConfigKeyError(
            f"Unknown config key {key!r} in {source}: it is not in frozenseg's defaults "
            f"(frozenseg/config/defaults.py).{hint}"
        )

    def _type_mismatch_error(self, err: ValueError, source: str, given: dict | None = None) -> Exception:
        """yacs' "Type mismatch (...) for config key: K" as ``K expects <type>, got <value>``;
        any other ValueError is returned unchanged (to be re-raised)."""
        match = _TYPE_MISMATCH.match(str(err))
        if match is None:
            return err
        key = match["key"]
        expected: Any = self
        for part in key.split("."):
            expected = expected[part]
        value = repr(given[key]) if given and key in given else "a value of another type"
        return ConfigValueError(
            f"{key} expects {_TYPE_NAMES.get(type(expected), type(expected).__name__)}, got {value} "
            f"in {source} (currently {expected!r})."
        )


def get_cfg() -> CfgNode:
    """Return a fresh copy of the full default configuration tree."""
    from .defaults import _C

    return _C.clone()


def configurable(init_func: Callable | None = None, *, from_config: Callable | None = None):
    """Detectron2-style decorator: allow ``Cls(cfg, **overrides)`` or ``Cls(**kwargs)``.

    On a class ``__init__``, the class must define ``from_config(cls, cfg, ...)`` returning the
    constructor's keyword arguments. On a function, pass ``from_config=`` explicitly.
    """

    def _is_cfg_call(args, kwargs) -> bool:
        return (len(args) > 0 and isinstance(args[0], _FvCfgNode)) or isinstance(
            kwargs.get("cfg"), _FvCfgNode
        )

    def _call_from_config(fn: Callable, args, kwargs) -> dict[str, Any]:
        sig = inspect.signature(fn)
        bound_names = list(sig.parameters)
        explicit = {}
        if args:
            explicit[bound_names[0]] = args[0]
            for name, value in zip(bound_names[1:], args[1:]):
                explicit[name] = value
        extra = {k: v for k, v in kwargs.items() if k not in sig.parameters}
        explicit.update({k: v for k, v in kwargs.items() if k in sig.parameters})
        ret = fn(**explicit)
        ret.update(extra)
        return ret

    if init_func is not None:

        @functools.wraps(init_func)
        def wrapped_init(self, *args, **kwargs):
            if _is_cfg_call(args, kwargs):
                kw = _call_from_config(type(self).from_config, args, kwargs)
                init_func(self, **kw)
            else:
                init_func(self, *args, **kwargs)

        return wrapped_init

    def decorator(func: Callable):
        @functools.wraps(func)
        def wrapped(*args, **kwargs):
            if _is_cfg_call(args, kwargs):
                return func(**_call_from_config(from_config, args, kwargs))
            return func(*args, **kwargs)

        wrapped.from_config = from_config
        return wrapped

    return decorator
