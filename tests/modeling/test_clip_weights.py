"""Tests of the CLIP weight resolution (clip_weights.py): tags, local files, caches, offline mode."""

from __future__ import annotations

import open_clip
import pytest
import torch

from frozenseg.modeling.backbone import (
    CLIPBackbone,
    CLIPWeightsNotFoundError,
    CLIPWeightsUnavailableError,
    UnknownCLIPPretrainedTagError,
)
from frozenseg.modeling.backbone import clip_weights

from .tiny_clip import build_tiny_clip


@pytest.mark.slow
def test_local_weights_file_roundtrip(tmp_path):
    src = build_tiny_clip("convnext")
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(src.clip_model.state_dict(), path)
    dst = CLIPBackbone(model_name="tiny_convnext_clip", pretrained=str(path))
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k
    assert dst.weights_source == str(path)
    assert dst.text_cache_identity() == src.text_cache_identity()


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(UnknownCLIPPretrainedTagError) as e:
        CLIPBackbone(model_name="convnext_large_d_320", pretrained="laion_typo", load_pretrained=False, device="meta")
    assert "laion2b_s29b_b131k_ft_soup" in str(e.value)


def test_offline_tag_error_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(open_clip, "download_pretrained", no_download)
    with pytest.raises(CLIPWeightsUnavailableError) as e:
        CLIPBackbone(model_name="convnext_large_d_320", pretrained="laion2b_s29b_b131k_ft_soup")
    msg = str(e.value)
    assert "not in the local cache" in msg
    assert "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS" in msg and "open_clip_pytorch_model.bin" in msg


def test_download_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(clip_weights, "_cached_tag_file", lambda cfg, cache_dir: None)

    def failing_download(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(open_clip, "download_pretrained", failing_download)
    with pytest.raises(CLIPWeightsUnavailableError, match="Network is unreachable.*CLIP_PRETRAINED_WEIGHTS"):
        CLIPBackbone(model_name="RN50x64", pretrained="openai")


def test_missing_local_file(tmp_path):
    missing = tmp_path / "nowhere" / "open_clip_pytorch_model.bin"
    with pytest.raises(CLIPWeightsNotFoundError) as e:
        CLIPBackbone(model_name="RN50x64", pretrained=str(missing))
    assert str(missing) in str(e.value) and isinstance(e.value, FileNotFoundError)
