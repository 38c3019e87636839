"""Dataset and metadata catalogs with Detectron2's protocol.

``DatasetCatalog.register(name, func)`` stores a zero-argument function that returns the dataset
as a list of standard dataset dicts; ``DatasetCatalog.get(name)`` calls it (loading is lazy: the
files are read only then). ``MetadataCatalog.get(name)`` returns (creating on first use) a
:class:`Metadata` object that holds class names, id mappings, file roots and the evaluator type.
"""

from __future__ import annotations

import difflib
import logging
from collections import UserDict
from typing import Any, Callable

from ..utils.errors import UserInputError

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata", "DatasetNotRegisteredError"]

logger = logging.getLogger(__name__)


class DatasetNotRegisteredError(UserInputError, KeyError):
    """A dataset name (in ``DATASETS.TRAIN``/``TEST``, a vocabulary option, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the sentence
        return str(self.args[0])


class _Catalog(UserDict):
    """Name -> entry mapping with Detectron2's catalog helpers; ``str()`` is
    ``"<_title>(registered <_entries>: name, ...)"``."""

    _title = ""
    _entries = ""

    def list(self) -> list[str]:
        """Registered names."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Forget ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"{self._title}(registered {self._entries}: {', '.join(self.keys())})"

    __repr__ = __str__


class _DatasetCatalog(_Catalog):
    """Maps dataset names to functions returning ``list[dict]`` (Detectron2's DatasetCatalog)."""

    _title = "DatasetCatalog"
    _entries = "datasets"

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register ``func`` (no arguments, returns the dataset dicts) under ``name``."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register needs a callable for {name!r}, got {func!r}.")
        if name in self:
            raise KeyError(f"Dataset {name!r} is already registered.")
        self[name] = func

    def require(self, name: str, setting: str = "") -> None:
        """Raise :class:`DatasetNotRegisteredError` (one sentence with the closest registered
        names) unless ``name`` is registered; ``setting`` names where it was given
        (``"DATASETS.TEST"``)."""
        if name in self:
            return
        close = difflib.get_close_matches(name, self.list(), n=3, cutoff=0.3)
        where = f" (in {setting})" if setting else ""
        hint = (f"did you mean {', '.join(close)}?" if close else
                "register it with DatasetCatalog.register or use a built-in name (datasets/README.md).")
        raise DatasetNotRegisteredError(f"Dataset {name!r}{where} is not registered; {hint}")

    def get(self, name: str) -> list[dict]:  # type: ignore[override]
        """Call the registered function of ``name`` and return its dataset dicts."""
        self.require(name)
        return self[name]()


class Metadata:
    """Attribute bag of one dataset's metadata (Detectron2's ``Metadata``).

    Values are set once with ``set(**kwargs)`` or attribute assignment; setting an attribute
    again to a different value raises (use :meth:`set` with ``overwrite=True`` on purpose).
    Reading a missing attribute raises ``AttributeError`` naming the available keys.
    """

    name: str = "N/A"

    def __init__(self, **kwargs: Any):
        super().__setattr__("name", kwargs.pop("name", "N/A"))
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        init = self.__dict__.pop("_lazy_init", None)
        if init is not None:  # fill attributes that need the dataset's own files, then retry
            try:
                init(self)
            except Exception:
                super().__setattr__("_lazy_init", init)  # try again on the next access
                raise
            return getattr(self, key)
        raise AttributeError(
            f"Attribute {key!r} does not exist in the metadata of dataset {self.name!r}. "
            f"Available keys are {sorted(self.as_dict())}."
        )

    def __setattr__(self, key: str, val: Any) -> None:
        try:
            old = object.__getattribute__(self, key)
        except AttributeError:
            super().__setattr__(key, val)
            return
        if not _same(old, val):
            raise AttributeError(
                f"Attribute {key!r} of the metadata of {self.name!r} cannot be set to a "
                f"different value ({old!r} -> {val!r})."
            )

    def set_lazy(self, init: Callable[["Metadata"], None]) -> "Metadata":
        """Register ``init(self)``, run once on the first read of a missing attribute.

        Used for datasets whose class names are read from the dataset's own files (LVIS,
        Pascal Context 459, ADE20K-full), so that registration does not touch the disk.
        """
        super().__setattr__("_lazy_init", init)
        return self

    def as_dict(self) -> dict[str, Any]:
        """All attributes as a plain dict (a shallow copy, without private entries)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def set(self, overwrite: bool = False, **kwargs: Any) -> "Metadata":
        """Set several attributes; returns ``self`` so calls can be chained."""
        for k, v in kwargs.items():
            if overwrite:
                super().__setattr__(k, v)
            else:
                setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """The attribute ``key`` or ``default`` when it is absent."""
        try:
            return getattr(self, key)
        except AttributeError:
            return default

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __repr__(self) -> str:
        return f"Metadata({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. arrays with ambiguous truth values
        return a is b


class _MetadataCatalog(_Catalog):
    """Maps dataset names to :class:`Metadata` (Detectron2's MetadataCatalog)."""

    _title = "MetadataCatalog"
    _entries = "metadata"

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """The metadata of ``name``, created empty on first access."""
        if not name:
            raise ValueError("MetadataCatalog.get needs a non-empty dataset name.")
        r = self.data.get(name)
        if r is None:
            r = self[name] = Metadata(name=name)
        return r


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
