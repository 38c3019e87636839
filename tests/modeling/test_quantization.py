"""The opt-in int8 CPU mode (MODEL.INT8_CPU, frozenseg.modeling.quantization): which layers it
changes, that the model's outputs keep their shapes and almost all of their arg-max, that the SAM
fast path runs the quantised layers, and its refusals."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Block
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

import frozenseg
from frozenseg.engine.defaults import DefaultTrainer
from frozenseg.engine.setup import build_inference_model
from frozenseg.modeling.quantization import check_int8_cpu, quantize_frozen_encoders
from frozenseg.modeling.sam import fast_vit

#: Documented floor of the fraction of ``sem_seg`` pixels whose arg-max class the int8 mode keeps
#: on the tiny model (measured: 1.0; docs/benchmarks.md).
MIN_ARGMAX_AGREEMENT = 0.99
CLASSES = ["cat", "dog", "sky", "grass"]


def _tiny_cfg(*opts):
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file("configs/tiny/frozenseg_tiny_convnext.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.FROZEN_SEG.TEXT_CACHE_DIR", "", *opts])
    return cfg


def _tiny_model():
    torch.manual_seed(0)
    model = frozenseg.build_model(_tiny_cfg()).eval()
    model.set_vocabulary(CLASSES)
    return model


@pytest.fixture(scope="module")
def fp32_and_int8():
    """(fp32 model, int8 model with the same weights, replaced layer names)."""
    fp32 = _tiny_model()
    int8 = _tiny_model()
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), int8.state_dict().values()))
    return fp32, int8, quantize_frozen_encoders(int8)


def _inputs():
    image = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    return [{"image": image, "height": 128, "width": 160}]


@pytest.mark.slow
def test_default_is_off():
    assert frozenseg.get_cfg().MODEL.INT8_CPU is False
    model = build_inference_model(_tiny_cfg())
    assert not any(isinstance(m, DynamicQuantizedLinear) for m in model.modules())
    assert any(type(m) is nn.Linear for m in model.sam.image_encoder.modules())


@pytest.mark.slow
def test_only_linear_layers_of_the_frozen_encoders_change(fp32_and_int8):
    fp32, int8, replaced = fp32_and_int8
    before = {n: type(m) for n, m in fp32.named_modules()}
    after = {n: type(m) for n, m in int8.named_modules()}
    changed = sorted(n for n in before if before[n] is not after[n])
    # each quantised layer holds its packed int8 weight in a ``_packed_params`` child
    assert after.keys() - before.keys() == {f"{n}._packed_params" for n in changed}
    assert before.keys() <= after.keys()
    roots = tuple(f"{r}." for r in fp32.int8_modules())
    expected = sorted(n for n, t in before.items() if t is nn.Linear and n.startswith(roots))
    assert changed == expected == sorted(replaced)
    assert changed and all(n.startswith("sam.image_encoder.blocks.") for n in changed)  # tiny CLIP: conv MLPs
    assert all(after[n] is DynamicQuantizedLinear for n in changed)
    # the trainable decoder keeps its float linear layers
    assert any(t is nn.Linear and not n.startswith(roots) for n, t in after.items())


@pytest.mark.slow
def test_outputs_keep_their_shapes_and_argmax(fp32_and_int8):
    fp32, int8, _ = fp32_and_int8
    with torch.no_grad():
        ref, out = fp32(_inputs())[0], int8(_inputs())[0]
    assert ref.keys() == out.keys()
    for key in ref:
        if isinstance(ref[key], torch.Tensor):
            assert out[key].shape == ref[key].shape, key
    agreement = (out["sem_seg"].argmax(0) == ref["sem_seg"].argmax(0)).double().mean().item()
    assert agreement >= MIN_ARGMAX_AGREEMENT
    assert not torch.equal(out["sem_seg"], ref["sem_seg"])  # the int8 layers did run


def test_sam_fast_path_runs_the_quantised_layers():
    """A windowed block whose grid needs padding (7×7 tokens, 4×4 windows): the fast path's
    padding projection is a call of the int8 ``qkv``; it matches the upstream int8 forward."""
    block = Block(dim=32, num_heads=2, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                  window_size=4, input_size=(4, 4)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    torch.ao.quantization.quantize_dynamic(block, {nn.Linear}, dtype=torch.qint8, inplace=True)
    assert type(block.attn.qkv) is DynamicQuantizedLinear
    x = torch.randn(2, 7, 7, 32, generator=g)
    with torch.no_grad():
        ref, fast = block(x), fast_vit.fast_block_forward(block, x)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_predictor_path_applies_it_after_loading():
    model = build_inference_model(_tiny_cfg("MODEL.INT8_CPU", True))
    assert type(model.sam.image_encoder.blocks[0].attn.qkv) is DynamicQuantizedLinear


def test_refusals():
    with pytest.raises(ValueError, match=r"^MODEL.INT8_CPU is a CPU inference mode but MODEL.DEVICE is 'cuda'; set"):
        check_int8_cpu("cuda", training=False)
    with pytest.raises(ValueError, match=r"^MODEL.INT8_CPU is for inference only .*set MODEL.INT8_CPU False for training"):
        check_int8_cpu("cpu", training=True)
    with pytest.raises(ValueError, match="inference only"):
        quantize_frozen_encoders(_tiny_model().train())
    with pytest.raises(ValueError, match="inference only"):
        DefaultTrainer(_tiny_cfg("MODEL.INT8_CPU", True))
