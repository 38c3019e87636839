"""Configuration nodes: fvcore's yacs-based CfgNode with Detectron2's conventions.

``_BASE_`` inheritance (relative to the including file) comes from fvcore. This module adds
one-sentence errors for unknown keys, missing config files and values of the wrong type, the
``configurable`` pattern (a class or function declares a ``from_config(cfg, ...)`` that turns a
config into keyword arguments) and per-model keys.

Per-model keys. :mod:`.defaults` holds the keys every model shares; each model adds its own with
an ``add_*_config(cfg)`` function (Mask2Former's pattern), its ``SegmentationModel.add_config``.
A config holds the shared keys plus the keys of the model its ``MODEL.META_ARCHITECTURE``
names: merging a file or an override that names another model first swaps the previous model's
keys for that model's (shared keys keep their values), so one ``train_net.py`` serves every
model and a key means one thing. Which function adds a model's keys is looked up through
:func:`set_model_config_resolver` (installed by the ``frozenseg`` package, which knows the model
registry).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from typing import Any, Callable

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode

from ..utils.errors import ConfigFileNotFoundError, ConfigValueError, UserInputError
from ..utils.nested import flatten_dict

__all__ = ["CfgNode", "configurable", "set_model_config_resolver", "set_shared_defaults", "UnknownConfigKeyError"]

#: ``MODEL.META_ARCHITECTURE`` name -> the function adding that model's keys, or None for a name
#: no model is registered under; see :func:`set_model_config_resolver`.
_MODEL_CONFIG_RESOLVER: Callable[[str], Callable[["CfgNode"], None] | None] | None = None
#: Attribute (outside the key tree) naming the function whose keys a config holds.
_ADDITIONS_ATTR = "_model_config_additions"
#: The keys every model shares, with their defaults (set by :mod:`.defaults`).
_SHARED_DEFAULTS: "CfgNode | None" = None
#: The config files being loaded, outermost first (to find a ``_BASE_`` cycle).
_LOADING: list[str] = []


def set_shared_defaults(cfg: "CfgNode") -> None:
    """Record the shared keys (:mod:`.defaults` calls it once): a config that switches models
    keeps these and swaps the rest."""
    global _SHARED_DEFAULTS
    _SHARED_DEFAULTS = cfg


def set_model_config_resolver(resolver: Callable[[str], Callable[["CfgNode"], None] | None]) -> None:
    """Install the lookup from a ``MODEL.META_ARCHITECTURE`` name to the function that adds that
    model's config keys (called by the ``frozenseg`` package at import)."""
    global _MODEL_CONFIG_RESOLVER
    _MODEL_CONFIG_RESOLVER = resolver

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


def _set_leaf(node: "_FvCfgNode", key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = value


class CfgNode(_FvCfgNode):
    """A yacs/fvcore CfgNode whose merges name unknown keys with a suggestion."""

    @property
    def model_config_additions(self) -> Callable[["CfgNode"], None] | None:
        """The function whose model keys this config holds (None: shared keys only)."""
        return self.__dict__.get(_ADDITIONS_ATTR)

    def select_model(self, meta_architecture: str) -> None:
        """Hold the keys of the model ``meta_architecture`` names (see the module docstring):
        nothing changes when they are already there; otherwise the keys of the previous model go,
        the new model's come with their defaults, and the shared keys keep their values.
        ``MODEL.META_ARCHITECTURE`` itself is not changed. A name no model is registered under
        keeps the keys as they are (building such a config fails in one sentence)."""
        if _MODEL_CONFIG_RESOLVER is None or _SHARED_DEFAULTS is None:
            return
        add = _MODEL_CONFIG_RESOLVER(meta_architecture)
        if add is None or add is self.model_config_additions:
            return
        if self.is_frozen():
            raise ConfigValueError(
                f"The config is frozen; MODEL.META_ARCHITECTURE {meta_architecture!r} needs other model keys: "
                "select the model before freezing the config."
            )
        shared = _SHARED_DEFAULTS
        previous = self.model_config_additions
        old_model_keys: set[str] = set()
        if previous is not None:
            with_previous = shared.clone()
            previous(with_previous)
            old_model_keys = set(flatten_dict(with_previous)) - set(flatten_dict(shared))
        fresh = shared.clone()
        add(fresh)
        kept = {k: v for k, v in flatten_dict(self).items() if k not in old_model_keys}
        for key, value in kept.items():
            try:
                _set_leaf(fresh, key, value)
            except KeyError:  # a key of the previous model that this one does not have
                continue
        dict.clear(self)
        for k, v in fresh.items():
            dict.__setitem__(self, k, v)
        self.__dict__[_ADDITIONS_ATTR] = add

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False):
        """fvcore's loading of a YAML file and its ``_BASE_`` files, refusing a ``_BASE_`` chain
        that comes back to a file it already includes (one sentence naming the chain)."""
        key = os.path.realpath(filename)
        if key in _LOADING:
            chain = " -> ".join([*(os.path.basename(f) for f in _LOADING), os.path.basename(key)])
            raise ConfigValueError(f"Config files include each other through _BASE_ ({chain}); remove one _BASE_.")
        _LOADING.append(key)
        try:
            return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)
        finally:
            _LOADING.pop()

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = True) -> None:
        """Merge a YAML file (with ``_BASE_`` inheritance) into this config, after selecting the
        model its ``MODEL.META_ARCHITECTURE`` names (:meth:`select_model`)."""
        source = f"config file {cfg_filename!r}"
        if not os.path.isfile(cfg_filename):
            raise ConfigFileNotFoundError(
                f"Config file {cfg_filename!r} does not exist; give --config-file the path of a "
                ".yaml file, e.g. configs/synthetic/frozenseg_tiny_shapes.yaml."
            )
        try:
            loaded = self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe)
            model = loaded.get("MODEL") if isinstance(loaded, dict) else None
            if isinstance(model, dict) and model.get("META_ARCHITECTURE"):
                self.select_model(str(model["META_ARCHITECTURE"]))
            self.merge_from_other_cfg(type(self)(loaded))
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise ConfigValueError(
                f"Config file {cfg_filename!r} (or a file it includes) is not valid YAML{line}: "
                f"{getattr(e, 'problem', None) or str(e).splitlines()[0]}; fix the file."
            ) from None
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
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            if key == "MODEL.META_ARCHITECTURE":
                self.select_model(str(self._decode_cfg_value(value)))
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
