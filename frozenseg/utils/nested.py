"""Nested mappings (configs, recorded job parameters) as flat dotted keys."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["flatten_dict"]


def flatten_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"A.B.C": value}`` of every leaf of ``d``: nested mappings are descended into, anything
    else is a leaf. ``prefix`` is put before every key."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
