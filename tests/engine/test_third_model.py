"""A third model, defined only in this file, goes through every shared entry point: it trains and
evaluates with ``train_net.py``, runs in the predictor, the CLI demo and the web demo, and is
benchmarked — the proof that the model contract (frozenseg.modeling.contract) is all they need.

The model: a plain MaskFormer head over the frozen tiny ConvNeXt CLIP. Learned queries make masks
on a 1x1 projection of CLIP's stride-4 features; each mask is classified against CLIP text
embeddings by its CLIP-pooled embedding plus a learned projection of its query. Its config names
it by dotted path, so nothing registers it; ``docs/adding_a_model.md`` walks through it.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config import CfgNode as CN
from frozenseg.config import configurable
from frozenseg.data.vocabulary import Vocabulary
from frozenseg.modeling.backbone import CLIPBackbone, TextClassifierBuilder
from frozenseg.modeling.contract import BenchmarkStage, SegmentationModel
from frozenseg.modeling.criterion import SetCriterion, build_weight_dict
from frozenseg.modeling.inputs import checked_train_class_names, normalized_batch, prepare_image, prepare_targets
from frozenseg.modeling.matcher import HungarianMatcher
from frozenseg.modeling.open_vocab import get_classification_logits
from frozenseg.modeling.postprocessing import panoptic_inference, resize_masks_to_output, semantic_inference

from ..conftest import REPO_ROOT


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
def add_plain_maskformer_config(cfg) -> None:
    """The model's own keys."""
    cfg.MODEL.PLAIN = CN()
    cfg.MODEL.PLAIN.CLIP_MODEL_NAME = "tiny_convnext_clip"  # open_clip model name
    cfg.MODEL.PLAIN.CLIP_WEIGHTS = ""  # open_clip tag or file of the frozen CLIP ("" random)
    cfg.MODEL.PLAIN.NUM_QUERIES = 8  # Q
    cfg.MODEL.PLAIN.HIDDEN_DIM = 32  # query and mask-embedding width


class PlainMaskFormer(SegmentationModel):
    """Frozen CLIP + learned queries; masks (B, Q, H/4, W/4), classes by CLIP text embeddings."""

    supported_tasks = ("panoptic", "semantic")
    frozen_parts = {"backbone.clip_model.": "MODEL.PLAIN.CLIP_WEIGHTS"}
    add_config = staticmethod(add_plain_maskformer_config)

    @configurable
    def __init__(self, *, backbone: CLIPBackbone, num_queries: int, hidden_dim: int,
                 train_class_names: list[str] | None, pixel_mean, pixel_std):
        super().__init__()
        self.backbone = backbone
        self.head = nn.ModuleDict({
            "query": nn.Embedding(num_queries, hidden_dim),
            "pixel": nn.Conv2d(backbone.output_shape()["res2"].channels, hidden_dim, 1),
            "class": nn.Linear(hidden_dim, backbone.dim_latent),
        })
        self.void = nn.Parameter(torch.randn(1, backbone.dim_latent))
        self.builder = TextClassifierBuilder(encoder=backbone, cache_dir="")
        self.train_class_names = train_class_names
        self.criterion = SetCriterion(
            len(train_class_names or [None]), HungarianMatcher(2.0, 5.0, 5.0, num_points=256),
            build_weight_dict(2.0, 5.0, 5.0, 0), 0.1, ["labels", "masks"], 256, 3.0, 0.75)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.vocabulary: Vocabulary | None = None

    @classmethod
    def from_config(cls, cfg, *, device=None, load_frozen_weights: bool = True):
        p = cfg.MODEL.PLAIN
        return {"backbone": CLIPBackbone(model_name=p.CLIP_MODEL_NAME, pretrained=p.CLIP_WEIGHTS,
                                         load_pretrained=load_frozen_weights, device=device),
                "num_queries": p.NUM_QUERIES, "hidden_dim": p.HIDDEN_DIM,
                "train_class_names": checked_train_class_names(cls.training_vocabulary(cfg),
                                                               cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
                "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD}

    def set_vocabulary(self, class_names, thing_classes=None) -> None:
        self.vocabulary = Vocabulary(list(class_names), thing_classes, train_class_names=self.train_class_names)

    def encode_vocabulary(self, cached: bool = True) -> str:
        self.builder.build(self.vocabulary.class_names, cached=cached)
        return ""

    def benchmark_stages(self):
        return (BenchmarkStage("clip_backbone", "backbone"), BenchmarkStage("head", "head"))

    def _outputs(self, images: list[torch.Tensor], class_names: list[str]):
        batch = normalized_batch(images, self.pixel_mean, self.pixel_std, 32)
        features = self.backbone(batch.tensor)
        pixel = self.head["pixel"](features["res2"])
        query = self.head["query"].weight
        masks = torch.einsum("qc,bchw->bqhw", query, pixel)
        rows, num_templates = self.builder.build(class_names)
        rows = torch.cat([rows.to(pixel.device), F.normalize(self.void, dim=-1)])
        pooled = self.backbone.visual_prediction_forward(features["clip_vis_dense"], masks)
        embed = pooled + self.head["class"](query)[None]
        logits = get_classification_logits(embed, rows, 50.0, num_templates)
        return batch, {"pred_logits": logits, "pred_masks": masks}

    def forward(self, batched_inputs):
        images = [prepare_image(x, self.device) for x in batched_inputs]
        if self.training:
            batch, outputs = self._outputs(images, self.train_class_names)
            losses = self.criterion(outputs, prepare_targets(batched_inputs, batch.tensor.shape[-2:], self.device))
            return {k: v * self.criterion.weight_dict[k] for k, v in losses.items()}
        batch, outputs = self._outputs(images, self.vocabulary.class_names)
        results = []
        for i, x in enumerate(batched_inputs):
            size = tuple(batch.image_sizes[i])
            out_size = (int(x.get("height", size[0])), int(x.get("width", size[1])))
            masks = resize_masks_to_output(outputs["pred_masks"][i], tuple(batch.tensor.shape[-2:]), size, out_size)
            cls = outputs["pred_logits"][i]
            result = {"sem_seg": semantic_inference(cls, masks)} if "semantic" in self.tasks else {}
            if "panoptic" in self.tasks:
                result["panoptic_seg"] = panoptic_inference(cls, masks, self.vocabulary.is_thing.to(self.device), 0.0, 0.8)
            results.append(result)
        return results

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device


# ------------------------------------------------------------------------------------------------
# Through every entry point
# ------------------------------------------------------------------------------------------------
MODEL = f"{__name__}.PlainMaskFormer"
CONFIG = f"""
MODEL:
  META_ARCHITECTURE: "{MODEL}"
  PIXEL_MEAN: [122.7709383, 116.7460125, 104.09373615]
  PIXEL_STD: [68.5005327, 66.6321579, 70.32316305]
  SEM_SEG_HEAD:
    NUM_CLASSES: 8
  PLAIN:
    NUM_QUERIES: 6
INPUT:
  DATASET_MAPPER_NAME: "mask_former_semantic"
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 128
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 128
DATASETS:
  TRAIN: ("synthetic_shapes_train_sem_seg",)
  TEST: ("synthetic_shapes_val_sem_seg",)
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.001
  MAX_ITER: 4
  STEPS: (3,)
  WARMUP_ITERS: 1
  CHECKPOINT_PERIOD: 2
SEED: 0
"""
VOCABULARY = "circle;square;triangle"

pytestmark = pytest.mark.slow


def _script(relative: str):
    """A command-line script of the repository (not part of the package) as a module."""
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory):
    """(config file, output folder, training results): four steps with train_net.py."""
    import train_net

    root = tmp_path_factory.mktemp("third_model")
    config = root / "plain_maskformer.yaml"
    config.write_text(CONFIG)
    out = root / "train"
    results = train_net.cli(["--config-file", str(config), "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(out)])
    return config, out, results


def test_trains_and_evaluates_with_train_net(trained, tmp_path):
    import train_net

    config, out, results = trained
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    assert set(results) == {"sem_seg"} and 0.0 <= results["sem_seg"]["mIoU"] <= 100.0
    log = (out / "metrics.json").read_text().splitlines()
    assert all(math.isfinite(json.loads(line)["total_loss"]) for line in log if "total_loss" in line)
    again = train_net.cli(["--config-file", str(config), "--eval-only", "MODEL.DEVICE", "cpu",
                           "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path)])
    assert again["sem_seg"] == pytest.approx(results["sem_seg"], nan_ok=True)


def _predictor(trained, task="panoptic"):
    from frozenseg.engine.predictor import SegmentationPredictor
    from frozenseg.engine.setup import load_config

    config, out, _ = trained
    cfg = load_config(str(config), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(out / "model_final.pth")])
    return SegmentationPredictor(cfg, vocabulary=VOCABULARY.split(";"), task=task)


def test_predictor_gives_each_task(trained):
    predictor = _predictor(trained)
    assert predictor.supported_tasks == ("panoptic", "semantic")
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    pan = predictor(image)
    assert pan.ids.shape == (48, 80) and {s["class"] for s in pan.segments} <= {"circle", "square", "triangle"}
    predictor.set_task("semantic")
    sem = predictor(image)
    assert sum(s["area"] for s in sem.segments) == 48 * 80


def test_cli_demo_writes_its_files(trained, tmp_path):
    from PIL import Image

    demo_cli = _script("demo/demo.py")
    config, out, _ = trained
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "gray.png")
    rc = demo_cli.main(["--config-file", str(config), "--input", str(tmp_path / "gray.png"), "--output",
                        str(tmp_path / "out"), "--vocabulary", VOCABULARY, "--task", "semantic",
                        "--opts", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(out / "model_final.pth")])
    assert rc == 0
    meta = json.loads((tmp_path / "out" / "gray_segments.json").read_text())
    assert meta["task"] == "semantic" and meta["classes"] == VOCABULARY.split(";")


def test_web_demo_segments_an_upload(trained, tmp_path):
    from PIL import Image

    from frozenseg.apps.web_demo import TYPED, WebDemo

    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "light.png")
    result = WebDemo(_predictor(trained)).segment(str(tmp_path / "light.png"), "circle; square", TYPED, "panoptic")
    assert not result.error and result.overlay.shape[:2] == (40, 60) and len(result.files) == 2


def test_benchmark_times_its_stages(trained, tmp_path):
    config, _, _ = trained
    figures = _script("tools/benchmark.py").main(["--config-file", str(config), "--height", "48", "--width", "64",
                                  "--num-classes", "3", "--warmup", "0", "--iters", "1",
                                  "--json", str(tmp_path / "bench.json"), "MODEL.DEVICE", "cpu"])
    assert figures["stages"] == ["clip_backbone", "head", "postprocess"]
    assert figures["clip_backbone_gflop"] > 0 and figures["total_per_image_s"] > 0
    assert json.loads((tmp_path / "bench.json").read_text())["stages"] == figures["stages"]
