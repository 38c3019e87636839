"""The demo CLI end to end on generated images with the tiny random model (outputs: overlay, id
PNG, segments JSON; a video; usage errors)."""

from __future__ import annotations

import importlib.util
import json
import os
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from ..conftest import REPO_ROOT
from ..engine.test_predictor import FAST_OPTS, TINY, scene, tiny_predictor


def _load_demo_cli():
    """demo/demo.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("frozenseg_demo_cli", REPO_ROOT / "demo" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo_cli = _load_demo_cli()

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.mark.slow
def test_demo_cli_writes_all_outputs(predictor, tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(scene()).save(images / "scene.png")
    Image.fromarray(scene()[:, :, 1]).save(images / "gray.png")  # grayscale input
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    vocab = "cat,kitten; dog,puppy ;grass"
    rc = demo_cli.main(
        ["--config-file", TINY, "--input", str(images), "--output", str(out), "--vocabulary", vocab,
         "--opts", *FAST_OPTS],
        predictor=predictor,
    )
    assert rc == 1  # the broken file is reported and skipped, the others are written
    logged = caplog.text  # the per-image summary: segments found and time
    assert "broken.jpg: skipped" in logged
    assert re.search(r"scene\.png: \d+ segments?.* in \d+\.\d\d s -> ", logged)
    for stem in ("scene", "gray"):
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert overlay.shape == (48, 64, 3)
        ids = cv2.imread(str(out / f"{stem}_ids.png"), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (48, 64)
        meta = json.loads((out / f"{stem}_segments.json").read_text())
        assert meta["task"] == "panoptic" and meta["classes"] == ["cat,kitten", "dog,puppy", "grass"]
        assert {s["id"] for s in meta["segments"]} == set(np.unique(ids).tolist()) - {0}
    assert not (out / "broken_overlay.png").exists()

    # semantic, single input written to a file name; legend panel; class ids with 255 = none
    rc = demo_cli.main(
        ["--config-file", TINY, "--input", str(images / "scene.png"), "--output", str(tmp_path / "sem.png"),
         "--task", "semantic", "--vocabulary", "sky;grass;ball,sphere"],
        predictor=predictor,
    )
    assert rc == 0
    overlay = np.asarray(Image.open(tmp_path / "sem.png"))
    assert overlay.shape[0] == 48 and overlay.shape[1] > 64
    ids = cv2.imread(str(tmp_path / "sem_ids.png"), cv2.IMREAD_UNCHANGED)
    meta = json.loads((tmp_path / "sem_segments.json").read_text())
    assert meta["none_value"] == 255 and set(np.unique(ids).tolist()) <= {0, 1, 2, 255}
    assert meta["segments"] and sum(s["area"] for s in meta["segments"]) == 48 * 64
    for s in meta["segments"]:
        assert s["class"] in ("sky", "grass", "ball") and 0 <= s["score"] <= 1
        x, y, w, h = s["bbox"]
        assert 0 <= x < x + w <= 64 and 0 <= y < y + h <= 48


@pytest.mark.slow
def test_demo_video_and_usage_errors(predictor, tmp_path, monkeypatch):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened()
    for _ in range(2):
        writer.write(scene()[:, :, ::-1])
    writer.release()
    rc = demo_cli.main(
        ["--config-file", TINY, "--video-input", str(video), "--output", str(tmp_path / "v"),
         "--vocabulary", "cat;grass", "--task", "semantic"],
        predictor=predictor,
    )
    assert rc == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip_overlay.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()

    monkeypatch.setattr(demo_cli, "gui_available", lambda: False)
    assert demo_cli.main(["--config-file", TINY, "--webcam", "--vocabulary", "cat"], predictor=predictor) == 2
    assert demo_cli.main(["--config-file", TINY, "--input", str(tmp_path / "none*.png"), "--output",
                          str(tmp_path)], predictor=predictor) == 2
    assert demo_cli.main(["--config-file", TINY, "--input", str(video), "--vocabulary", "a;;b",
                          "--output", str(tmp_path)], predictor=predictor) == 2
    for bad in ("5", "nan"):
        with pytest.raises(SystemExit) as info:  # argparse: usage line and one sentence, exit status 2
            demo_cli.main(["--config-file", TINY, "--input", str(video), "--confidence-threshold", bad])
        assert info.value.code == 2


def test_demo_never_overwrites_an_input(predictor, tmp_path, caplog):
    """An ``--output`` that would write over an input (the same file, a results folder holding an
    input named like a result, a video written onto itself) is refused in one sentence before any
    work: exit status 2, every input byte-identical, nothing written."""
    image = tmp_path / "photo.png"
    Image.fromarray(scene()).save(image)
    named_like_a_result = tmp_path / "photo_overlay.png"
    Image.fromarray(scene()).save(named_like_a_result)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not decoded: refused before")
    before = {p: p.read_bytes() for p in (image, named_like_a_result, video)}
    cases = [
        (["--input", str(image), "--output", str(image)], image),
        (["--input", str(tmp_path / "photo.png"), str(named_like_a_result), "--output", str(tmp_path)],
         named_like_a_result),
        (["--input", str(tmp_path), "--output", str(tmp_path / "." / "")], named_like_a_result),
        (["--video-input", str(video), "--output", str(video)], video),
    ]
    for args, clashing in cases:
        caplog.clear()
        rc = demo_cli.main(["--config-file", TINY, *args, "--vocabulary", "cat"], predictor=predictor)
        assert rc == 2
        assert f"would overwrite the input {clashing}; write the results to another folder or file." in caplog.text
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "photo.png", "photo_overlay.png"]


@pytest.mark.slow
def test_demo_goes_on_after_an_image_too_elongated_to_segment(tmp_path):
    """demo/demo.py as a command: a 20000x30 image (refused: one line, no files), a 20000x50 one
    (segmented within the pixel budget) and an ordinary one after them (segmented); exit status
    1 for the refused image, no traceback."""
    import os
    import subprocess
    import sys

    from ..engine.test_predictor import _strip

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_strip(30, 20000)).save(images / "a_strip30.png")
    Image.fromarray(_strip(50, 20000)).save(images / "b_strip50.png")
    Image.fromarray(scene()).save(images / "c_scene.png")
    out = tmp_path / "out"
    opts = ["SEED", "0", "MODEL.SAM_IMAGE_SIZE", "256", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "8000"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "demo" / "demo.py"), "--config-file", TINY, "--input", str(images),
         "--output", str(out), "--vocabulary", "sky;grass", "--task", "semantic", "--opts", *opts],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    refused = [ln for ln in text.splitlines() if "a_strip30.png: skipped: " in ln]
    assert len(refused) == 1 and refused[0].endswith(
        f"Image {str(images / 'a_strip30.png')!r} (20000x30 pixels) is too elongated to segment: a 32 px short side needs more than "
        "the 512000 input pixels allowed (INPUT.MIN_SIZE_TEST x INPUT.MAX_SIZE_TEST); crop it into pieces "
        "whose long side is at most 500 times the short side, or raise INPUT.MAX_SIZE_TEST to 10667.")
    assert "2 images done, 1 failed" in text
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem}_{kind}" for stem in ("b_strip50", "c_scene")
        for kind in ("ids.png", "overlay.png", "segments.json")
    ]
    assert json.loads((out / "b_strip50_segments.json").read_text())["width"] == 20000
    assert np.asarray(Image.open(out / "c_scene_overlay.png")).shape[0] == 48


def test_demo_refuses_a_vocabulary_file_entry_it_would_ignore(predictor, tmp_path, caplog):
    Image.fromarray(scene()).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    rc = demo_cli.main(
        ["--config-file", TINY, "--input", str(tmp_path / "scene.png"), "--output", str(out),
         "--opts", "DATASETS.VOCABULARY_FILES", "('synthetic_shapes_val_panoptc:v.txt',)"],
        predictor=predictor,
    )
    assert rc == 2 and not out.exists()
    assert ("DATASETS.VOCABULARY_FILES entry 'synthetic_shapes_val_panoptc:v.txt' names "
            "'synthetic_shapes_val_panoptc', which is not a registered dataset; valid names: ") in caplog.text


def test_recursive_globs_visit_each_image_once_through_link_loops(tmp_path):
    """``dir/**/*.png`` over folders that link back to their parents (one loop, then two) lists
    each image once and returns (symbolic links to folders are not followed by ``**``); an image
    reached through two paths (a file link) counts once."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    for path in (root / "top.png", root / "a" / "mid.png", root / "a" / "b" / "deep.png"):
        Image.fromarray(scene()).save(path)
    (root / "a" / "b" / "up").symlink_to(root, target_is_directory=True)
    files, unmatched = demo_cli.expand_inputs([str(root / "**" / "*.png")])
    assert sorted(os.path.basename(f) for f in files) == ["deep.png", "mid.png", "top.png"] and unmatched == []
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    (root / "same.png").symlink_to(root / "top.png")
    files, _ = demo_cli.expand_inputs([str(root / "**" / "*.png"), str(root / "top.png")])
    assert sorted(os.path.realpath(f) for f in files) == sorted(
        os.path.realpath(root / p) for p in ("top.png", "a/mid.png", "a/b/deep.png"))


def test_an_allocation_failure_skips_that_image_and_the_batch_goes_on(predictor, tmp_path, monkeypatch, caplog):
    """PyTorch's CPU allocator fails with a RuntimeError: that image is reported in one line
    (nothing written for it) and the next image is segmented."""
    for name in ("a_big.png", "b_small.png"):
        Image.fromarray(scene()).save(tmp_path / name)
    real_call = type(predictor).__call__

    def call(self, image):
        if str(image).endswith("a_big.png"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)")
        return real_call(self, image)

    monkeypatch.setattr(type(predictor), "__call__", call)
    out = tmp_path / "out"
    with caplog.at_level("ERROR"):
        done, failed = demo_cli.run_images(predictor, [str(tmp_path / "a_big.png"), str(tmp_path / "b_small.png")],
                                           str(out))
    assert (done, failed) == (1, 1)
    assert any(r.getMessage().endswith("a_big.png: skipped: out of memory (try a smaller image)") for r in caplog.records)
    assert sorted(p.name for p in out.iterdir()) == ["b_small_ids.png", "b_small_overlay.png", "b_small_segments.json"]
