"""Multi-scale deformable attention against a direct computation written with python loops."""

from __future__ import annotations

import math

import pytest
import torch

from frozenseg.layers.ms_deform_attn import (
    MSDeformAttn,
    ms_deform_attn_core_fast,
    ms_deform_attn_core_pytorch,
)


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample img (H, W, D) at normalised (x, y); pixel (i, j) has its centre at ((j+.5)/W, (i+.5)/H)."""
    h, w, d = img.shape
    px = x * w - 0.5
    py = y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    out = torch.zeros(d, dtype=torch.float64)
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[yy, xx].double()
    return out


def _naive_core(value, shapes, locations, weights) -> torch.Tensor:
    """value (N,S,M,D), shapes [(H,W)], locations (N,Lq,M,L,P,2), weights (N,Lq,M,L,P) -> (N,Lq,M*D)."""
    n, _, m, d = value.shape
    _, lq, _, num_levels, num_points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, lq, m, d, dtype=torch.float64)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl in range(num_levels):
                    h, w = shapes[lvl]
                    img = value[b, starts[lvl] : starts[lvl + 1], head].reshape(h, w, d)
                    for p in range(num_points):
                        x, y = locations[b, q, head, lvl, p].tolist()
                        out[b, q, head] += weights[b, q, head, lvl, p].double() * _bilinear_zero_pad(img, x, y)
    return out.reshape(n, lq, m * d).float()


def test_core_matches_naive_bilinear_two_levels():
    torch.manual_seed(0)
    shapes = [(3, 4), (2, 2)]
    n, m, d, lq, num_levels, num_points = 1, 2, 3, 3, 2, 2
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d)
    # locations inside, on the border, at pixel centres and outside (zero padding)
    locations = torch.rand(n, lq, m, num_levels, num_points, 2) * 1.4 - 0.2
    locations[0, 0, 0, 0, 0] = torch.tensor([0.0, 0.0])  # image corner
    locations[0, 0, 0, 0, 1] = torch.tensor([0.125, 1.0 / 6.0])  # centre of pixel (0, 0)
    locations[0, 1, 1, 1, 0] = torch.tensor([1.1, 0.5])  # outside on the right
    locations[0, 2, 0, 1, 1] = torch.tensor([0.5, 0.5])  # between the four pixels of a 2x2
    weights = torch.rand(n, lq, m, num_levels, num_points)
    out = ms_deform_attn_core_pytorch(value, torch.tensor(shapes), locations, weights)
    expected = _naive_core(value, shapes, locations, weights)
    assert out.shape == (n, lq, m * d)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # the pixel-centre sample is exactly that pixel's value
    torch.testing.assert_close(
        _bilinear_zero_pad(value[0, :12, 0].reshape(3, 4, d), 0.125, 1.0 / 6.0).float(), value[0, 0, 0]
    )


def _randomised_module(n_levels: int, seed: int, d_model: int = 8, n_heads: int = 2, n_points: int = 2):
    torch.manual_seed(seed)
    module = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.7)
    return module


def _direct_projections(module: MSDeformAttn, query, input_flatten, padding_mask):
    """Full-width offsets (N,Lq,M,Lb,P,2), softmaxed weights (N,Lq,M,Lb,P) and values (N,S,M,D)."""
    n, lq, c = query.shape
    m, lb, p = module.n_heads, module.n_levels, module.n_points
    off = query @ module.sampling_offsets.weight.T + module.sampling_offsets.bias
    logits = query @ module.attention_weights.weight.T + module.attention_weights.bias
    w = torch.softmax(logits.view(n, lq, m, lb * p), dim=-1).view(n, lq, m, lb, p)
    v = input_flatten @ module.value_proj.weight.T + module.value_proj.bias
    if padding_mask is not None:
        v = torch.where(padding_mask[..., None], torch.zeros_like(v), v)
    return off.view(n, lq, m, lb, p, 2), w, v.view(n, input_flatten.shape[1], m, c // m)


def _one_level_inputs(seed: int, n: int = 2, lq: int = 5, shape=(3, 4), d_model: int = 8):
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    query = torch.randn(n, lq, d_model, generator=g)
    inp = torch.randn(n, h * w, d_model, generator=g)
    ref = torch.rand(n, lq, 1, 2, generator=g)
    return query, inp, ref


def test_release_truncation_one_level_into_three_level_module():
    module = _randomised_module(n_levels=3, seed=1)
    n, lq, (h, w) = 2, 5, (3, 4)
    query, inp, ref = _one_level_inputs(seed=2, n=n, lq=lq, shape=(h, w))
    shapes = torch.tensor([[h, w]])
    out = module(query, ref, inp, shapes, torch.tensor([0]), None)
    assert out.shape == (n, lq, 8)

    with torch.no_grad():
        off, wts, v = _direct_projections(module, query, inp, None)
        m, p, lb = module.n_heads, module.n_points, module.n_levels
        # locations for all 3 built levels, every level normalised by the single (W, H)
        loc_full = torch.empty(n, lq, m, lb, p, 2)
        for b in range(n):
            for q in range(lq):
                for head in range(m):
                    for lvl in range(lb):
                        for pt in range(p):
                            ox, oy = off[b, q, head, lvl, pt].tolist()
                            rx, ry = ref[b, q, 0].tolist()
                            loc_full[b, q, head, lvl, pt] = torch.tensor([rx + ox / w, ry + oy / h])
        # the kernel walks the contiguous buffers with a level count of 1: element k of the
        # truncated (N,Lq,M,1,P,2) layout is element k of the full row-major buffer
        full_loc_flat, full_w_flat = loc_full.reshape(-1), wts.reshape(-1)
        loc_trunc = torch.empty(n, lq, m, 1, p, 2)
        w_trunc = torch.empty(n, lq, m, 1, p)
        for b in range(n):
            for q in range(lq):
                for head in range(m):
                    for pt in range(p):
                        k = ((b * lq + q) * m + head) * p + pt
                        w_trunc[b, q, head, 0, pt] = full_w_flat[k]
                        for c in range(2):
                            loc_trunc[b, q, head, 0, pt, c] = full_loc_flat[2 * k + c]
        sampled = _naive_core(v, [(h, w)], loc_trunc, w_trunc)
        expected = sampled @ module.output_proj.weight.T + module.output_proj.bias
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

        # Slicing level 0 instead (what a "clean" implementation would do) gives another result.
        sliced = _naive_core(v, [(h, w)], loc_full[:, :, :, :1], wts[:, :, :, :1])
        sliced = sliced @ module.output_proj.weight.T + module.output_proj.bias
        assert (out - sliced).abs().max() > 1e-2


def test_three_level_module_matches_direct_computation_with_padding_mask():
    module = _randomised_module(n_levels=3, seed=3)
    g = torch.Generator().manual_seed(4)
    shapes = [(3, 4), (2, 3), (1, 2)]
    n, lq, d_model = 2, 4, 8
    s = sum(h * w for h, w in shapes)
    query = torch.randn(n, lq, d_model, generator=g)
    inp = torch.randn(n, s, d_model, generator=g)
    ref = torch.rand(n, lq, 3, 2, generator=g)
    mask = torch.zeros(n, s, dtype=torch.bool)
    mask[1, 5:9] = True
    starts = torch.tensor([0, 12, 18])
    out = module(query, ref, inp, torch.tensor(shapes), starts, mask)

    with torch.no_grad():
        off, wts, v = _direct_projections(module, query, inp, mask)
        m, p = module.n_heads, module.n_points
        loc = torch.empty(n, lq, m, 3, p, 2)
        for b in range(n):
            for q in range(lq):
                for head in range(m):
                    for lvl, (h, w) in enumerate(shapes):
                        for pt in range(p):
                            ox, oy = off[b, q, head, lvl, pt].tolist()
                            rx, ry = ref[b, q, lvl].tolist()
                            loc[b, q, head, lvl, pt] = torch.tensor([rx + ox / w, ry + oy / h])
        expected = _naive_core(v, shapes, loc, wts) @ module.output_proj.weight.T + module.output_proj.bias
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_level_count_errors():
    module = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=2)
    shapes = torch.tensor([[2, 2], [1, 1]])
    with pytest.raises(ValueError, match="built for 1 levels"):
        module(torch.randn(1, 3, 8), torch.rand(1, 3, 2, 2), torch.randn(1, 5, 8), shapes, torch.tensor([0, 4]))
    module3 = MSDeformAttn(d_model=8, n_levels=3, n_heads=2, n_points=2)
    with pytest.raises(ValueError, match="single input level"):
        module3(torch.randn(1, 3, 8), torch.rand(1, 3, 2, 2), torch.randn(1, 5, 8), shapes, torch.tensor([0, 4]))


def test_deformable_detr_initialisation():
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    assert module.sampling_offsets.weight.abs().sum() == 0
    assert module.attention_weights.weight.abs().sum() == 0 and module.attention_weights.bias.abs().sum() == 0
    bias = module.sampling_offsets.bias.view(4, 3, 2, 2)
    # head 0 points along +x, head 1 along +y; point i at distance i+1; same for every level
    torch.testing.assert_close(bias[0, :, 0], torch.tensor([[1.0, 0.0]] * 3))
    torch.testing.assert_close(bias[0, :, 1], torch.tensor([[2.0, 0.0]] * 3))
    torch.testing.assert_close(bias[1, :, 1], torch.tensor([[0.0, 2.0]] * 3), atol=1e-6, rtol=0)
    assert module.value_proj.bias.abs().sum() == 0 and module.output_proj.bias.abs().sum() == 0


@pytest.mark.parametrize("shapes", [[(3, 4), (2, 2)], [(6, 5)], [(4, 6), (2, 3), (1, 2)]])
def test_fast_core_is_the_same_function(shapes):
    """The fast arrangement (MODEL.FAST_INFERENCE) against the python-loop computation and the
    release's arrangement, locations inside, on borders and outside the maps."""
    g = torch.Generator().manual_seed(len(shapes))
    n, m, d, lq, num_points = 2, 3, 4, 7, 3
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, generator=g)
    locations = torch.rand(n, lq, m, len(shapes), num_points, 2, generator=g) * 1.4 - 0.2
    weights = torch.rand(n, lq, m, len(shapes), num_points, generator=g)
    fast = ms_deform_attn_core_fast(value, torch.tensor(shapes), locations, weights)
    reference = ms_deform_attn_core_pytorch(value, torch.tensor(shapes), locations, weights)
    assert fast.shape == reference.shape == (n, lq, m * d)
    torch.testing.assert_close(fast, _naive_core(value, shapes, locations, weights), rtol=1e-5, atol=1e-5)
    assert float((fast - reference).abs().max() / reference.abs().max()) < 1e-6


@pytest.mark.parametrize("n_levels, shapes", [(3, [(3, 4)]), (3, [(3, 4), (2, 3), (1, 2)])])
def test_module_takes_the_fast_core_only_without_gradients(monkeypatch, n_levels, shapes):
    """With fast_inference, calls under no_grad go through the fast core (also for the release's
    one-level-into-three-levels layout) and equal the release arithmetic up to rounding; calls
    with gradients, or with fast_inference off, run the release arithmetic bit for bit."""
    from frozenseg.layers import ms_deform_attn as module_file

    calls = []
    monkeypatch.setattr(module_file, "ms_deform_attn_core_fast",
                        lambda *a: calls.append(1) or ms_deform_attn_core_fast(*a))
    module = _randomised_module(n_levels=n_levels, seed=5)
    g = torch.Generator().manual_seed(6)
    s = sum(h * w for h, w in shapes)
    query, inp = torch.randn(2, 5, 8, generator=g), torch.randn(2, s, 8, generator=g)
    ref = torch.rand(2, 5, len(shapes), 2, generator=g)
    args = (query, ref, inp, torch.tensor(shapes), torch.tensor([0] * len(shapes)), None)
    with_grad = module(*args).detach()
    assert not calls
    with torch.no_grad():
        fast = module(*args)
        assert len(calls) == 1
        module.fast_inference = False
        off = module(*args)
    assert len(calls) == 1
    assert torch.equal(off, with_grad)
    assert float((fast - with_grad).abs().max() / with_grad.abs().max()) < 1e-5
