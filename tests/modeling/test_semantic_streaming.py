"""Semantic, panoptic and instance outputs computed a few classes / rows at a time give the
arg-max, scores and segments of the whole-map computation.

The panoptic tiles and the instance statistics are exact. A chunk of classes is a smaller matrix
product than the whole map's, which may round a class's score differently in the last bit; the
arg-max, the reported (4-decimal) scores and the segments agree exactly on these random inputs,
the scores themselves to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import frozenseg
from frozenseg.engine.predictor import SegmentationPredictor
from frozenseg.modeling import postprocessing as pp
from frozenseg.modeling.contract import SegmentationModel
from frozenseg.structures import semantic as semantic_module
from frozenseg.structures.semantic import SemanticScores

from ..conftest import REPO_ROOT

FROZENSEG_TINY = str(REPO_ROOT / "configs/tiny/frozenseg_tiny_convnext.yaml")
OVSEG_TINY = str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml")


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to float32 rounding of a matrix product (a few units in the last place)."""
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def _one_class_per_chunk(scores: SemanticScores) -> SemanticScores:
    h, w = scores.size
    return SemanticScores(scores.num_classes, scores.size, scores.compute, dtype=scores.dtype,
                          device=scores.device, chunk_bytes=h * w * 4, marks_unlabelled=scores.marks_unlabelled)


# --------------------------------------------------------------------------------------------
# SemanticScores on hand-made maps
# --------------------------------------------------------------------------------------------
def test_summary_of_a_hand_made_map_one_class_per_chunk():
    # 3 classes on 2x2 pixels: a tie between classes 0 and 2 at (0, 0), all zero at (1, 1)
    full = torch.tensor([
        [[2.0, 1.0], [0.0, 0.0]],
        [[1.0, 3.0], [4.0, 0.0]],
        [[2.0, 0.5], [1.0, 0.0]],
    ])
    scores = SemanticScores.from_tensor(full, chunk_bytes=4 * 4, marks_unlabelled=True)
    assert scores.classes_per_chunk == 1 and [c0 for c0, _ in scores.chunks()] == [0, 1, 2]
    class_map = torch.tensor([[2, 0], [-1, 1]])
    s = scores.summarize(class_map)
    assert s.labels.tolist() == [[0, 1], [1, 0]]  # the first class wins the tie, as argmax
    assert s.best.tolist() == [[2.0, 3.0], [4.0, 0.0]]
    assert s.total.tolist() == [[5.0, 4.5], [5.0, 0.0]]
    assert s.all_zero.tolist() == [[False, False], [False, True]]
    assert s.at.tolist() == [[2.0, 1.0], [0.0, 0.0]]
    assert torch.equal(s.labels, full.argmax(0))
    assert torch.equal(scores.full(), full)


def test_chunk_size_follows_the_memory_budget():
    scores = SemanticScores(1203, (3000, 4000), lambda c0, c1: None, chunk_bytes=64 * 2**20)
    assert scores.classes_per_chunk == 1  # 48 MB per class map: one at a time
    small = SemanticScores(1203, (100, 100), lambda c0, c1: None, chunk_bytes=64 * 2**20)
    assert small.classes_per_chunk == 1203 and SemanticScores(5, (10, 10), None, chunk_bytes=1).classes_per_chunk == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_semantic_inference_equals_the_whole_map(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, h, w = 12, 37, 31, 23
    cls = torch.randn(q, k + 1, generator=g)
    masks = torch.randn(q, 9, 7, generator=g)
    padded = F.interpolate(masks[None], size=(40, 30), mode="bilinear", align_corners=False)[0]
    full = pp.semantic_only_inference(cls, padded, (35, 26), (h, w))
    scores = SemanticScores(k, (h, w), lambda c0, c1: pp.semantic_only_inference(
        cls, padded, (35, 26), (h, w), classes=slice(c0, c1)), chunk_bytes=5 * h * w * 4)
    assert scores.classes_per_chunk == 5
    s = scores.summarize(full.argmin(0))
    assert torch.equal(s.labels, full.argmax(0))
    close(s.best, full.max(0).values)
    close(s.at, full.min(0).values)
    close(s.total, full.sum(0))
    assert torch.equal(scores.full(), full)


def test_streamed_sam_ensemble_equals_the_whole_map():
    g = torch.Generator().manual_seed(3)
    q, m, k, h, w = 6, 5, 11, 17, 19
    qp, pp_ = torch.rand(q, k, generator=g), torch.rand(m, k, generator=g)
    pp_[:, 7] += 5.0
    pp_ = pp_ / pp_.sum(1, keepdim=True)  # proposals sure of unseen class 7 take part
    qm, pm = torch.rand(q, h, w, generator=g), torch.rand(m, h, w, generator=g)
    seen = torch.tensor([True] * 6 + [False] * 5)
    full = pp.sam_proposal_ensemble(qp, qm, pp_, pm, seen, 0.2)
    assert int(pp_[:, 6:].amax(1).gt(0.5).sum()) > 0  # the proposal term is present
    for c0, c1 in [(0, 3), (3, 8), (8, 11)]:
        close(pp.sam_proposal_ensemble(qp, qm, pp_, pm, seen, 0.2, classes=slice(c0, c1)), full[c0:c1])


def test_tiled_panoptic_inference_equals_one_tile(monkeypatch):
    g = torch.Generator().manual_seed(4)
    q, k, h, w = 15, 6, 29, 33
    cls = torch.randn(q, k + 1, generator=g) * 3
    masks = torch.randn(q, h, w, generator=g) * 4
    is_thing = torch.tensor([True, False, True, False, True, False])
    whole = pp.panoptic_inference(cls, masks, is_thing, 0.0, 0.2)
    monkeypatch.setattr(pp, "TILE_BYTES", 1)  # one row per tile
    tiled = pp.panoptic_inference(cls, masks, is_thing, 0.0, 0.2)
    assert torch.equal(whole[0], tiled[0]) and whole[1] == tiled[1] and len(whole[1]) > 2


def test_instance_masks_computed_once_per_query_equal_per_detection():
    g = torch.Generator().manual_seed(5)
    q, k, h, w = 8, 20, 13, 17
    cls = torch.randn(q, k + 1, generator=g)
    masks = torch.randn(q, h, w, generator=g)
    is_thing = torch.ones(k, dtype=torch.bool)
    inst = pp.instance_inference(cls, masks, is_thing, 50, False)
    # per detection, as Mask2Former writes it
    scores = F.softmax(cls, -1)[:, :-1]
    top, idx = scores.flatten().topk(50, sorted=True)
    per = masks[idx // k]
    binary = per > 0
    mask_scores = (per.sigmoid().flatten(1) * binary.flatten(1).float()).sum(1) / (binary.flatten(1).float().sum(1) + 1e-6)
    assert torch.equal(inst.pred_masks, binary)
    assert torch.equal(inst.scores, top * mask_scores)
    assert torch.equal(inst.pred_classes, idx % k)


# --------------------------------------------------------------------------------------------
# The models: "sem_seg_scores" against Detectron2's "sem_seg"
# --------------------------------------------------------------------------------------------
def _build(config: str, *opts: str):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(config)
    cfg.merge_from_list(["SEED", "0", *opts])
    torch.manual_seed(0)
    model = frozenseg.build_model(cfg)
    return model.eval()


def _image(seed: int = 0, h: int = 90, w: int = 120) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("tasks", [("semantic",), ("semantic", "panoptic"), ("semantic", "instance")])
def test_frozenseg_scores_equal_the_full_map(tasks):
    model = _build(FROZENSEG_TINY)
    model.set_vocabulary([f"class {i}" for i in range(23)])
    model.set_tasks(tasks)
    x = [{"image": _image(), "height": 70, "width": 95}]
    with torch.no_grad():
        out = model(x)[0]
        scores = _one_class_per_chunk(out["sem_seg_scores"])
        s = scores.summarize()
        assert torch.equal(s.labels, out["sem_seg"].argmax(0))
        close(s.best, out["sem_seg"].max(0).values)
        model.full_semantic_map = False
        bounded = model(x)[0]
    assert "sem_seg" not in bounded and torch.equal(bounded["sem_seg_scores"].full(), out["sem_seg"])
    for key in set(out) - {"sem_seg", "sem_seg_scores"}:
        assert str(bounded[key]) == str(out[key])


def test_frozenseg_scores_with_the_sam_ensemble_equal_the_full_map():
    model = _build(FROZENSEG_TINY)
    model.set_vocabulary(["circle,disc", "dog", "sky", "zebra", "lamp"])
    model.set_tasks(("semantic",))
    model.use_sam_masks = True
    sam = torch.randn(4, 90, 120, generator=torch.Generator().manual_seed(1)) * 5
    with torch.no_grad():
        out = model([{"image": _image(), "sam_masks": sam}])[0]
    s = _one_class_per_chunk(out["sem_seg_scores"]).summarize()
    assert torch.equal(s.labels, out["sem_seg"].argmax(0))
    close(s.best, out["sem_seg"].max(0).values)


@pytest.mark.parametrize("demo,vocabulary", [(False, ["sky", "grass", "cat", "road"]), (True, ["sky", "grass", "cat"]),
                                             (False, ["cat"])])
def test_ovseg_scores_equal_the_full_map(demo, vocabulary):
    opts = ["MODEL.META_ARCHITECTURE", "OVSegDEMO", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", "0.0"] if demo else []
    model = _build(OVSEG_TINY, *opts)
    model.set_vocabulary(vocabulary)
    with torch.no_grad():
        out = model([{"image": _image(2, 64, 96)}])[0]
    scores = _one_class_per_chunk(out["sem_seg_scores"])
    s = scores.summarize()
    assert torch.equal(s.labels, out["sem_seg"].argmax(0))
    close(s.best, out["sem_seg"].max(0).values)
    assert scores.marks_unlabelled == (demo or len(vocabulary) == 1)
    if scores.marks_unlabelled:
        assert torch.equal(s.all_zero, out["sem_seg_unlabelled"])


# --------------------------------------------------------------------------------------------
# The predictor: no full map, the same segments
# --------------------------------------------------------------------------------------------
class _FactorModel(SegmentationModel):
    """Random class logits (Q, K + 1) and mask logits (Q, H, W) drawn per call at the output
    size, post-processed as FrozenSeg does: a model whose segments do not depend on training."""

    supported_tasks = ("panoptic", "semantic")

    def __init__(self, queries: int = 12):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.queries, self.num_classes = queries, 0

    def set_vocabulary(self, class_names, thing_classes=None) -> None:
        self.num_classes = len(class_names)

    def forward(self, batched_inputs):
        x = batched_inputs[0]
        g = torch.Generator().manual_seed(7)
        cls = torch.randn(self.queries, self.num_classes + 1, generator=g) * 3
        cls[:, -1] -= 5.0  # no query is void
        masks = F.interpolate(torch.randn(1, self.queries, 6, 8, generator=g) * 6,
                              size=(x["height"], x["width"]), mode="bilinear", align_corners=False)[0]
        probs = masks.sigmoid()
        scores = SemanticScores(self.num_classes, (x["height"], x["width"]),
                                lambda c0, c1: pp.semantic_inference(cls, masks, probs, classes=slice(c0, c1)))
        out = {"sem_seg_scores": scores,
               "panoptic_seg": pp.panoptic_inference(cls, masks, torch.ones(self.num_classes, dtype=torch.bool), 0.0, 0.0)}
        if self.full_semantic_map:
            out["sem_seg"] = scores.full()
        return [out]


def _reference_segments(pred, full: torch.Tensor, task: str) -> list[tuple]:
    """The segments' (class, area, score) from the whole (K, H, W) map, normalised in one piece."""
    prob = (full / full.sum(0, keepdim=True).clamp(min=1e-12)).numpy()
    rows = []
    for seg in pred.segments:
        mask = pred.ids == seg["id"]
        rows.append((seg["category_id"], int(mask.sum()), round(float(prob[seg["category_id"]][mask].mean()), 4)))
    if task == "semantic":
        labels = full.argmax(0).numpy()
        assert np.array_equal(pred.ids, labels)
    return rows


@pytest.mark.parametrize("task", ["semantic", "panoptic"])
def test_predictor_segments_equal_the_whole_map_computation(task, monkeypatch):
    monkeypatch.setattr(semantic_module, "DEFAULT_CHUNK_BYTES", 1)  # one class at a time
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(FROZENSEG_TINY)
    predictor = SegmentationPredictor(cfg, vocabulary=[f"thing {i}" for i in range(40)], task=task, model=_FactorModel())
    assert predictor.model.full_semantic_map is False
    image = _image(3, 75, 100).permute(1, 2, 0).numpy().copy()
    pred = predictor(image)
    assert "sem_seg" not in pred.raw and pred.raw["sem_seg_scores"].classes_per_chunk == 1
    full = pred.raw["sem_seg_scores"].full()
    assert full.shape == (40, 75, 100) and len(pred.segments) > 3
    got = [(s["category_id"], s["area"], s["score"]) for s in pred.segments]
    assert got == _reference_segments(pred, full, task)


# --------------------------------------------------------------------------------------------
# Evaluation: the package's evaluators read the scores; a Detectron2-style one gets the map
# --------------------------------------------------------------------------------------------
def test_evaluation_gives_the_full_map_only_to_an_evaluator_that_reads_it():
    from frozenseg.evaluation import DatasetEvaluator, SemSegEvaluator, inference_on_dataset

    class Detectron2Style(DatasetEvaluator):
        def reset(self):
            self.labels = []

        def process(self, inputs, outputs):
            self.labels += [o["sem_seg"].argmax(0) for o in outputs]

        def evaluate(self):
            return {}

    from types import SimpleNamespace

    meta = SimpleNamespace(stuff_classes=[f"c{i}" for i in range(6)], ignore_label=255)
    model = _FactorModel()
    model.set_vocabulary(meta.stuff_classes)
    gt = torch.randint(0, 6, (30, 40), generator=torch.Generator().manual_seed(0))
    loader = [[{"image": _image(0, 30, 40), "height": 30, "width": 40, "sem_seg": gt, "file_name": "a.png"}]]
    plain = Detectron2Style()
    both = inference_on_dataset(model, loader, [SemSegEvaluator(metadata=meta, distributed=False), plain])
    assert model.full_semantic_map is True  # restored

    model.full_semantic_map = False
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(set(out[0])))
    alone = inference_on_dataset(model, loader, SemSegEvaluator(metadata=meta, distributed=False))
    assert seen == [{"sem_seg_scores", "panoptic_seg"}]
    assert alone == both and 0 < both["sem_seg"]["mIoU"] < 100
    with torch.no_grad():
        model.full_semantic_map = True
        expected = model(loader[0])[0]["sem_seg"].argmax(0)
    assert torch.equal(plain.labels[0], expected)
