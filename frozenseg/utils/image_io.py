"""Reading arbitrary image files as 8-bit RGB arrays (demo, SAM proposal tool).

:func:`read_image` accepts what users actually have on disk: 8-bit RGB, grayscale, palette,
RGBA / LA (alpha dropped, as the dataset mappers' ``convert("RGB")`` does), CMYK / YCbCr,
16-bit and 32-bit integer or float grayscale, and 16-bit-per-channel colour PNG/TIFF. Every
conversion that is not a plain 8-bit RGB read is logged once per call at INFO level, so a
user can see why colours look different. EXIF orientation is applied (as in the mappers).

Unreadable input (missing file, empty file, not an image, truncated data) raises one clear
:class:`ImageReadError` (a ``ValueError``) or ``FileNotFoundError`` naming the file.
"""

from __future__ import annotations

import logging
import os
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AnnotationError, UserInputError

__all__ = ["ImageReadError", "check_label_ids", "read_annotation", "read_image", "to_uint8_rgb"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


class ImageReadError(UserInputError, ValueError):
    """An image file exists but cannot be decoded into an RGB image."""


def _scale_to_uint8(arr: np.ndarray, what: str, path: str) -> np.ndarray:
    """Map a >8-bit array to 0..255: integer data by its type's full range, float data by 0..1
    (or min..max when it is outside 0..1)."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype in (np.uint16, np.int16) or (arr.size and arr.max() <= 65535 and arr.min() >= 0):
            logger.info("%s: %s image scaled from 16 bits to 8 bits (value / 257).", path, what)
            return np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        logger.info("%s: %s image with values %g..%g stretched to 0..255.", path, what, lo, hi)
        return _stretch(arr.astype(np.float64), lo, hi)
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            logger.info("%s: floating-point %s image scaled from 0..1 to 0..255.", path, what)
            return np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
        logger.info("%s: floating-point %s image with values %g..%g stretched to 0..255.", path, what, lo, hi)
        return _stretch(np.nan_to_num(arr.astype(np.float64), nan=lo), lo, hi)
    if arr.dtype == np.bool_:
        logger.info("%s: 1-bit %s image mapped to 0/255.", path, what)
        return arr.astype(np.uint8) * 255
    raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype} ({what}).")


def _stretch(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.round((arr - lo) * scale), 0, 255).astype(np.uint8)


def to_uint8_rgb(arr: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of any numeric type to uint8
    (H, W, 3) RGB (channels are assumed to be in RGB order; alpha is dropped)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = _scale_to_uint8(arr, "grayscale", source)
        if source != "<array>":
            logger.info("%s: grayscale image converted to RGB.", source)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageReadError(
            f"{source}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}."
        )
    if arr.shape[2] == 4:
        logger.info("%s: alpha channel dropped (RGBA -> RGB).", source)
        arr = arr[:, :, :3]
    return np.ascontiguousarray(_scale_to_uint8(arr, "colour", source))


def _read_high_bit_depth_colour(path: str) -> np.ndarray | None:
    """16-bit-per-channel colour files, which PIL cannot represent: read with OpenCV if present."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency of the demo
        return None
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.ndim != 3 or arr.dtype == np.uint8:
        return None
    if arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def _is_16bit_colour(path: str, im: Image.Image) -> bool:
    """True for 16-bit-per-channel colour PNG / TIFF files (read from the file header)."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        # IHDR: bit depth at byte 24, colour type at byte 25 (2 = RGB, 6 = RGBA)
        return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        return isinstance(bits, tuple) and len(bits) >= 3 and max(bits) > 8
    return False


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as a uint8 (H, W, 3) RGB array.

    Args:
        path: file path (any format PIL can decode: JPEG, PNG, TIFF, BMP, WebP, GIF, ...).
    Returns:
        C-contiguous, writable uint8 array (H, W, 3), RGB, EXIF orientation applied.
    Raises:
        FileNotFoundError: the path does not exist or is not a file.
        ImageReadError: the file is empty, not an image, truncated, has no pixels, or has more
            pixels than PIL's decompression-bomb limit.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}.")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"Cannot read image {path!r}: the file is empty.")
    try:
        with Image.open(path) as im:
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                logger.info("%s: %d frames; using the first.", path, n_frames)
            im.load()
            mode = im.mode
            high_bit_colour = _is_16bit_colour(path, im)
            im = ImageOps.exif_transpose(im)
            if mode == "RGB":
                arr = np.asarray(im)
            elif mode in ("L", "1", "P", "PA", "LA", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBX"):
                if mode not in ("RGBA", "RGBa", "LA", "La", "PA"):
                    logger.info("%s: %s image converted to RGB.", path, _MODE_NAMES.get(mode, mode))
                else:
                    logger.info("%s: alpha channel dropped (%s -> RGB).", path, mode)
                if mode == "P" and "transparency" in im.info:
                    im = im.convert("RGBA")
                arr = np.asarray(im.convert("RGB"))
            elif mode.startswith("I;16") or mode in ("I", "F"):
                arr = to_uint8_rgb(np.asarray(im), source=f"{path} ({mode})")
            else:
                logger.info("%s: %s image converted to RGB.", path, mode)
                arr = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise ImageReadError(
            f"Cannot read image {path!r}: it has more pixels than the reader accepts ({e}); downscale it "
            "(for example to 4000x3000) and try again."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageReadError):
            raise
        hb = _read_high_bit_depth_colour(path)
        if hb is not None:
            return to_uint8_rgb(hb, source=path)
        raise ImageReadError(
            f"Cannot read image {path!r}: {type(e).__name__}: {e}. Is it a complete image file "
            "(JPEG, PNG, TIFF, BMP, WebP, ...)?"
        ) from e
    if mode in ("RGB", "RGBA") and high_bit_colour:
        # PIL reads 16-bit-per-channel colour as 8-bit RGB by dropping the low byte: use OpenCV's
        # exact 16-bit read and the same /257 scaling as for 16-bit grayscale.
        hb = _read_high_bit_depth_colour(path)
        if hb is not None:
            arr = to_uint8_rgb(hb, source=path)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"Cannot read image {path!r}: decoded to an empty array of shape {arr.shape}.")
    return np.require(arr, dtype=np.uint8, requirements=["C_CONTIGUOUS", "WRITEABLE"])


_MODE_NAMES = {
    "L": "grayscale",
    "1": "1-bit",
    "P": "palette",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "Lab",
    "HSV": "HSV",
    "RGBX": "RGBX",
}


def read_annotation(path: PathLike, expected_size: tuple[int, int] | None = None, rgb: bool = False) -> np.ndarray:
    """The pixels of a ground-truth annotation file (a label map or a panoptic PNG): (H, W) or
    (H, W, C) as stored, or (H, W, 3) with ``rgb``.

    Raises :class:`~frozenseg.utils.errors.AnnotationError` naming the file, for a file that is
    missing, truncated or not an image, and for one whose size differs from ``expected_size``
    (its image's (H, W)).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB") if rgb else im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise AnnotationError(
            f"Annotation {path!r} cannot be read ({type(e).__name__}: {e}); re-create it (the dataset's "
            "prepare script) or leave its image out of the dataset."
        ) from None
    if expected_size is not None and tuple(arr.shape[:2]) != tuple(expected_size):
        raise AnnotationError(
            f"Annotation {path!r} is {arr.shape[0]}x{arr.shape[1]} pixels but its image is "
            f"{expected_size[0]}x{expected_size[1]}; re-create the annotation at the image's size."
        )
    return arr


def check_label_ids(labels: np.ndarray, path: PathLike, num_classes: int, ignore_label: int) -> None:
    """Raise :class:`~frozenseg.utils.errors.AnnotationError` naming the label map ``path`` and
    the offending ids when ``labels`` ((H, W) integer class ids, as read from ``path``) holds a
    value outside ``0..num_classes - 1`` other than ``ignore_label``."""
    values = np.unique(np.asarray(labels))
    bad = [int(v) for v in values if not (0 <= v < num_classes or v == ignore_label)]
    if bad:
        shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise AnnotationError(
            f"Annotation {os.fspath(path)!r} holds the label{'s' if len(bad) > 1 else ''} {shown}, outside the "
            f"class ids 0..{num_classes - 1} and the ignore label {ignore_label} of its dataset; correct the label "
            "map, or add the class to the dataset's class list."
        )
