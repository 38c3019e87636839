"""Configuration: the default tree, YAML loading with ``_BASE_``, and ``configurable``."""

from .config import CfgNode, UnknownConfigKeyError, configurable, get_cfg

__all__ = ["CfgNode", "UnknownConfigKeyError", "configurable", "get_cfg"]
