"""CLIP adaptation on mined pairs (docs/models/ovseg.md §3.B2-3.C; frozenseg.models.ovseg.adaptation.clip_training,
frozenseg.models.ovseg.adaptation.splice, tools/train_clip_adapter.py, tools/ovseg_replace_clip.py)
with the tiny random CLIP tiny_vit_clip (56 px) on four synthetic pairs: what each mode may
change, the loss on a hand-made 2x2 case, the release's defaults, the schedule, the parameter
groups, an exact resume, loading the result into a tiny OVSeg, the splice, a two-process run and
the command line."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch

import frozenseg
from frozenseg.models.ovseg.adaptation.mask_noun_pairs import read_pair_index, write_image_pairs, write_pair_index
from frozenseg.models.ovseg.adaptation.clip_training import (
    AdaptationSettings,
    CLIPAdaptationTrainer,
    PairDataset,
    adaptation_param_groups,
    clip_contrastive_loss,
    cosine_lr,
    epoch_batches,
    setup_run,
)
from frozenseg.engine.launch import launch
from frozenseg.models.ovseg.adaptation.splice import ovseg_checkpoint_clip, splice_clip, splice_clip_file
from frozenseg.utils.errors import CheckpointError

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TITLES = ["dog", "cat", "car", "tree"]
MASK_EMBEDDING = "visual.mask_embedding"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for i, title in enumerate(TITLES):
        crop = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
        mask = np.zeros((56, 56), bool)
        mask[4 * i:30 + 4 * i, 10:40 - 5 * i] = True
        write_image_pairs(str(out), i, [(crop, mask, {"title": title})])
    return write_pair_index(str(out))[0]


def settings(mode: str, **kw) -> AdaptationSettings:
    base = dict(clip_model="tiny_vit_clip", clip_weights="", batch_size=2, epochs=1, workers=0, warmup_steps=1,
                log_period=1)
    return AdaptationSettings(mode, **{**base, **kw})


def train(mode: str, pairs: str, out, **kw):
    trainer = CLIPAdaptationTrainer(settings(mode, **kw), pairs, str(out))
    before = trainer.clip_state_dict()
    final = trainer.train()
    return before, torch.load(final, weights_only=True), trainer


@pytest.fixture(scope="module")
def mask_prompt_run(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("mpt")
    before, after, trainer = train("mask_prompt", pairs, out)
    torch.save(before, out / "initial.pth")
    return out, before, after


def test_release_defaults():
    ft, mpt = AdaptationSettings("finetune"), AdaptationSettings("mask_prompt")
    assert (ft.lr, ft.weight_decay, mpt.lr, mpt.weight_decay) == (5e-6, 0.2, 0.05, 0.0)
    assert (ft.betas, ft.eps, ft.warmup_steps, ft.epochs, ft.batch_size, ft.crop_scale) == (
        (0.9, 0.98), 1e-6, 100, 5, 32, (0.9, 1.0))
    assert (ft.clip_model, ft.clip_weights, ft.mask_prompt_depth) == ("ViT-L/14", "openai", 3)
    with pytest.raises(ValueError, match="Unknown mode"):
        AdaptationSettings("prompt")
    with pytest.raises(ValueError, match="mask-prompt-depth >= 1"):
        AdaptationSettings("mask_prompt", mask_prompt_depth=0)


def test_loss_on_a_hand_made_2x2_case():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    # logits = 10 * [[0.6, 1.0], [0.8, 0.0]]; rows: image -> text, columns: text -> image
    rows = -math.log(math.exp(6) / (math.exp(6) + math.exp(10))) - math.log(1 / (math.exp(8) + 1))
    cols = -math.log(math.exp(6) / (math.exp(6) + math.exp(8))) - math.log(1 / (math.exp(10) + 1))
    expected = 0.5 * (rows / 2 + cols / 2)
    assert float(clip_contrastive_loss(image, text, torch.tensor(10.0))) == pytest.approx(expected, rel=1e-6)


def test_schedule_batches_and_groups(pairs):
    assert cosine_lr(0, 1.0, 100, 1000) == pytest.approx(0.01) and cosine_lr(99, 1.0, 100, 1000) == 1.0
    assert cosine_lr(100, 1.0, 100, 1000) == 1.0 and cosine_lr(550, 1.0, 100, 1000) == pytest.approx(0.5)
    assert cosine_lr(999, 1.0, 100, 1000) == pytest.approx(0.5 * (1 + math.cos(math.pi * 899 / 900)))
    one = epoch_batches(10, 2, 3, 0)
    assert len(one) == 5 and sorted(i for b in one for i in b) == list(range(10))
    assert one == epoch_batches(10, 2, 3, 0) and one != epoch_batches(10, 2, 4, 0)
    r0, r1 = epoch_batches(10, 2, 3, 0, 0, 2), epoch_batches(10, 2, 3, 0, 1, 2)
    assert len(r0) == len(r1) == 2 and not {i for b in r0 for i in b} & {i for b in r1 for i in b}
    assert [r0[0][0], r1[0][0], r0[0][1], r1[0][1]] == [i for b in [one[0], one[1]] for i in b]  # global order
    trainer = CLIPAdaptationTrainer(settings("finetune"), pairs, "unused")
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert {"clip_model.visual.conv1.weight", "clip_model.visual.proj", "clip_model.visual.positional_embedding"} <= set(
        decay["param_names"])  # >= 2-D and no excluded name part: decayed, as in the release
    assert {"clip_model.logit_scale", "clip_model.visual.class_embedding", "clip_model.visual.ln_pre.weight"} <= set(
        no_decay["param_names"])
    assert not any(".transformer.resblocks" in n and "visual" not in n for g in (decay, no_decay) for n in g["param_names"])
    assert [g["param_names"] for g in adaptation_param_groups(trainer.model, 0.2)] == [
        decay["param_names"], no_decay["param_names"]]


def test_augmentation_crops_image_and_mask_alike(pairs):
    rows = read_pair_index(pairs)
    ds = PairDataset(rows, 56, scale=(0.5, 0.5), seed=1)
    image, mask, title = ds[2]
    assert image.shape == (3, 56, 56) and mask.shape == (1, 56, 56) and title == "car"
    assert torch.equal(ds[2][0], image)  # a function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], image)
    # the crop's filled background (124, 116, 103) is where the mask is 0, away from mask edges
    fill = (torch.tensor([124.0, 116.0, 103.0]) / 255 - ds.mean.flatten()) / ds.std.flatten()
    inner = torch.nn.functional.max_pool2d(mask, 9, 1, 4) == 0  # background far from any foreground
    assert inner.any() and torch.allclose(image[:, inner[0]], fill[:, None].expand(3, int(inner.sum())), atol=0.02)
    core = torch.nn.functional.max_pool2d(1 - mask, 9, 1, 4) == 0  # foreground far from the background
    assert core.any() and ((image[:, core[0]] - fill[:, None]).abs().amax(0) > 0.05).float().mean() > 0.9


def test_mask_prompt_mode_changes_only_the_mask_embedding(mask_prompt_run):
    out, before, after = mask_prompt_run
    assert before.keys() == after.keys() and MASK_EMBEDDING in after
    assert 0.01 < float(before[MASK_EMBEDDING].std()) < 0.03  # normal(std 0.02) when the weights have none
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert changed == [MASK_EMBEDDING]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1] and all(math.isfinite(m["loss_contrastive"]) for m in metrics)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out))  # TensorBoard
    ckpt = torch.load(out / "checkpoints" / "epoch_1.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.equal(ckpt["state_dict"][k], after[k]) for k in after)


def test_finetune_mode_keeps_the_text_tower(pairs, tmp_path):
    before, after, trainer = train("finetune", pairs, tmp_path, lr=1e-4)
    assert MASK_EMBEDDING not in after  # the starting weights had none (it would be zeros)
    assert MASK_EMBEDDING in trainer.model.clip_model.state_dict()
    text = [k for k in after if not k.startswith("visual.") and k != "logit_scale"]
    assert "text_projection" in text and "token_embedding.weight" in text
    assert all(torch.equal(before[k], after[k]) for k in text)
    visual = [k for k in after if k.startswith("visual.")]
    assert sum(not torch.equal(before[k], after[k]) for k in visual) == len(visual)
    assert after["logit_scale"] <= math.log(100)


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss(pairs, tmp_path):
    train("finetune", pairs, tmp_path, lr=1e-3, batch_size=4, epochs=8)  # one 4-pair step per epoch
    losses = [json.loads(line)["loss_contrastive"] for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert len(losses) == 8 and losses[-1] < 0.85 * losses[0] and losses[-1] < min(losses[:-1])


@pytest.mark.slow
def test_resume_continues_exactly(pairs, tmp_path, monkeypatch):
    _, straight, _ = train("mask_prompt", pairs, tmp_path / "a", epochs=2)
    interrupted = CLIPAdaptationTrainer(settings("mask_prompt", epochs=2), pairs, str(tmp_path / "b"))
    save = interrupted._save_checkpoint

    def save_then_stop(epoch, storage):
        save(epoch, storage)
        raise KeyboardInterrupt

    monkeypatch.setattr(interrupted, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert not (tmp_path / "b" / "clip_final.pth").exists()
    resumed = CLIPAdaptationTrainer(settings("mask_prompt", epochs=2), pairs, str(tmp_path / "b"), resume=True)
    assert resumed.start_epoch == 1
    final = torch.load(resumed.train(), weights_only=True)
    assert final.keys() == straight.keys() and all(torch.equal(final[k], straight[k]) for k in final)
    a = torch.load(tmp_path / "a" / "checkpoints" / "epoch_2.pt", weights_only=True)["optimizer"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "epoch_2.pt", weights_only=True)["optimizer"]
    assert all(torch.equal(a["state"][0][k], b["state"][0][k]) for k in a["state"][0])
    with pytest.raises(ValueError, match="trained with mode 'mask_prompt'"):
        CLIPAdaptationTrainer(settings("finetune"), pairs, str(tmp_path / "b"), resume=True)


def tiny_ovseg(weights: str):
    """The tiny OVSeg with these CLIP weights, classifying the proposals by CLIP alone."""
    torch.manual_seed(0)
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml"))
    cfg.merge_from_list(["MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", weights, "MODEL.CLIP_ADAPTER.MASK_THR", 0.65,
                         "MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT", 0.0])
    return frozenseg.build_model(cfg).eval()


@pytest.mark.slow
def test_output_loads_into_ovseg_and_changes_its_predictions(mask_prompt_run):
    out, _, after = mask_prompt_run
    adapted, initial = tiny_ovseg(str(out / "clip_final.pth")), tiny_ovseg(str(out / "initial.pth"))
    own = adapted.clip_adapter.clip_model.state_dict()
    assert own.keys() == after.keys() and all(torch.equal(own[k], after[k]) for k in after)
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = adapted([{"image": image}])[0]["sem_seg"], initial([{"image": image}])[0]["sem_seg"]
    assert not torch.equal(a, b)  # the masks above 0.6 leave background patches: the prompts matter
    regions = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(2, 1, 56, 56)
    masks[:, :, :20, :30] = 1
    fa, fb = adapted.clip_adapter.encode_regions(regions, masks), initial.clip_adapter.encode_regions(regions, masks)
    assert float((fa * fb).sum(-1).min()) < 0.99  # the adapted CLIP embeds masked crops differently
    # an epoch checkpoint ({"state_dict": ...}, the OpenCLIP layout) loads too
    assert tiny_ovseg(str(out / "checkpoints" / "epoch_1.pt")) is not None


def test_splice_writes_exactly_the_replaced_keys(mask_prompt_run, pairs, tmp_path):
    out, _, clip = mask_prompt_run
    model_state = tiny_ovseg("").state_dict()
    torch.save({"model": model_state, "iteration": 7}, tmp_path / "ovseg.pth")
    replaced = splice_clip_file(str(tmp_path / "ovseg.pth"), str(out / "checkpoints" / "epoch_1.pt"),
                                str(tmp_path / "spliced.pth"))
    new = torch.load(tmp_path / "spliced.pth", weights_only=True)
    assert new["iteration"] == 7 and new["model"].keys() == model_state.keys()
    assert sorted(replaced) == sorted("clip_adapter.clip_model." + k for k in clip)
    for k, v in new["model"].items():
        expected = clip[k.removeprefix("clip_adapter.clip_model.")] if k in replaced else model_state[k]
        assert torch.equal(v, expected), k
    # a CLIP without mask prompts keeps the checkpoint's own (the release's behaviour)
    no_prompts = {k: v for k, v in clip.items() if k != MASK_EMBEDDING}
    state, keys = splice_clip(model_state, no_prompts)
    assert "clip_adapter.clip_model." + MASK_EMBEDDING not in keys
    assert torch.equal(state["clip_adapter.clip_model." + MASK_EMBEDDING], model_state["clip_adapter.clip_model." + MASK_EMBEDDING])
    # a checkpoint without CLIP weights receives all of them
    bare = {k: v for k, v in model_state.items() if not k.startswith("clip_adapter.clip_model.")}
    assert len(splice_clip(bare, clip)[1]) == len(clip)
    wide = dict(clip, **{"visual.conv1.weight": torch.zeros(32, 3, 14, 14)})
    with pytest.raises(CheckpointError, match="width 32 and patch 14 but the OVSeg checkpoint's is of width 64"):
        splice_clip(model_state, wide)
    shallow = {k: v for k, v in clip.items() if not k.startswith("visual.transformer.resblocks.3.")}
    with pytest.raises(CheckpointError, match="3 image-encoder blocks but the OVSeg checkpoint's CLIP has 4"):
        splice_clip(model_state, shallow)
    # the command line: same file; a mismatch is one sentence and exit status 2
    spec = importlib.util.spec_from_file_location("splice_tool", REPO_ROOT / "tools" / "ovseg_replace_clip.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--ovseg", str(tmp_path / "ovseg.pth"), "--clip", str(out / "clip_final.pth"),
                      "--output", str(tmp_path / "cli.pth")]) == 0
    cli = torch.load(tmp_path / "cli.pth", weights_only=True)["model"]
    assert all(torch.equal(cli[k], new["model"][k]) for k in cli)
    torch.save(shallow, tmp_path / "shallow.pth")
    with pytest.raises(SystemExit) as e:
        tool.main(["--ovseg", str(tmp_path / "ovseg.pth"), "--clip", str(tmp_path / "shallow.pth"),
                   "--output", str(tmp_path / "bad.pth")])
    assert e.value.code == 2 and not (tmp_path / "bad.pth").exists()


def _ddp_worker(pairs: str, output: str) -> None:
    """One of two gloo processes: 1 pair per process (module-level: spawned processes import it)."""
    setup_run(output)
    CLIPAdaptationTrainer(settings("mask_prompt", batch_size=1), pairs, output).train()


@pytest.mark.slow
def test_two_processes(pairs, tmp_path, mask_prompt_run):
    """gloo DDP, 2 processes x 1 pair = the 2-pair batch of the single-process run: the first
    step's loss (before any update) is the same, over the gathered features."""
    out = tmp_path / "ddp"
    launch(_ddp_worker, 2, dist_url="auto", args=(pairs, str(out)))
    ddp = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    single = [json.loads(line) for line in (mask_prompt_run[0] / "metrics.json").read_text().splitlines()]
    assert len(ddp) == 2 and ddp[0]["loss_contrastive"] == pytest.approx(single[0]["loss_contrastive"], rel=1e-5)
    assert (out / "clip_final.pth").exists() and (out / "log.txt").exists() and (out / "log.txt.rank1").exists()


def test_command_line_defaults_and_usage_error(capsys):
    spec = importlib.util.spec_from_file_location("train_tool", REPO_ROOT / "tools" / "train_clip_adapter.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.get_parser().parse_args(["--mode", "mask_prompt", "--pairs", "p.tsv", "--output", "o"])
    s = tool.settings_from_args(args)
    assert (s.lr, s.weight_decay, s.betas, s.eps, s.warmup_steps, s.epochs, s.batch_size, s.clip_model) == (
        0.05, 0.0, (0.9, 0.98), 1e-6, 100, 5, 32, "ViT-L/14")
    with pytest.raises(SystemExit) as e:
        tool.main(["--mode", "mask_prompt", "--mask-prompt-depth", "0", "--pairs", "p.tsv", "--output", "o"])
    assert e.value.code == 2 and "needs --mask-prompt-depth >= 1" in capsys.readouterr().err


def test_bfloat16_autocast_on_cpu(pairs, tmp_path):
    before, after, trainer = train("finetune", pairs, tmp_path, lr=1e-4, amp=True, amp_dtype="bfloat16")
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    assert all(v.dtype == before[k].dtype for k, v in after.items())
    assert not torch.equal(before["visual.conv1.weight"], after["visual.conv1.weight"])


def test_an_ovseg_checkpoint_as_starting_weights(tmp_path):
    """--clip-weights may name an OVSeg checkpoint (stage A's model_final.pth): the adaptation
    starts from the CLIP inside it; a CLIP file or a tag is not mistaken for one."""
    model_state = tiny_ovseg("").state_dict()
    torch.save({"model": model_state, "iteration": 3}, tmp_path / "ovseg.pth")
    clip = ovseg_checkpoint_clip(str(tmp_path / "ovseg.pth"))
    assert clip.keys() == {k.removeprefix("clip_adapter.clip_model.") for k in model_state
                           if k.startswith("clip_adapter.clip_model.")}
    torch.save(clip, tmp_path / "clip.pth")
    assert ovseg_checkpoint_clip(str(tmp_path / "clip.pth")) is None and ovseg_checkpoint_clip("openai") is None
    trainer = CLIPAdaptationTrainer(settings("finetune", clip_weights=str(tmp_path / "ovseg.pth"), seed=5),
                                    [{"filepath": "unused", "title": "dog"}] * 2, str(tmp_path / "out"))
    start = trainer.model.clip_model.state_dict()
    assert all(torch.equal(start[k], clip[k]) for k in clip)
    wide = {k: v for k, v in model_state.items() if "visual.transformer.resblocks.3." not in k}
    torch.save({"model": wide}, tmp_path / "shallow.pth")
    with pytest.raises(ValueError, match="is not a tiny_vit_clip CLIP"):
        CLIPAdaptationTrainer(settings("finetune", clip_weights=str(tmp_path / "shallow.pth")),
                              [{"filepath": "unused", "title": "dog"}] * 2, str(tmp_path / "out2"))


#: The mining thresholds docs/getting_started.md gives for the shapes set: every noun takes its
#: most similar proposal (one noun per proposal). With the random tiny CLIP every crop embeds
#: alike: the best proposal leads the runner-up by about 0.001, below the default --margin 0.01,
#: so the defaults mine nothing there.
SHAPES_MINING_FLAGS = ["--min-similarity", "-1", "--margin", "0"]
#: Pairs they mine from the 6-image set of the chain test below.
NUM_PAIRS = 8


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_shapes_mining_flags():
    text = (REPO_ROOT / "docs" / "getting_started.md").read_text(encoding="utf-8")
    assert " ".join(SHAPES_MINING_FLAGS) in text


@pytest.mark.slow
def test_stages_b1_to_c_on_the_shapes_set(tmp_path):
    """OVSeg's stages B1-C in miniature, with the commands of docs/getting_started.md: captions
    for a 6-image shapes set, pairs mined with the documented thresholds by a (random, untrained)
    tiny OVSeg of configs/synthetic/ovseg_tiny_shapes.yaml, fine-tuning from that checkpoint's
    CLIP, mask prompt tuning, and the splice."""
    from frozenseg.data.synthetic import make_shapes

    make_shapes(str(tmp_path / "datasets"), 0, 6, 1, size=64)
    assert _tool("make_synthetic_captions").main(["--root", str(tmp_path / "datasets")]) == 0
    shapes = tmp_path / "datasets" / "synthetic_shapes"
    captions = json.loads((shapes / "train" / "captions.json").read_text())
    assert len(captions["images"]) == len(captions["annotations"]) == 6
    assert (shapes / "nouns.txt").read_text().split() == [
        "circle", "square", "triangle", "star", "sky", "grass", "sand", "water"]

    torch.manual_seed(0)
    cfg = frozenseg.get_cfg()
    config = str(REPO_ROOT / "configs/synthetic/ovseg_tiny_shapes.yaml")
    cfg.merge_from_file(config)
    stage_a = tmp_path / "model_final.pth"
    ovseg_state = frozenseg.build_model(cfg).state_dict()
    torch.save({"model": ovseg_state, "iteration": 799}, stage_a)

    # B1: the default thresholds mine nothing here; the documented ones do
    mine = _tool("mine_mask_noun_pairs")
    common = ["--config-file", config, "--captions", str(shapes / "train" / "captions.json"),
              "--image-root", str(shapes / "train" / "images"), "--extra-nouns", str(shapes / "nouns.txt"),
              "--device", "cpu"]
    assert mine.main([*common, "--output", str(tmp_path / "none"), "MODEL.WEIGHTS", str(stage_a)]) == 0
    assert len((tmp_path / "none" / "pairs.tsv").read_text().splitlines()) == 1  # the header alone
    assert mine.main([*common, "--output", str(tmp_path / "pairs"), *SHAPES_MINING_FLAGS,
                      "MODEL.WEIGHTS", str(stage_a)]) == 0
    rows = read_pair_index(str(tmp_path / "pairs" / "pairs.tsv"))
    assert len(rows) == NUM_PAIRS, len(rows)
    assert {r["title"] for r in rows} <= set((shapes / "nouns.txt").read_text().split())

    # B2: fine-tuning from stage A's CLIP; B3: mask prompts on top
    train_tool = _tool("train_clip_adapter")
    steps = ["--clip-model", "tiny_vit_clip", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--warmup", "1",
             "--log-period", "1", "--device", "cpu"]
    assert train_tool.main(["--mode", "finetune", "--pairs", str(tmp_path / "pairs" / "pairs.tsv"), "--output",
                            str(tmp_path / "ft"), "--clip-weights", str(stage_a), "--lr", "1e-4", *steps]) == 0
    assert train_tool.main(["--mode", "mask_prompt", "--pairs", str(tmp_path / "pairs" / "pairs.tsv"), "--output",
                            str(tmp_path / "mpt"), "--clip-weights", str(tmp_path / "ft" / "clip_final.pth"), *steps]) == 0
    for run in ("ft", "mpt"):
        metrics = [json.loads(line) for line in (tmp_path / run / "metrics.json").read_text().splitlines()]
        assert len(metrics) == NUM_PAIRS // 4 and all(math.isfinite(m["loss_contrastive"]) for m in metrics)
    start = ovseg_checkpoint_clip(str(stage_a))
    ft = torch.load(tmp_path / "ft" / "clip_final.pth", weights_only=True)
    mpt = torch.load(tmp_path / "mpt" / "clip_final.pth", weights_only=True)
    assert MASK_EMBEDDING not in ft and float(start[MASK_EMBEDDING].abs().sum()) == 0  # stage A's prompts are zeros
    assert torch.equal(ft["text_projection"], start["text_projection"])  # started from stage A's CLIP
    assert not torch.equal(ft["visual.conv1.weight"], start["visual.conv1.weight"])
    assert [k for k in mpt if k not in ft or not torch.equal(mpt[k], ft[k])] == [MASK_EMBEDDING]

    # C: the splice replaces exactly the CLIP
    assert _tool("ovseg_replace_clip").main(["--ovseg", str(stage_a), "--clip", str(tmp_path / "mpt" / "clip_final.pth"),
                                             "--output", str(tmp_path / "ovseg_ft_mpt.pth")]) == 0
    spliced = torch.load(tmp_path / "ovseg_ft_mpt.pth", weights_only=True)
    assert spliced["iteration"] == 799 and spliced["model"].keys() == ovseg_state.keys()
    for k, v in spliced["model"].items():
        clip_key = k.removeprefix("clip_adapter.clip_model.")
        assert torch.equal(v, mpt[clip_key] if clip_key != k else ovseg_state[k]), k
    report = frozenseg.load_checkpoint(frozenseg.build_model(cfg), str(tmp_path / "ovseg_ft_mpt.pth"))
    assert not report.missing and not report.unexpected
