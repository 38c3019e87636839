"""read_image: every kind of input becomes uint8 (H, W, 3) RGB, or one clear error."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from frozenseg.utils.image_io import ImageReadError, read_image, to_uint8_rgb


def _check(arr, h=12, w=16):
    assert arr.dtype == np.uint8 and arr.shape == (h, w, 3) and arr.flags.c_contiguous and arr.flags.writeable


def test_rgb_jpeg_and_png(tmp_path):
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 30
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    _check(out)
    np.testing.assert_array_equal(out, rgb)  # RGB order, not BGR
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert abs(int(read_image(str(tmp_path / "a.jpg"))[5, 5, 0]) - 200) <= 3


def test_grayscale_rgba_palette(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="frozenseg.utils.image_io")
    gray = (np.arange(12 * 16) % 256).astype(np.uint8).reshape(12, 16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    _check(out)
    assert (out == gray[..., None]).all()
    assert "grayscale" in caplog.text  # the conversion is logged

    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 1] = 120
    rgba[..., 3] = 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    _check(out)
    assert (out == [0, 120, 0]).all() and "alpha" in caplog.text

    idx = (np.arange(12 * 16) % 3).astype(np.uint8).reshape(12, 16)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    _check(out)
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (0, 255, 0) and tuple(out[0, 2]) == (0, 0, 255)


def test_16bit_grayscale_and_colour(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="frozenseg.utils.image_io")
    g16 = np.full((12, 16), 65535, np.uint16)
    g16[0, 0] = 0
    g16[0, 1] = 257 * 100
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    _check(out)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 100 and out[5, 5, 0] == 255
    assert "16 bits" in caplog.text

    c16 = np.zeros((12, 16, 3), np.uint16)
    c16[..., 0] = 65535  # R
    c16[..., 1] = 257 * 50  # G
    cv2.imwrite(str(tmp_path / "c16.png"), c16[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    _check(out)
    assert tuple(out[3, 3]) == (255, 50, 0)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_bytes(b"definitely not an image")
    with pytest.raises(ImageReadError, match="text.jpg"):
        read_image(tmp_path / "text.jpg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 9).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")
    assert issubclass(ImageReadError, ValueError)


def test_to_uint8_rgb_arrays():
    assert to_uint8_rgb(np.zeros((4, 5), np.float32) + 0.5).tolist()[0][0] == [128, 128, 128]
    assert to_uint8_rgb(np.zeros((4, 5, 1), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ImageReadError):
        to_uint8_rgb(np.zeros((4, 5, 2), np.uint8))


def test_an_image_over_the_pixel_limit_is_one_sentence_and_a_batch_goes_on(tmp_path, monkeypatch, caplog):
    """PIL's decompression-bomb guard (here lowered to 100 pixels, so 20x20 is over twice it)
    becomes an ImageReadError naming the file and the fix; the demo skips that image only."""
    from .test_demo import demo_cli
    from ..engine.test_predictor import TINY, tiny_predictor

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match=r"^Cannot read image '.*huge.png': it has more pixels than the reader "
                                             r"accepts \(.*\); downscale it \(for example to 4000x3000\) and try again\.$"):
        read_image(tmp_path / "huge.png")
    rc = demo_cli.main(["--config-file", TINY, "--input", str(tmp_path / "huge.png"), str(tmp_path / "small.png"),
                        "--output", str(tmp_path / "out"), "--vocabulary", "cat"], predictor=tiny_predictor())
    assert rc == 1 and "huge.png: skipped: Cannot read image" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "small_ids.png", "small_overlay.png", "small_segments.json"]
