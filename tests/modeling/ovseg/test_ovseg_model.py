"""The OVSeg meta-architecture end to end on the tiny configs (docs/models/ovseg.md §2.1-2.14): the eval output
equals the computation composed by hand from the components, one-class vocabularies, zero and
one valid proposal, the demo rule, and the training path's wiring.

Tiny models: configs/tiny/ovseg_tiny_{swin,resnet}.yaml (tiny_vit_clip: 56 px, patch 14, joint
dim 32; 10 queries; 8 training classes). Inputs: a random 48x80 uint8 image, output 60x100.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from torch.nn import functional as F

import frozenseg
from frozenseg.modeling.backbone.text_classifier import VILD_PROMPT_TEMPLATES
from frozenseg.models.ovseg.clip_adapter import (
    encode_image_with_mask_prompts,
    ovseg_demo_semantic_inference,
    prepare_clip_regions,
)
from frozenseg.models.ovseg import OVSeg, OVSegDEMO

from ...conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = {"swin": "configs/tiny/ovseg_tiny_swin.yaml", "resnet": "configs/tiny/ovseg_tiny_resnet.yaml"}
NAMES = ["circle", "sky, blue sky", "grass"]  # a comma inside a class name stays one prompt
HEIGHT, WIDTH, OUT = 48, 80, (60, 100)


def tiny_cfg(kind: str = "swin", *opts):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / CONFIGS[kind]))
    cfg.merge_from_list(list(opts))
    return cfg


def tiny_model(kind: str = "swin", *opts, seed: int = 0) -> OVSeg:
    torch.manual_seed(seed)
    model = frozenseg.build_model(tiny_cfg(kind, *opts)).eval()
    with torch.no_grad():  # learned-looking prompts, so that the mask-prompt path matters
        torch.nn.init.normal_(model.clip_adapter.clip_model.visual.mask_embedding, std=0.5)
    return model


def tiny_image(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8, generator=g)


def run(model: OVSeg, names, image=None) -> torch.Tensor:
    model.set_vocabulary(names)
    with torch.no_grad():
        return model([{"image": tiny_image() if image is None else image, "height": OUT[0], "width": OUT[1]}])[0][
            "sem_seg"
        ]


# ---------------------------------------------------------------------------------------------
# The pipeline, composed by hand from the components
# ---------------------------------------------------------------------------------------------
def hand_text_classifier(model: OVSeg, names) -> torch.Tensor:
    """(K + 1, D): per class, normalize(mean over the 14 ViLD prompts of normalize(open_clip's
    encode_text)), then the normalised no-object embedding (docs/models/ovseg.md §2.5)."""
    clip = model.clip_adapter.clip_model
    tokenizer = open_clip.get_tokenizer("tiny_vit_clip")
    rows = []
    with torch.no_grad():
        for name in names:
            feats = F.normalize(clip.encode_text(tokenizer([t.format(name.strip()) for t in VILD_PROMPT_TEMPLATES])), dim=-1)
            rows.append(F.normalize(feats.mean(0), dim=-1))
    return torch.cat([torch.stack(rows), F.normalize(model.clip_adapter.non_object_embedding, dim=-1)])


def hand_proposals(model: OVSeg, image: torch.Tensor, text: torch.Tensor):
    """MaskFormer logits (Q, K + 1) and mask probabilities (Q, H, W) of one image (§2.1-2.7)."""
    mean = torch.tensor([123.675, 116.280, 103.530]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.120, 57.375]).view(3, 1, 1)
    padded = torch.zeros(1, 3, 64, 96)  # pad with 0 after normalising, to multiples of 32
    padded[0, :, :HEIGHT, :WIDTH] = (image.float() - mean) / std
    with torch.no_grad():
        out = model.sem_seg_head(model.backbone(padded), text)
    masks = F.interpolate(out["pred_masks"], size=(64, 96), mode="bilinear", align_corners=False)[0]
    return out["pred_logits"][0], masks[:, :HEIGHT, :WIDTH].sigmoid()


def hand_clip_probs(model: OVSeg, image, masks, text, thr: float):
    """CLIP probabilities (N, K) of the valid proposals and the valid flags (Q,) (§2.8-2.10)."""
    adapter = model.clip_adapter
    crops = prepare_clip_regions(image, masks, mask_thr=thr, fill=adapter.mask_fill, size=56)
    with torch.no_grad():
        features = encode_image_with_mask_prompts(adapter.clip_model.visual, crops.regions, crops.region_masks)
    logits = 100.0 * F.normalize(features, dim=-1) @ text.t()
    return logits[:, :-1].softmax(-1), crops.valid


def hand_semantic(model: OVSeg, names, thr: float, lam: float = 0.7) -> torch.Tensor:
    """§2.11-2.12: p = p_mf^(1-lam) * P^lam (P = 1 on invalid queries), einsum, bilinear resize."""
    image = tiny_image()
    text = hand_text_classifier(model, names)
    mf_logits, masks = hand_proposals(model, image, text)
    p_mf = mf_logits.softmax(-1)[:, :-1]
    p_clip, valid = hand_clip_probs(model, image, masks, text, thr)
    full = torch.ones_like(p_mf)
    full[valid] = p_clip
    scores = p_mf ** (1 - lam) * full**lam
    semantic = torch.einsum("qc,qhw->chw", scores, masks)
    return F.interpolate(semantic[None], size=OUT, mode="bilinear", align_corners=False)[0]


def query_peaks(model: OVSeg, names) -> torch.Tensor:
    """Per query, the largest mask probability (sorted descending): thresholds between them
    decide how many proposals are valid."""
    text = hand_text_classifier(model, names)
    _, masks = hand_proposals(model, tiny_image(), text)
    return masks.flatten(1).amax(1).sort(descending=True).values


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@pytest.mark.slow
def test_eval_output_equals_the_hand_composed_pipeline(kind):
    model = tiny_model(kind)
    names = list(NAMES)
    torch.testing.assert_close(model._text_classifier(names), hand_text_classifier(model, names), rtol=0, atol=1e-6)
    peaks = query_peaks(model, names)
    thr = float((peaks[3] + peaks[4]) / 2)  # 4 valid proposals, 6 invalid ones (docs/models/ovseg.md quirk 1)
    model.clip_adapter.mask_thr = thr
    out = run(model, names)
    assert out.shape == (3, *OUT) and torch.isfinite(out).all()
    torch.testing.assert_close(out, hand_semantic(model, names, thr), rtol=1e-5, atol=1e-6)
    assert names == NAMES


@pytest.mark.slow
def test_no_and_exactly_one_valid_proposal():
    """Quirk 10 (FIX): no valid proposal -> p_mf^(1-lambda); docs/models/ovseg.md quirk 9 (FIX): one works too."""
    model = tiny_model("swin", "MODEL.CLIP_ADAPTER.MASK_THR", 1.0)  # sigmoid never exceeds 1
    model.clip_adapter.encode_regions = None  # CLIP must not run at all
    torch.testing.assert_close(run(model, NAMES), hand_semantic(model, NAMES, 1.0), rtol=1e-5, atol=1e-6)

    model = tiny_model("swin")
    peaks = query_peaks(model, NAMES)
    thr = float((peaks[0] + peaks[1]) / 2)
    model.clip_adapter.mask_thr = thr
    assert int((hand_proposals(model, tiny_image(), hand_text_classifier(model, NAMES))[1].flatten(1).amax(1) > thr).sum()) == 1
    torch.testing.assert_close(run(model, NAMES), hand_semantic(model, NAMES, thr), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_lambda_zero_and_maskformer_only():
    """lambda = 0: CLIP alone on the valid proposals; CLIP_ENSEMBLE False: MaskFormer alone."""
    model = tiny_model("swin", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", 0.0)
    thr = model.clip_adapter.mask_thr
    image, text = tiny_image(), hand_text_classifier(model, NAMES)
    _, masks = hand_proposals(model, image, text)
    p_clip, valid = hand_clip_probs(model, image, masks, text, thr)
    expected = F.interpolate(torch.einsum("qc,qhw->chw", p_clip, masks[valid])[None], size=OUT, mode="bilinear")[0]
    torch.testing.assert_close(run(model, NAMES), expected, rtol=1e-5, atol=1e-6)

    model = tiny_model("swin", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE", False)
    model.clip_adapter.encode_regions = None
    mf_logits, masks = hand_proposals(model, image, text)
    expected = F.interpolate(torch.einsum("qc,qhw->chw", mf_logits.softmax(-1)[:, :-1], masks)[None], size=OUT, mode="bilinear")[0]
    torch.testing.assert_close(run(model, NAMES), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, others_wins", [("circle", True), ("grass", False)])
def test_one_class_vocabulary_is_scored_against_others_on_a_copy(name, others_wins):
    """K = 1: classified against [name, "others"]; the class's channel, 0 where "others" wins
    (for the random tiny model "others" wins everywhere for "circle", nowhere for "grass")."""
    model = tiny_model("resnet")
    names = [name]
    one = run(model, names)
    assert names == [name]  # the caller's list is not extended (docs/models/ovseg.md quirk 15 FIX)
    assert model.vocabulary.class_names == [name]
    two = run(model, [name, "others"])
    assert one.shape == (1, *OUT)
    expected = torch.where(two[0] >= two[1], two[0], torch.zeros_like(two[0]))[None]
    torch.testing.assert_close(one, expected, rtol=1e-5, atol=1e-6)
    assert bool((one == 0).all()) == others_wins and bool((one > 0).all()) != others_wins


def test_vocabulary_errors_and_text_dimension_mismatch():
    model = tiny_model("swin", "DATASETS.TRAIN", ())  # no training vocabulary to start from
    assert model.vocabulary is None
    with pytest.raises(ValueError, match="set_vocabulary"):
        model([{"image": tiny_image()}])
    with pytest.raises(ValueError, match="empty"):
        model.set_vocabulary([])
    with pytest.raises(ValueError, match="EMBEDDING_DIM to 32"):
        frozenseg.build_model(tiny_cfg("swin", "MODEL.SEM_SEG_HEAD.EMBEDDING_DIM", 16))


# ---------------------------------------------------------------------------------------------
# Demo mode (docs/models/ovseg.md §2.14)
# ---------------------------------------------------------------------------------------------
def test_demo_rule_on_hand_made_scores():
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.6, 0.4, 0.2], [0.5, 0.3, 0.25]])
    masks = torch.zeros(4, 2, 3, dtype=torch.bool)
    masks[0, 0, :2] = True  # query 0: best for class 0 and class 2 (kept once)
    masks[1, :, 2] = True  # query 1: best for class 1
    masks[2] = True  # query 2: never the best, dropped
    out = ovseg_demo_semantic_inference(scores, masks)
    expected = torch.zeros(3, 2, 3)
    expected[:, 0, :2] = scores[0, :, None]
    expected[:, :, 2] = scores[1, :, None]
    torch.testing.assert_close(out, expected)
    assert (out[:, 1, :2] == 0).all()  # covered by no kept mask: unlabelled

    only_first = ovseg_demo_semantic_inference(scores, masks, num_selecting=1)  # [name, "others"]
    assert torch.equal(only_first, torch.einsum("c,hw->chw", scores[0], masks[0].float()))
    assert torch.equal(ovseg_demo_semantic_inference(scores[:0], masks[:0]), torch.zeros(3, 2, 3))


@pytest.mark.parametrize("lam", [0.0, 0.7])
@pytest.mark.slow
def test_demo_model_selects_among_valid_proposals_only(lam):
    """Quirk 15 (FIX): with some invalid proposals the scores and the masks index the same
    (valid) queries, for lambda 0 (the demo config) and lambda > 0."""
    model = tiny_model("swin", "MODEL.META_ARCHITECTURE", "OVSegDEMO", "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", lam)
    assert isinstance(model, OVSegDEMO)
    peaks = query_peaks(model, NAMES)
    thr = float((peaks[4] + peaks[5]) / 2)
    model.clip_adapter.mask_thr = thr
    image, text = tiny_image(), hand_text_classifier(model, NAMES)
    mf_logits, masks = hand_proposals(model, image, text)
    p_clip, valid = hand_clip_probs(model, image, masks, text, thr)
    assert 0 < int(valid.sum()) < len(valid)
    # lambda = 0 is CLIP alone (docs/models/ovseg.md §2.11), not the limit of the product
    scores = p_clip if lam == 0 else (mf_logits.softmax(-1)[valid, :-1] ** (1 - lam)) * p_clip**lam
    kept = torch.zeros_like(scores)
    for c in range(scores.shape[1]):
        q = int(scores[:, c].argmax())
        kept[q] = scores[q]
    semantic = torch.einsum("qc,qhw->chw", kept, (masks[valid] > thr).float())
    expected = F.interpolate(semantic[None], size=OUT, mode="bilinear", align_corners=False)[0]
    out = run(model, NAMES)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Training path
# ---------------------------------------------------------------------------------------------
class _RecordingCriterion(torch.nn.Module):
    """Stands in for the MaskFormer-v1 criterion: records its inputs, returns a differentiable
    loss per output and one that the weight dict does not name."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("empty_weight", torch.ones(num_classes + 1))
        self.weight_dict = {"loss_ce": 2.0, "loss_mask": 20.0}
        self.seen = None

    def forward(self, outputs, targets):
        self.seen = (outputs, targets)
        return {
            "loss_ce": outputs["pred_logits"].logsumexp(-1).mean(),
            "loss_mask": outputs["pred_masks"].sigmoid().mean(),
            "loss_unweighted": outputs["pred_masks"].mean(),
        }


@pytest.mark.slow
def test_training_forward_feeds_the_criterion():
    from frozenseg.structures import Instances

    model = tiny_model("swin")
    assert model.train_class_names is not None and len(model.train_class_names) == 8
    model.criterion = _RecordingCriterion(8)
    model.train()
    assert not model.clip_adapter.clip_model.training
    masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    masks[0, :10], masks[1, 10:] = True, True
    instances = Instances((HEIGHT, WIDTH), gt_classes=torch.tensor([3, 5]), gt_masks=masks)
    losses = model([{"image": tiny_image(), "instances": instances}])
    assert set(losses) == {"loss_ce", "loss_mask"}
    outputs, targets = model.criterion.seen
    assert outputs["pred_logits"].shape == (1, 10, 9)  # 8 training classes + no-object
    assert len(outputs["aux_outputs"]) == 1  # DEC_LAYERS 2, deep supervision
    assert targets[0]["labels"].tolist() == [3, 5] and targets[0]["masks"].shape == (2, 64, 96)
    assert torch.equal(targets[0]["masks"][:, :HEIGHT, :WIDTH], masks) and not targets[0]["masks"][:, HEIGHT:].any()
    torch.testing.assert_close(losses["loss_mask"], 20.0 * outputs["pred_masks"].sigmoid().mean())
    sum(losses.values()).backward()
    assert model.clip_adapter.non_object_embedding.grad is not None
    assert model.sem_seg_head.predictor.query_embed.weight.grad is not None
    assert all(p.grad is None for p in model.clip_adapter.clip_model.parameters())




@pytest.mark.parametrize("kind", ["swin", "resnet"])
def test_training_step_with_the_maskformer_v1_criterion(kind):
    """A real step on a tiny config: the release's loss terms with deep supervision, weighted
    (ce 1, mask 20, dice 1), gradients on the trainable parts only, loss falls after steps."""
    from frozenseg.models.ovseg.criterion import MaskFormerSetCriterion
    from frozenseg.structures import Instances

    torch.manual_seed(0)
    model = tiny_model(kind)
    assert isinstance(model.criterion, MaskFormerSetCriterion)
    assert model.criterion.weight_dict["loss_ce"] == 1.0 and model.criterion.weight_dict["loss_mask"] == 20.0
    model.train()
    masks = torch.zeros(2, HEIGHT, WIDTH, dtype=torch.bool)
    masks[0, :, : WIDTH // 2], masks[1, :, WIDTH // 2 :] = True, True
    batch = [{"image": tiny_image(), "instances": Instances((HEIGHT, WIDTH), gt_classes=torch.tensor([1, 6]), gt_masks=masks)}]
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    totals = []
    for _ in range(5):
        losses = model(batch)
        assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0"} <= set(losses)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert all(p.grad is None for p in model.clip_adapter.clip_model.parameters())
    assert model.clip_adapter.non_object_embedding.grad is not None
    assert totals[-1] < totals[0]
