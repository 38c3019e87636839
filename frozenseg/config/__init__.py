"""Configuration: the default tree (every key documented in :mod:`.defaults`), YAML loading with
``_BASE_``, one-sentence errors for unknown keys and wrong types, and ``configurable``
(``from_config``). Not here: what a key does (each component's ``from_config`` reads its keys).
"""

from .config import CfgNode, UnknownConfigKeyError, configurable, get_cfg

__all__ = ["CfgNode", "UnknownConfigKeyError", "configurable", "get_cfg"]
