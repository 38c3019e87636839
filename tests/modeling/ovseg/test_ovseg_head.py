"""OVSeg's MaskFormer-v1 head: released layouts on the meta device, DETR-decoder parity with
torch's decoder layer, the FPN's top-down rule, and the open-vocabulary outputs of a tiny head.

Tiny head: CONVS_DIM 32, MASK_DIM 16, HIDDEN_DIM 32, NHEADS 4, DIM_FEEDFORWARD 64, DEC_LAYERS 3,
NUM_OBJECT_QUERIES 5, EMBEDDING_DIM 8, EMBED_HIDDEN_DIM 16; features res2..res5 with 8/16/24/40
channels on a 64x96 input.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.config import get_cfg
from frozenseg.layers import ShapeSpec
from frozenseg.models.ovseg import BasePixelDecoder, DETRTransformer, OpenVocabTransformerPredictor
from frozenseg.models.ovseg.head import OpenVocabMaskFormerHead
from frozenseg.utils.registry import PIXEL_DECODER_REGISTRY, SEM_SEG_HEADS_REGISTRY

from .conftest import ovseg_cfg, released_layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES, STRIDES = ("res2", "res3", "res4", "res5"), (4, 8, 16, 32)
TINY_CHANNELS = (8, 16, 24, 40)


def _shapes(channels) -> dict[str, ShapeSpec]:
    return {n: ShapeSpec(channels=c, stride=s) for n, c, s in zip(NAMES, channels, STRIDES)}


def _ovseg_cfg(embedding_dim: int = 768):
    """The released head settings (docs/models/ovseg.md §5.2) on top of the project defaults."""
    cfg = ovseg_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NAME = "OpenVocabMaskFormerHead"
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
    cfg.MODEL.SEM_SEG_HEAD.EMBEDDING_DIM = embedding_dim
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 6
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.1
    return cfg


def _tiny_cfg():
    cfg = _ovseg_cfg(embedding_dim=8)
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.EMBED_HIDDEN_DIM = 16
    mf = cfg.MODEL.MASK_FORMER
    mf.HIDDEN_DIM, mf.NHEADS, mf.DIM_FEEDFORWARD, mf.DEC_LAYERS, mf.NUM_OBJECT_QUERIES = 32, 4, 64, 3, 5
    mf.DROPOUT = 0.0
    return cfg


def _features(batch: int = 2, h: int = 64, w: int = 96) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {n: torch.randn(batch, c, h // s, w // s) for n, c, s in zip(NAMES, TINY_CHANNELS, STRIDES)}


@pytest.mark.parametrize(
    "layout, channels, embedding_dim",
    [("swinB_vitL14", (128, 256, 512, 1024), 768), ("R101c_vitB16", (256, 512, 1024, 2048), 512)],
)
def test_full_size_head_has_the_released_keys_and_shapes(layout, channels, embedding_dim):
    cfg = _ovseg_cfg(embedding_dim)
    with torch.device("meta"):
        head = SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, _shapes(channels))
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert ours == released_layout(layout, "sem_seg_head.")


def test_each_model_holds_its_own_keys_with_the_release_defaults():
    """A key means one thing: FrozenSeg's config holds Mask2Former's meanings and no OVSeg key;
    OVSeg's holds MaskFormer-v1's (DEC_LAYERS counts DETR layers) and OVSeg's own keys."""
    frozenseg_cfg = get_cfg()
    mf, head = frozenseg_cfg.MODEL.MASK_FORMER, frozenseg_cfg.MODEL.SEM_SEG_HEAD
    assert (mf.DEC_LAYERS, mf.DROPOUT, mf.CLASS_WEIGHT, head.NAME) == (10, 0.0, 2.0, "FrozenSegHead")
    assert "CLIP_ADAPTER" not in frozenseg_cfg.MODEL and "EMBEDDING_DIM" not in head
    cfg = ovseg_cfg()
    mf, head, ca = cfg.MODEL.MASK_FORMER, cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.CLIP_ADAPTER
    assert (mf.DEC_LAYERS, mf.DROPOUT, mf.CLASS_WEIGHT, mf.MASK_WEIGHT, mf.DICE_WEIGHT) == (6, 0.1, 1.0, 20.0, 1.0)
    assert "FROZEN_SEG" not in cfg.MODEL and "TRAIN_NUM_POINTS" not in mf
    assert (head.EMBEDDING_DIM, head.EMBED_HIDDEN_DIM, head.EMBED_LAYERS) == (512, 1024, 2)
    assert (ca.CLIP_MODEL_NAME, ca.MASK_THR, ca.CLIP_ENSEMBLE_WEIGHT, ca.MASK_PROMPT_DEPTH) == ("ViT-B/16", 0.4, 0.7, 3)
    assert (ca.MASK_PROMPT_FWD, ca.MASK_FILL, ca.TEXT_TEMPLATES, ca.REGION_RESIZED) == (False, "mean", "vild", True)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.MASK_FORMER.ENC_LAYERS", 1, "ENC_LAYERS 0"),
        ("MODEL.MASK_FORMER.PRE_NORM", True, "PRE_NORM False"),
        ("MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "multi_scale_pixel_decoder", "TRANSFORMER_IN_FEATURE"),
    ],
)
def test_unsupported_settings_name_the_fix(key, value, message):
    cfg = _tiny_cfg()
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=message):
        OpenVocabMaskFormerHead(cfg, _shapes(TINY_CHANNELS))


def test_pixel_decoder_is_a_top_down_fpn_with_nearest_upsampling():
    cfg = _tiny_cfg()
    decoder = PIXEL_DECODER_REGISTRY.get("BasePixelDecoder")(cfg, _shapes(TINY_CHANNELS)).eval()
    feats = _features()
    assert [name for name, _ in decoder.named_children()] == [
        "adapter_1", "layer_1", "adapter_2", "layer_2", "adapter_3", "layer_3", "layer_4", "mask_features",
    ]
    assert decoder.layer_4.norm.num_groups == 32 and decoder.layer_4.bias is None
    assert decoder.adapter_1.bias is None and decoder.mask_features.norm is None
    y = decoder.layer_4(feats["res5"])
    for i, name in ((3, "res4"), (2, "res3"), (1, "res2")):
        lateral = getattr(decoder, f"adapter_{i}")(feats[name])
        y = getattr(decoder, f"layer_{i}")(lateral + F.interpolate(y, scale_factor=2.0, mode="nearest"))
    expected = decoder.mask_features(y)
    out = decoder(feats)
    assert out.shape == (2, 16, 16, 24)
    torch.testing.assert_close(out, expected)


def test_pixel_decoder_without_norm_uses_biased_convs():
    decoder = BasePixelDecoder(input_shape=_shapes(TINY_CHANNELS), conv_dim=32, mask_dim=16, norm="")
    assert decoder.layer_1.norm is None and decoder.layer_1.bias is not None
    assert decoder.adapter_2.bias is not None


def test_detr_layers_equal_torch_decoder_layers_and_every_output_gets_the_final_norm():
    torch.manual_seed(0)
    transformer = DETRTransformer(
        d_model=32, nhead=4, num_decoder_layers=3, dim_feedforward=64, dropout=0.0, return_intermediate_dec=True
    ).eval()
    for p in transformer.parameters():  # non-trivial biases and norms
        if p.dim() == 1:
            nn.init.normal_(p, std=0.2)
    src = torch.randn(2, 32, 3, 4)
    query_embed = torch.zeros(5, 32)  # zero query position and zero image position: torch's layer
    hs = transformer(src, query_embed, torch.zeros_like(src))
    assert hs.shape == (3, 2, 5, 32)
    memory = src.flatten(2).transpose(1, 2)  # (B, HW, C)
    tgt = torch.zeros(2, 5, 32)
    for i, layer in enumerate(transformer.decoder.layers):
        reference = nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
        reference.load_state_dict(layer.state_dict())  # same parameter names as DETR's layer
        tgt = reference(tgt, memory)
        torch.testing.assert_close(hs[i], transformer.decoder.norm(tgt), rtol=1e-5, atol=1e-5)


def test_queries_differ_only_through_their_query_embedding():
    torch.manual_seed(0)
    transformer = DETRTransformer(32, 4, 2, 64, 0.0, return_intermediate_dec=False).eval()
    src = torch.randn(1, 32, 3, 4)
    pos = torch.randn(1, 32, 3, 4)
    query_embed = torch.randn(4, 32)
    query_embed[1] = query_embed[0]
    hs = transformer(src, query_embed, pos)
    assert hs.shape == (1, 1, 4, 32)
    torch.testing.assert_close(hs[0, 0, 0], hs[0, 0, 1])
    assert not torch.allclose(hs[0, 0, 0], hs[0, 0, 2])
    assert not torch.allclose(hs, transformer(src, query_embed, torch.zeros_like(pos)))


def test_tiny_head_outputs_open_vocabulary_logits_masks_and_aux_outputs():
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    head = OpenVocabMaskFormerHead(cfg, _shapes(TINY_CHANNELS)).eval()
    assert isinstance(head.predictor, OpenVocabTransformerPredictor)
    captured = {}
    head.predictor.transformer.register_forward_hook(lambda m, i, o: captured.__setitem__("hs", o))
    head.pixel_decoder.register_forward_hook(lambda m, i, o: captured.__setitem__("mf", o))
    text = F.normalize(torch.randn(4, 8), dim=-1)  # K = 3 classes + the no-object row
    out = head(_features(), text)

    assert out["pred_logits"].shape == (2, 5, 4)
    assert out["pred_masks"].shape == (2, 5, 16, 24)
    assert len(out["aux_outputs"]) == 2
    hs, mask_features = captured["hs"], captured["mf"]
    assert hs.shape == (3, 2, 5, 32)
    for layer, pred in enumerate(out["aux_outputs"] + [out]):
        emb = F.normalize(head.predictor.class_embed(hs[layer]), dim=-1)
        torch.testing.assert_close(pred["pred_logits"], 100.0 * emb @ text.t())
        masks = torch.einsum("bqc,bchw->bqhw", head.predictor.mask_embed(hs[layer]), mask_features)
        torch.testing.assert_close(pred["pred_masks"], masks)
    assert out["pred_logits"].abs().max() <= 100.0 + 1e-4


def test_synonym_rows_are_max_pooled_per_class():
    cfg = _tiny_cfg()
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = False
    torch.manual_seed(0)
    head = OpenVocabMaskFormerHead(cfg, _shapes(TINY_CHANNELS)).eval()
    text = F.normalize(torch.randn(4, 8), dim=-1)  # class 0: rows 0-1, class 1: row 2, void
    feats = _features(batch=1)
    per_row = head(feats, text)["pred_logits"]
    pooled = head(feats, text, num_templates=[2, 1])
    assert "aux_outputs" not in pooled
    expected = torch.stack([per_row[..., :2].amax(-1), per_row[..., 2], per_row[..., 3]], dim=-1)
    torch.testing.assert_close(pooled["pred_logits"], expected)


def test_input_projection_only_when_channels_differ_or_enforced():
    kwargs = dict(
        embedding_dim=8, embed_hidden_dim=16, embed_layers=2, hidden_dim=32, num_queries=5, nheads=4,
        dropout=0.0, dim_feedforward=64, dec_layers=1, deep_supervision=True, mask_dim=16,
    )
    same = OpenVocabTransformerPredictor(in_channels=32, enforce_input_project=False, **kwargs)
    forced = OpenVocabTransformerPredictor(in_channels=32, enforce_input_project=True, **kwargs)
    assert not any(k.startswith("input_proj") for k in same.state_dict())
    assert forced.input_proj.weight.shape == (32, 32, 1, 1)
