"""The benchmark's measuring code (frozenseg.apps.benchmark): FLOP formula = fvcore's count,
the models' stages and the figures' invariants. No timing is asserted."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from frozenseg.apps import benchmark
from frozenseg.engine.setup import load_config
from frozenseg.modeling.build import build_model
from frozenseg.modeling.contract import SegmentationModel
from frozenseg.modeling.sam import SAM_SPECS, SAMImageEncoder


def _tiny_vit_gflop(image_size: int, padded_projections: bool) -> float:
    spec = SAM_SPECS["tiny"]
    return benchmark.vit_encoder_gflop(spec.vit, spec.out_chans, image_size, padded_projections=padded_projections)


@pytest.mark.parametrize("image_size", [256, 224], ids=["windows-padded", "no-padding"])
def test_vit_formula_equals_fvcore_on_the_upstream_forward(image_size):
    """The upstream forward projects the padding tokens too: the formula with
    ``padded_projections`` is fvcore's count of segment-anything's forward (fvcore counts einsums
    through numpy's ``einsum_path`` report, printed to 4 significant digits, hence rel 1e-5; a
    missing or wrong term is off by more than 1e-3)."""
    enc = SAMImageEncoder("tiny", image_size=image_size).image_encoder
    x = torch.randn(1, 3, image_size, image_size)
    counted = benchmark.fvcore_gflop(enc, (x,))
    assert _tiny_vit_gflop(image_size, padded_projections=True) == pytest.approx(counted, rel=1e-5)


def test_fast_path_formula_drops_only_the_padding_projections():
    tokens, padded, c = 16 * 16, 28 * 28, SAM_SPECS["tiny"].vit.embed_dim
    windowed_blocks = 1  # tiny: 2 blocks, block 1 global
    saved = 2 * windowed_blocks * (padded - tokens) * c * 4 * c / 1e9
    assert _tiny_vit_gflop(256, False) == pytest.approx(_tiny_vit_gflop(256, True) - saved, rel=1e-12)
    assert _tiny_vit_gflop(224, False) == _tiny_vit_gflop(224, True)  # 14x14 tokens: no padding


@pytest.mark.slow
def test_sam_stage_counts_what_its_forward_runs():
    sam = SAMImageEncoder("tiny", image_size=256)
    x = torch.randn(2, 3, 256, 256)
    assert benchmark.sam_encoder_gflop(sam, (x,)) == pytest.approx(2 * _tiny_vit_gflop(256, False))
    sam.fast_inference = False
    assert benchmark.sam_encoder_gflop(sam, (x,)) == pytest.approx(benchmark.fvcore_gflop(sam, (x,)), rel=1e-5)


class _Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return (q @ k.transpose(-1, -2)).softmax(-1) @ v


def test_fvcore_counts_fused_attention_like_its_matrix_products():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    fused = benchmark.fvcore_gflop(_Attention(True), (q, k, v))
    assert fused == benchmark.fvcore_gflop(_Attention(False), (q, k, v))
    assert fused == 2 * 2 * 3 * 5 * 7 * (8 + 4) / 1e9


def test_fvcore_counts_keyword_and_non_tensor_arguments():
    class Repeated(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 6)

        def forward(self, x, times: int, *, bias: torch.Tensor):
            for _ in range(times):
                x = self.lin(x)[..., :4] + bias
            return x

    gflop = benchmark.fvcore_gflop(Repeated(), (torch.randn(3, 4), 2), {"bias": torch.zeros(4)})
    assert gflop == 2 * 2 * 3 * 4 * 6 / 1e9


@pytest.mark.parametrize("config", ["configs/tiny/frozenseg_tiny_convnext.yaml", "configs/tiny/ovseg_tiny_swin.yaml"])
@pytest.mark.slow
def test_stages_name_modules_of_the_model(config):
    model = build_model(load_config(config, ["MODEL.DEVICE", "cpu"]), load_frozen_weights=False)
    stages = model.benchmark_stages()
    names = [s.name for s in stages]
    assert len(set(names)) == len(names) == 3 and benchmark.REST_STAGE not in names
    assert all(s.counted_by in ("fvcore", "formula") for s in stages)
    assert all(isinstance(model.get_submodule(s.module), nn.Module) for s in stages)
    if "frozenseg" in config:
        assert [s.module for s in stages] == ["sam", "backbone", "sem_seg_head"]


class _Whole(SegmentationModel):
    """A model that lists no stages: one linear layer over the image."""

    def __init__(self):
        super().__init__()
        self.sams = nn.ModuleList([SAMImageEncoder("tiny", image_size=256), SAMImageEncoder("tiny", image_size=256)])
        self.lin = nn.Linear(3, 2)

    def forward(self, batched_inputs):
        return [{"sem_seg": self.lin(x["image"].float().permute(1, 2, 0)).permute(2, 0, 1)} for x in batched_inputs]

    def set_vocabulary(self, class_names, thing_classes=None):
        pass


@pytest.mark.slow
def test_a_model_without_stages_is_timed_as_a_whole():
    inputs = [{"image": torch.zeros(3, 8, 8)}]
    figures = benchmark.benchmark_model(_Whole(), inputs, benchmark.BenchmarkOptions(warmup=0, iters=1, matmul_seconds=0.0))
    assert figures["stages"] == [benchmark.REST_STAGE]
    assert figures[f"{benchmark.REST_STAGE}_s"] == pytest.approx(figures["total_per_image_s"])


def test_set_fast_inference_reaches_every_switch():
    model = _Whole()
    model.set_fast_inference(False)
    assert [m.fast_inference for m in model.sams] == [False, False]
    model.set_fast_inference(True)
    assert [m.fast_inference for m in model.sams] == [True, True]


def test_matmul_rate_is_a_rate():
    assert benchmark.matmul_gflops(size=64, seconds=0.0, min_repeats=2) > 0


@pytest.mark.slow
def test_requery_encodes_the_new_classes_and_leaves_the_model_and_the_cache_as_they_were(tmp_path):
    """requery_figures: every synonym of the new vocabulary is encoded in each round (the caches
    are emptied first), the user's disk cache gets no file, and the vocabulary, the text rows
    read from that cache and ``full_semantic_map`` are as before."""
    cache = tmp_path / "text_cache"
    model = build_model(load_config("configs/tiny/frozenseg_tiny_convnext.yaml",
                                    ["MODEL.DEVICE", "cpu", "MODEL.FROZEN_SEG.TEXT_CACHE_DIR", str(cache)]),
                        load_frozen_weights=False).eval()
    model.set_vocabulary(["cat,kitten", "sky"], thing_classes=[0])
    model.encode_vocabulary()
    files = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert files  # the user's vocabulary is in the disk cache
    model.full_semantic_map = True
    inputs = [{"image": torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8), "height": 48, "width": 64}]
    names = ["wall,walls", "road,route,street", "red panda"]
    figures = benchmark.requery_figures(model, inputs, names, iters=2)
    assert figures["requery_classes"] == 3 and figures["requery_synonyms"] == 6
    assert 0 < figures["requery_cached_text_per_image_s"] and 0 < figures["requery_per_image_s"]
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == files
    assert model.vocabulary.class_names == ["cat,kitten", "sky"] and model.vocabulary.thing_classes == [0]
    assert model.full_semantic_map is True
    model.encode_vocabulary()
    assert model.text_classifier_builder.last_build == {"memory": 0, "disk": 3, "encoded": 0}
