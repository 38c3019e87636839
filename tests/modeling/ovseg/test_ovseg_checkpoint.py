"""OVSeg checkpoints: the released layouts load on the meta device with nothing missing or
dropped; the CLIP is a frozen part a checkpoint may omit (model property ``frozen_parts``); the
one-sentence refusals (mask-prompt depth, missing mask prompts, CLIP width) for checkpoints and
CLIP weight files; ``load_frozen_weights=False`` reads no file; CLIP tags resolve through the
shared ``clip_weights`` (docs/models/ovseg.md §4, §9.1, quirks 18 and 20)."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

import frozenseg
from frozenseg.checkpoint import checkpoint_has_frozen_weights
from frozenseg.modeling.backbone.clip_weights import CLIPWeightsUnavailableError
from frozenseg.models.frozenseg import FrozenSeg
from frozenseg.models.ovseg import OVSeg
from frozenseg.utils.errors import CheckpointError

from ...conftest import REPO_ROOT
from .conftest import LAYOUTS
from .test_ovseg_model import NAMES, run, tiny_cfg, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP_PREFIX = "clip_adapter.clip_model."
MASK_KEY = CLIP_PREFIX + "visual.mask_embedding"


def released_cfg(layout: str):
    """The released architectures' settings (docs/models/ovseg.md §2.2-2.5, §5) on the project defaults."""
    cfg = frozenseg.get_cfg()
    opts = [
        "MODEL.META_ARCHITECTURE", "OVSeg",
        "MODEL.SEM_SEG_HEAD.NAME", "OpenVocabMaskFormerHead",
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "BasePixelDecoder",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 171,
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "res5",
        "MODEL.MASK_FORMER.DEC_LAYERS", 6,
        "MODEL.MASK_FORMER.DROPOUT", 0.1,
        "MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD", True,
    ]
    if layout == "swinB_vitL14":
        opts += [
            "MODEL.BACKBONE.NAME", "D2SwinTransformer",
            "MODEL.SWIN.EMBED_DIM", 128, "MODEL.SWIN.DEPTHS", [2, 2, 18, 2], "MODEL.SWIN.NUM_HEADS", [4, 8, 16, 32],
            "MODEL.SWIN.WINDOW_SIZE", 12, "MODEL.SWIN.PRETRAIN_IMG_SIZE", 384,
            "MODEL.SEM_SEG_HEAD.EMBEDDING_DIM", 768, "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME", "ViT-L/14",
        ]
    else:
        opts += [
            "MODEL.BACKBONE.NAME", "build_resnet_deeplab_backbone", "MODEL.BACKBONE.FREEZE_AT", 2,
            "MODEL.RESNETS.DEPTH", 101, "MODEL.RESNETS.STEM_TYPE", "deeplab", "MODEL.RESNETS.STEM_OUT_CHANNELS", 128,
            "MODEL.RESNETS.STRIDE_IN_1X1", False, "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
            "MODEL.RESNETS.RES5_MULTI_GRID", [1, 2, 4],
            "MODEL.SEM_SEG_HEAD.EMBEDDING_DIM", 512, "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME", "ViT-B/16",
        ]
    cfg.merge_from_list(opts)
    return cfg


def _meta_state(layout: dict) -> dict[str, torch.Tensor]:
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.empty(shape, dtype=dtypes[dt], device="meta") for k, (shape, dt) in layout.items()}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.slow
def test_released_layout_loads_on_meta_with_nothing_missing_or_dropped(layout):
    released = json.loads(LAYOUTS[layout].read_text())
    model = frozenseg.build_model(released_cfg(layout), device="meta")
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    assert ours == released  # incl. criterion.empty_weight (172,) and visual.mask_embedding
    report = frozenseg.load_checkpoint(model, {"model": _meta_state(released)})
    assert report.ok and report.loaded == sorted(released)
    assert report.dropped_unused == [] and report.frozen_not_in_checkpoint == {}

    without_clip = {k: v for k, v in _meta_state(released).items() if not k.startswith(CLIP_PREFIX)}
    report = frozenseg.load_checkpoint(model, without_clip)
    assert report.ok and report.frozen_not_in_checkpoint == {CLIP_PREFIX: "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"}


@pytest.mark.slow
def test_round_trip_and_frozen_weights_detection(tmp_path):
    source, target = tiny_model("swin", seed=0), tiny_model("swin", seed=1)
    before = run(target, NAMES)  # caches the text classifier of the old text weights
    report = frozenseg.load_checkpoint(target, {"model": source.state_dict()})
    assert report.ok and report.frozen_not_in_checkpoint == {}
    assert torch.equal(run(target, NAMES), run(source, NAMES)) and not torch.equal(before, run(source, NAMES))

    full, trainable = tmp_path / "full.pth", tmp_path / "trainable.pth"
    torch.save({"model": source.state_dict()}, full)
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith(CLIP_PREFIX)}, trainable)
    assert checkpoint_has_frozen_weights(str(full), OVSeg.frozen_parts)
    assert not checkpoint_has_frozen_weights(str(trainable), OVSeg.frozen_parts)
    assert not checkpoint_has_frozen_weights(str(full), FrozenSeg.frozen_parts)  # FrozenSeg's frozen parts are not there


def test_checkpoint_mask_prompt_depth_and_width_are_named():
    model = tiny_model("swin")
    state = model.state_dict()
    shallow = dict(state, **{MASK_KEY: state[MASK_KEY][:2]})
    with pytest.raises(CheckpointError) as info:
        frozenseg.load_checkpoint(model, shallow)
    msg = str(info.value)
    assert MASK_KEY in msg and "depth 2" in msg and "MASK_PROMPT_DEPTH is 3" in msg and "\n" not in msg

    narrow = dict(state, **{CLIP_PREFIX + "visual.conv1.weight": torch.zeros(48, 3, 14, 14)})
    with pytest.raises(CheckpointError, match=r"width 48 .* width 64; set CLIP_MODEL_NAME"):
        frozenseg.load_checkpoint(model, narrow)


@pytest.mark.slow
def test_checkpoint_without_mask_prompts_needs_an_explicit_choice():
    """Quirk 18: zero prompts are not vanilla CLIP, so MASK_PROMPT_FWD True refuses them unless
    MODEL.CLIP_ADAPTER.ALLOW_ZERO_MASK_PROMPTS says otherwise."""
    state = {k: v for k, v in tiny_model("swin").state_dict().items() if k != MASK_KEY}
    with pytest.raises(CheckpointError, match="no clip_adapter.clip_model.visual.mask_embedding .*ALLOW_ZERO_MASK_PROMPTS True"):
        frozenseg.load_checkpoint(tiny_model("swin"), state)
    report = frozenseg.load_checkpoint(tiny_model("swin", "MODEL.CLIP_ADAPTER.ALLOW_ZERO_MASK_PROMPTS", True), state)
    assert report.missing == [MASK_KEY]
    report = frozenseg.load_checkpoint(tiny_model("swin", "MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD", False), state)
    assert report.missing == [MASK_KEY]


def _clip_file(tmp_path, name: str, width: int = 64, mask_depth: int = 0) -> str:
    torch.manual_seed(3)
    clip = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 56, "patch_size": 14, "width": width, "layers": 4, "head_width": width // 2},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        quick_gelu=True,
    )
    state = clip.state_dict()
    if mask_depth:
        state["visual.mask_embedding"] = torch.randn(mask_depth, 16, width)
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


@pytest.mark.slow
def test_clip_weights_file_checks(tmp_path):
    narrow = _clip_file(tmp_path, "narrow.pt", width=48)
    with pytest.raises(CheckpointError, match=r"narrow.pt' holds a CLIP ViT of width 48 .* width 64"):
        frozenseg.build_model(tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", narrow))
    plain = _clip_file(tmp_path, "openai.pt")
    with pytest.raises(CheckpointError, match="no visual.mask_embedding but MODEL.CLIP_ADAPTER.MASK_PROMPT_FWD is True"):
        frozenseg.build_model(tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", plain))
    model = frozenseg.build_model(
        tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", plain, "MODEL.CLIP_ADAPTER.ALLOW_ZERO_MASK_PROMPTS", True)
    )
    assert torch.equal(model.clip_adapter.clip_model.visual.conv1.weight, torch.load(plain)["visual.conv1.weight"])
    assert torch.count_nonzero(model.clip_adapter.clip_model.visual.mask_embedding) == 0
    prompted = _clip_file(tmp_path, "mpt.pt", mask_depth=3)
    model = frozenseg.build_model(tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", prompted))
    assert torch.equal(model.clip_adapter.clip_model.visual.mask_embedding, torch.load(prompted)["visual.mask_embedding"])


def test_load_frozen_weights_false_reads_no_file(tmp_path, monkeypatch):
    weights = _clip_file(tmp_path, "mpt.pt", mask_depth=3)
    cfg = tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", weights)

    def refuse(*args, **kwargs):
        raise AssertionError("a weights file was read")

    for owner, name in [(torch, "load"), (torch.jit, "load"), (open_clip, "load_checkpoint")]:
        monkeypatch.setattr(owner, name, refuse)
    model = frozenseg.build_model(cfg, load_frozen_weights=False)
    assert torch.count_nonzero(model.clip_adapter.clip_model.visual.mask_embedding) == 0
    with pytest.raises(AssertionError, match="was read"):  # the same build with loading does read it
        frozenseg.build_model(cfg)


def test_clip_tag_resolves_through_the_shared_resolver(tmp_path, monkeypatch):
    """The release's CLIP_MODEL_NAME 'ViT-B/16' with CLIP_WEIGHTS 'openai' is open_clip's
    ViT-B-16-quickgelu tag 'openai', looked up in the local caches only when offline."""
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_cfg("swin", "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME", "ViT-B/16")  # refused before building the CLIP
    cfg.MODEL.CLIP_ADAPTER.CLIP_WEIGHTS = "openai"
    with pytest.raises(CLIPWeightsUnavailableError, match=r"'ViT-B-16-quickgelu' tag 'openai' .* MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"):
        frozenseg.build_model(cfg)
    cfg.MODEL.CLIP_ADAPTER.CLIP_WEIGHTS = "laion_nonsense"
    with pytest.raises(ValueError, match="Unknown pretrained tag 'laion_nonsense' .*MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"):
        frozenseg.build_model(cfg, device="meta")


def test_released_config_builds_for_evaluation_without_the_training_class_list(tmp_path):
    """Evaluating ADE-150 needs no COCO-Stuff class list (it comes from an ov-seg checkout): the
    model builds; training then refuses in one sentence naming the prepare command."""
    import frozenseg
    from frozenseg.data import register_all_builtin
    from frozenseg.data.builtin import _REGISTERED_ROOT
    from frozenseg.utils.errors import is_user_error

    before = _REGISTERED_ROOT.get("ade20k_sem_seg_val")
    register_all_builtin(str(tmp_path))  # no ovseg_vocabularies/ there
    try:
        cfg = frozenseg.get_cfg()
        cfg.merge_from_file(str(REPO_ROOT / "configs/ovseg/eval/ovseg_R101c_vitB_eval_ade150.yaml"))
        model = frozenseg.build_model(cfg, device="meta", load_frozen_weights=False)
    finally:
        register_all_builtin(before)
    assert model.train_class_names is None and "prepare_ovseg_vocabularies.py" in model.missing_train_vocabulary
    model.train()
    with pytest.raises(ValueError, match="prepare_ovseg_vocabularies.py") as e:
        model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}])
    assert is_user_error(e.value)
