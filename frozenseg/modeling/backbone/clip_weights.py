"""Pretrained CLIP weights: tag and file resolution, the local caches, offline mode, loading.

``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` (and OVSeg's ``MODEL.CLIP_ADAPTER.CLIP_WEIGHTS``) is
an open_clip pretrained tag (e.g. ``laion2b_s29b_b131k_ft_soup``, or ``openai`` for the OpenAI
weights), a local weights file, or "" (random weights). A tag is looked up
in the local caches first (Hugging Face hub cache, open_clip's URL cache) and downloaded only
when the Hugging Face offline switches (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``, read at
call time) are off; every failure names the file to download and the key to set.

``create_clip_model`` builds the open_clip model with the resolved weights (or none, or on the
meta device); ``text_quick_gelu`` decides the text tower's activation from the tag.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import open_clip
import torch

from ...utils.errors import UserInputError

__all__ = [
    "CLIPBackboneError",
    "UnknownCLIPPretrainedTagError",
    "CLIPWeightsNotFoundError",
    "CLIPWeightsUnavailableError",
    "CLIPWeightsLoadError",
    "PretrainedWeights",
    "resolve_pretrained",
    "text_quick_gelu",
    "tag_weights_file",
    "create_clip_model",
]

_WEIGHT_FILE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".safetensors", ".npz", ".npy")
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
#: The key that names the weights in the messages, unless the caller names another.
_CONFIG_KEY = "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS"


class CLIPBackboneError(UserInputError):
    """Base class of the errors raised while building the CLIP backbone."""


class UnknownCLIPPretrainedTagError(CLIPBackboneError, ValueError):
    """``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` is neither a known tag nor a file path."""


class CLIPWeightsNotFoundError(CLIPBackboneError, FileNotFoundError):
    """``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` names a local file that does not exist."""


class CLIPWeightsUnavailableError(CLIPBackboneError, RuntimeError):
    """The weights of a pretrained tag are not cached locally and cannot be downloaded."""


class CLIPWeightsLoadError(CLIPBackboneError, RuntimeError):
    """A local CLIP weights file exists but could not be loaded into the model."""


class PretrainedWeights(NamedTuple):
    """What ``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` names (at most one field is set)."""

    tag: Optional[str]  # a pretrained tag of the model
    file: Optional[str]  # an existing local weights file (``~`` and ``$VARS`` expanded)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_mode() -> bool:
    """True when the Hugging Face offline switches are set (read at call time, not import)."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE")


def _hf_hub_cache_dir() -> str:
    """The Hugging Face hub cache directory as the environment says *now*."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return os.path.join(os.path.expanduser(hf_home), "hub")


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith(("~", "."))
        or value.lower().endswith(_WEIGHT_FILE_SUFFIXES)
    )


def _tag_download_hint(tag_cfg: dict) -> str:
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        repo, fname = os.path.split(hf_hub)
        return f"https://huggingface.co/{repo} (file {fname or _HF_WEIGHTS_NAME})"
    if tag_cfg.get("url"):
        return tag_cfg["url"]
    return "the open_clip release"


def _cached_tag_file(tag_cfg: dict, cache_dir: Optional[str]) -> Optional[str]:
    """Find the weights of a pretrained tag in the local caches without any network access."""
    if tag_cfg.get("file") and os.path.isfile(tag_cfg["file"]):
        return tag_cfg["file"]
    hf_hub = tag_cfg.get("hf_hub", "")
    if hf_hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub is an open_clip dependency
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            repo, fname = os.path.split(hf_hub)
            fname = fname or _HF_WEIGHTS_NAME
            candidates = [fname]
            if fname == _HF_WEIGHTS_NAME:
                candidates.insert(0, _HF_SAFE_WEIGHTS_NAME)
            elif fname.endswith((".bin", ".pth")):
                candidates.insert(0, fname[:-4] + ".safetensors")
            for candidate in candidates:
                found = try_to_load_from_cache(
                    repo, candidate, cache_dir=cache_dir or _hf_hub_cache_dir()
                )
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = tag_cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(target):
            return target
    return None


def resolve_pretrained(
    model_name: str, pretrained: str, *, require_file: bool, config_key: str = _CONFIG_KEY
) -> PretrainedWeights:
    """Classify ``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` without touching the network.

    Args:
        model_name: open_clip model name.
        pretrained: a pretrained tag of ``model_name``, a local file path, or "" (random).
        require_file: a path-like value that names no existing file is an error (False for
            meta-device builds and when the weights are not loaded).
        config_key: the config key that holds ``pretrained``, for the messages (OVSeg:
            ``MODEL.CLIP_ADAPTER.CLIP_WEIGHTS``).
    Raises:
        CLIPWeightsNotFoundError: a path-like value names no file (and ``require_file``).
        UnknownCLIPPretrainedTagError: neither a tag of the model nor a path.
    """
    if not pretrained:
        return PretrainedWeights(None, None)
    if open_clip.is_pretrained_cfg(model_name, pretrained):
        return PretrainedWeights(pretrained, None)
    path = os.path.expandvars(os.path.expanduser(pretrained))
    if os.path.isfile(path):
        return PretrainedWeights(None, path)
    if not _looks_like_path(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise UnknownCLIPPretrainedTagError(
            f"Unknown pretrained tag {pretrained!r} for CLIP model {model_name!r} "
            f"({config_key}); valid tags are: "
            f"{', '.join(tags) if tags else '(none)'}, or give a local weights file path."
        )
    if require_file:
        raise CLIPWeightsNotFoundError(
            f"CLIP weights file {path!r} ({config_key}) "
            f"does not exist; point it to an existing open_clip weights file or to "
            f"a pretrained tag of {model_name!r}."
        )
    return PretrainedWeights(None, None)


def text_quick_gelu(model_name: str, tag: Optional[str]) -> bool:
    """Whether the text tower should use QuickGELU.

    A known tag decides by its own open_clip record. Otherwise (local file, random weights, or
    weights supplied later by a checkpoint) QuickGELU is used iff *every* pretrained tag of the
    model was trained with it: ``RN50x64`` exists only as OpenAI weights (QuickGELU), and the
    released FrozenSeg loaded them through open_clip's OpenAI loader, which builds QuickGELU.
    """
    if tag is not None:
        return bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    cfgs = [open_clip.get_pretrained_cfg(model_name, t) for t in tags]
    return bool(cfgs) and all(c.get("quick_gelu", False) for c in cfgs)


def tag_weights_file(model_name: str, tag: str, cache_dir: Optional[str], config_key: str = _CONFIG_KEY) -> str:
    """Local path of a pretrained tag's weights: cache first, then download when online.

    ``config_key`` names the key that holds the tag, for the messages.

    Raises:
        CLIPWeightsUnavailableError: not cached and offline, or the download failed.
    """
    tag_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    hint = (
        f"download {_tag_download_hint(tag_cfg)} on a machine with network access and set "
        f"{config_key} to the local file path (e.g. "
        f".../{_HF_WEIGHTS_NAME})"
    )
    cached = _cached_tag_file(tag_cfg, cache_dir)
    if cached is not None:
        return cached
    if _offline_mode():
        raise CLIPWeightsUnavailableError(
            f"The weights of CLIP {model_name!r} tag {tag!r} are not in the local cache and "
            f"downloads are disabled (HF_HUB_OFFLINE); {hint}."
        )
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as e:
        raise CLIPWeightsUnavailableError(
            f"The weights of CLIP {model_name!r} tag {tag!r} are not in the local cache and "
            f"could not be downloaded ({type(e).__name__}: {e}); {hint}."
        ) from e
    if not path or not os.path.isfile(path):
        raise CLIPWeightsUnavailableError(
            f"The weights of CLIP {model_name!r} tag {tag!r} could not be located; {hint}."
        )
    return path


def create_clip_model(
    model_name: str,
    *,
    checkpoint_path: Optional[str],
    device: torch.device,
    quick_gelu: bool,
    cache_dir: Optional[str],
) -> torch.nn.Module:
    """open_clip ``CLIP`` model with the weights of ``checkpoint_path`` (None: random).

    On the meta device nothing is allocated and ``checkpoint_path`` must be None.

    Raises:
        CLIPWeightsLoadError: the file exists but is not a loadable open_clip state dict.
    """
    kwargs = dict(device=device, force_quick_gelu=quick_gelu, weights_only=True)
    if device.type == "meta":
        with torch.device("meta"):
            return open_clip.create_model(model_name, pretrained=None, **kwargs)
    try:
        return open_clip.create_model(model_name, pretrained=checkpoint_path, cache_dir=cache_dir, **kwargs)
    except Exception as e:
        if checkpoint_path is None:
            raise
        raise CLIPWeightsLoadError(
            f"Could not load CLIP weights from {checkpoint_path!r} into {model_name!r} "
            f"({type(e).__name__}: {e}); expected an open_clip state dict (e.g. "
            f"{_HF_WEIGHTS_NAME} or .safetensors) loadable with torch.load(weights_only=True)."
        ) from e
