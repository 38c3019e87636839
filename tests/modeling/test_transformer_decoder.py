"""Tests of the FrozenSeg transformer decoder (docs/models/frozenseg.md §5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from frozenseg.config import get_cfg
from frozenseg.modeling.build import build_transformer_decoder
from frozenseg.modeling.heads import PixelDecoderOutput
from frozenseg.models.frozenseg.transformer_decoder import FrozenSegTransformerDecoder, unblock_fully_masked_rows

from ..conftest import OFFICIAL_STATE_DICTS, RELEASED_CONFIGS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = RELEASED_CONFIGS / "coco" / "frozenseg"
STATE_DICTS = OFFICIAL_STATE_DICTS

NUM_TEMPLATES = [2, 1, 3]  # K = 3 classes, K' = 6 synonym rows
EMBED_DIM = 16
HIDDEN = 32


def tiny_cfg(dec_layers: int = 5, **overrides):
    cfg = get_cfg()
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = HIDDEN
    cfg.MODEL.MASK_FORMER.NHEADS = 4
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 64
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = dec_layers
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 5
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = HIDDEN
    cfg.MODEL.FROZEN_SEG.EMBED_DIM = EMBED_DIM
    for k, v in overrides.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


def make_decoder(in_channels: int = HIDDEN, seed: int = 0, **cfg_overrides):
    torch.manual_seed(seed)
    return FrozenSegTransformerDecoder(tiny_cfg(**cfg_overrides), in_channels)


def make_inputs(in_channels: int = HIDDEN, batch: int = 2, seed: int = 1, sam_size: int = 3):
    g = torch.Generator().manual_seed(seed)
    # 64x64 image: CLIP levels at strides 32, 16, 8; mask features at stride 4.
    x = [torch.randn(batch, in_channels, s, s, generator=g) for s in (2, 4, 8)]
    mask_features = torch.randn(batch, HIDDEN, 16, 16, generator=g)
    sam_feature = torch.randn(batch, HIDDEN, sam_size, sam_size, generator=g)
    sam_embed = torch.randn(batch, HIDDEN, 8, 8, generator=g)
    text = torch.randn(sum(NUM_TEMPLATES) + 1, EMBED_DIM, generator=g)
    text = torch.nn.functional.normalize(text, dim=-1)
    return dict(
        x=x,
        mask_features=mask_features,
        sam_feature=sam_feature,
        sam_embed=sam_embed,
        text_classifier=text,
        num_templates=NUM_TEMPLATES,
    )


def run(dec, inputs: dict) -> dict:
    """The decoder on :func:`make_inputs`' tensors, passed as the pixel decoder passes them."""
    pixel = PixelDecoderOutput(
        inputs["mask_features"], inputs["x"],
        {"sam_feature": inputs["sam_feature"], "sam_embed": inputs["sam_embed"]},
    )
    return dec(pixel, inputs["text_classifier"], inputs["num_templates"])


def all_heads(out):
    return [(a["pred_logits"], a["pred_masks"]) for a in out["aux_outputs"]] + [
        (out["pred_logits"], out["pred_masks"])
    ]


@pytest.mark.parametrize("dec_layers", [4, 5])
def test_output_shapes(dec_layers):
    dec = make_decoder(dec_layers=dec_layers).eval()
    with torch.no_grad():
        out = run(dec, make_inputs())
    k1 = len(NUM_TEMPLATES) + 1
    assert out["pred_logits"].shape == (2, 5, k1)
    assert out["pred_masks"].shape == (2, 5, 16, 16)
    # heads: one on the learnable queries + one per layer (DEC_LAYERS - 1); aux = all but last
    assert dec.num_layers == dec_layers - 1
    assert len(out["aux_outputs"]) == dec_layers - 1
    for logits, masks in all_heads(out):
        assert logits.shape == (2, 5, k1) and masks.shape == (2, 5, 16, 16)
        assert torch.isfinite(logits).all() and torch.isfinite(masks).all()


def test_structure_and_registry():
    cfg = tiny_cfg(dec_layers=10)
    dec = build_transformer_decoder(cfg, HIDDEN)
    assert isinstance(dec, FrozenSegTransformerDecoder)
    assert list(dec.transformer_cross_attention_layers_sam.keys()) == ["0", "3", "6"]
    assert len(dec.transformer_cross_attention_layers) == 9
    assert all(isinstance(p, torch.nn.Sequential) and len(p) == 0 for p in dec.input_proj)
    assert torch.isclose(dec.logit_scale, torch.log(torch.tensor(1 / 0.07)))
    enforced = FrozenSegTransformerDecoder(
        tiny_cfg(**{"MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ": True}), HIDDEN
    )
    assert all(isinstance(p, torch.nn.Conv2d) for p in enforced.input_proj)
    with pytest.raises(ValueError):
        FrozenSegTransformerDecoder(tiny_cfg(**{"MODEL.SEM_SEG_HEAD.MASK_DIM": 8}), HIDDEN)


@pytest.mark.slow
def test_pre_norm_runs():
    dec = make_decoder(**{"MODEL.MASK_FORMER.PRE_NORM": True}).eval()
    assert dec.transformer_ffn_layers[0].normalize_before
    with torch.no_grad():
        out = run(dec, make_inputs())
    assert torch.isfinite(out["pred_masks"]).all()


@pytest.mark.parametrize(
    "yaml_name,json_name",
    [
        ("convnext_large_eval_ade20k.yaml", "convnext_large_d_320__sam_vit_b.json"),
        ("r50x64_eval_ade20k.yaml", "rn50x64__sam_vit_b.json"),
    ],
)
def test_released_state_dict_layout(yaml_name, json_name):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / yaml_name))
    with torch.device("meta"):
        dec = build_transformer_decoder(cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM)
    prefix = "sem_seg_head.predictor."
    ref = json.loads((STATE_DICTS / json_name).read_text())
    expected = {k[len(prefix):]: (v[0], v[1]) for k, v in ref.items() if k.startswith(prefix)}
    got = {
        k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in dec.state_dict().items()
    }
    extra, missing = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
    assert not extra and not missing, (extra, missing)
    assert got == expected


@pytest.mark.slow
def test_query_injector_only_affects_later_heads():
    # 4 layers (levels 0,1,2,0): injection after the head of layer 2 -> only the last head changes.
    dec = make_decoder(dec_layers=5).eval()
    inp = make_inputs()
    with torch.no_grad():
        a = all_heads(run(dec, inp))
        b = all_heads(run(dec, {**inp, "sam_embed": torch.zeros_like(inp["sam_embed"])}))
    assert len(a) == 5
    for (la, ma), (lb, mb) in zip(a[:4], b[:4]):
        assert torch.equal(la, lb) and torch.equal(ma, mb)
    assert not torch.equal(a[4][0], b[4][0]) and not torch.equal(a[4][1], b[4][1])


def test_feature_injector_affects_all_heads_after_layer0():
    dec = make_decoder(dec_layers=5).eval()
    inp = make_inputs()
    other = torch.randn(inp["sam_feature"].shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = all_heads(run(dec, inp))
        b = all_heads(run(dec, {**inp, "sam_feature": other}))
    assert torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][1], b[0][1])
    for (la, ma), (lb, mb) in zip(a[1:], b[1:]):
        assert not torch.equal(la, lb) and not torch.equal(ma, mb)


def _record_kwargs(module, store):
    def hook(mod, args, kwargs):
        store.append((args, kwargs))

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def test_fused_layers_drop_memory_pos_and_sam_resize():
    dec = make_decoder(dec_layers=5)
    calls = {i: [] for i in range(4)}
    sam_calls = []
    handles = [
        _record_kwargs(layer, calls[i])
        for i, layer in enumerate(dec.transformer_cross_attention_layers)
    ]
    handles.append(_record_kwargs(dec.transformer_cross_attention_layers_sam["0"], sam_calls))
    inp = make_inputs(sam_size=3)
    with torch.no_grad():
        run(dec.eval(), inp)
        run(dec.train(), inp)
    for h in handles:
        h.remove()
    for i in range(4):
        assert len(calls[i]) == 2
        for _, kwargs in calls[i]:
            if i % 3 == 0:  # Feature Injector layers: release behaviour pos=None
                assert kwargs["pos"] is None
            else:
                assert kwargs["pos"] is not None
    # inference: S resized to CLIP level 0 (2x2 -> 4 tokens); training: used as given (3x3)
    (eval_args, _), (train_args, _) = sam_calls
    assert eval_args[1].shape[0] == 4 and train_args[1].shape[0] == 9
    # the SAM layer's queries are the level-0 CLIP tokens
    assert eval_args[0].shape == (4, 2, HIDDEN)


def test_unblock_fully_masked_rows():
    m = torch.tensor(
        [
            [[True, True, True], [True, False, True], [False, False, False]],
            [[False, True, True], [True, True, True], [True, True, False]],
        ]
    )
    out = unblock_fully_masked_rows(m)
    expected = m.clone()
    expected[0, 0] = False
    expected[1, 1] = False
    assert torch.equal(out, expected)
    assert m[0, 0].all()  # input untouched


def test_attention_mask_layout():
    dec = make_decoder(dec_layers=4).eval()
    inp = make_inputs()
    output = dec.query_feat.weight.unsqueeze(1).repeat(1, 2, 1)
    with torch.no_grad():
        cls, masks, attn, sam_q, _ = dec.forward_prediction_heads(
            output,
            inp["mask_features"],
            (4, 4),
            inp["text_classifier"],
            NUM_TEMPLATES,
            inp["sam_embed"],
        )
    assert cls.shape == (2, 5, 4) and masks.shape == (2, 5, 16, 16)
    assert attn.dtype == torch.bool and attn.shape == (2 * 4, 5, 16)
    ref = torch.nn.functional.interpolate(masks, size=(4, 4), mode="bilinear", align_corners=False)
    ref = ref.sigmoid().flatten(2) < 0.5
    for b in range(2):
        for h in range(4):
            assert torch.equal(attn[b * 4 + h], ref[b])
    assert sam_q.shape == (5, 2, HIDDEN)


def test_gradient_reaches_every_parameter():
    in_channels = 24  # forces 1x1 input projections
    dec = make_decoder(in_channels=in_channels, dec_layers=5).train()
    out = run(dec, make_inputs(in_channels=in_channels))
    g = torch.Generator().manual_seed(3)
    loss = 0.0
    for logits, masks in all_heads(out):
        loss = loss + (logits * torch.randn(logits.shape, generator=g)).sum()
        loss = loss + (masks * torch.randn(masks.shape, generator=g)).sum()
    loss.backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
