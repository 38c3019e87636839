"""demo/demo.py with OVSeg configs (the tiny random OVSeg): semantic output by default, class
strings verbatim, one sentence for other tasks, and the release's demo mode as a flag equal to
the release's demo config."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from frozenseg import get_cfg
from frozenseg.modeling.build import meta_arch_class

from ..conftest import REPO_ROOT
from ..engine.test_ovseg_predictor import OVSEG_TINY
from ..engine.test_predictor import TINY, scene
from .test_demo import demo_cli

# One intra-op thread for this module's tiny models (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(scene()).save(path)
    return path


@pytest.mark.slow
def test_ovseg_demo_writes_semantic_outputs_with_verbatim_classes(image, tmp_path):
    out = tmp_path / "out"
    rc = demo_cli.main(["--config-file", OVSEG_TINY, "--input", str(image), "--output", str(out),
                        "--vocabulary", "cat,kitten;dog;grass", "--opts", "SEED", "0"])
    assert rc == 0
    meta = json.loads((out / "scene_segments.json").read_text())
    assert meta["task"] == "semantic" and meta["classes"] == ["cat,kitten", "dog", "grass"]
    assert {s["class"] for s in meta["segments"]} <= {"cat,kitten", "dog", "grass"}
    ids = cv2.imread(str(out / "scene_ids.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(ids).tolist()) <= {0, 1, 2}  # every pixel labelled outside demo mode
    assert sum(s["area"] for s in meta["segments"]) == 48 * 64


@pytest.mark.slow
def test_ovseg_demo_mode_flag_and_usage_errors(image, tmp_path, caplog):
    out = tmp_path / "out"
    rc = demo_cli.main(["--config-file", OVSEG_TINY, "--input", str(image), "--output", str(out),
                        "--vocabulary", "cat, kitten;dog;grass", "--ovseg-demo-mode", "--opts", "SEED", "0"])
    assert rc == 0
    meta = json.loads((out / "scene_segments.json").read_text())
    assert meta["classes"] == ["cat, kitten", "dog", "grass"]
    ids = cv2.imread(str(out / "scene_ids.png"), cv2.IMREAD_UNCHANGED)
    assert sum(s["area"] for s in meta["segments"]) == int((ids != 255).sum())

    caplog.clear()
    rc = demo_cli.main(["--config-file", OVSEG_TINY, "--input", str(image), "--output", str(out),
                        "--vocabulary", "cat", "--task", "panoptic"])
    assert rc == 2
    assert ("OVSeg does not do panoptic segmentation (it gives semantic output only); use --task semantic."
            in caplog.text)
    rc = demo_cli.main(["--config-file", TINY, "--input", str(image), "--output", str(out),
                        "--vocabulary", "cat", "--ovseg-demo-mode"])
    assert rc == 2
    assert f"--ovseg-demo-mode needs an OVSeg config, but {TINY} builds FrozenSeg" in caplog.text


def test_demo_mode_flag_is_the_release_demo_config():
    """``--ovseg-demo-mode`` applies exactly the settings of configs/ovseg/ovseg_swinB_vitL_demo.yaml
    over its base config; both build OVSegDEMO, whose vocabulary is literal."""
    base = get_cfg()
    base.merge_from_file(str(REPO_ROOT / "configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml"))
    base.merge_from_list(list(meta_arch_class(base).demo_overrides))
    release = get_cfg()
    release.merge_from_file(str(REPO_ROOT / "configs/ovseg/ovseg_swinB_vitL_demo.yaml"))
    assert base.MODEL == release.MODEL
    arch = meta_arch_class(release)
    assert arch.__name__ == "OVSegDEMO" and arch.literal_vocabulary
