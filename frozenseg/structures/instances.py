"""Per-image set of instances with named per-instance fields (Detectron2's ``Instances``)."""

from __future__ import annotations

from typing import Any

import torch


class Instances:
    """Holds fields of equal length N (``pred_masks`` (N, H, W), ``scores`` (N,), ...).

    ``image_size`` is (height, width). Fields are set and read as attributes; indexing with an
    int, slice, bool mask or index tensor returns a new ``Instances`` with every field indexed.
    """

    def __init__(self, image_size: tuple[int, int], **fields: Any):
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: dict[str, Any] = {}
        for k, v in fields.items():
            self.set(k, v)

    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name not in fields:
            raise AttributeError(f"Instances has no field {name!r}; fields: {sorted(fields)}.")
        return fields[name]

    def set(self, name: str, value: Any) -> None:
        n = len(value)
        if self._fields and n != len(self):
            raise ValueError(f"Field {name!r} has length {n}, other fields have {len(self)}.")
        self._fields[name] = value

    def has(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str) -> Any:
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def to(self, device: torch.device | str) -> "Instances":
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v.to(device) if hasattr(v, "to") else v)
        return out

    def __getitem__(self, item) -> "Instances":
        if isinstance(item, int):
            if item >= len(self) or item < -len(self):
                raise IndexError("Instances index out of range.")
            item = slice(item, None, len(self)) if item == -1 else slice(item, item + 1)
        out = Instances(self._image_size)
        for k, v in self._fields.items():
            out.set(k, v[item])
        return out

    def __len__(self) -> int:
        for v in self._fields.values():
            return len(v)
        return 0

    def __repr__(self) -> str:
        return (
            f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, "
            f"image_width={self._image_size[1]}, fields=[{', '.join(self._fields)}])"
        )
