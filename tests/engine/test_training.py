"""Training the real tiny FrozenSeg: reproducibility, kill-and-resume, outputs, eval-only."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from frozenseg.engine import CallbackHook, DefaultTrainer, default_setup

from .conftest import FROZENSEG_TINY_OVERRIDES, SHAPES_CONFIG, TINY_OVERRIDES, tiny_cfg


class _Killed(Exception):
    """Simulates the job being killed after an iteration."""


def _metrics(output_dir: Path) -> dict[int, dict]:
    """Per-iteration metrics of metrics.json (the last line wins for repeated iterations)."""
    out: dict[int, dict] = {}
    for line in (output_dir / "metrics.json").read_text().splitlines():
        d = json.loads(line)
        out.setdefault(d["iteration"], {}).update(d)
    return out


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(cfg, kill_after: int | None = None, resume: bool = False):
    cfg.freeze()
    default_setup(cfg)
    trainer = DefaultTrainer(cfg, resume=resume, log_period=1)
    trainer.resume_or_load(resume=resume)
    if kill_after is not None:
        def kill(t):
            if t.iter == kill_after:
                raise _Killed()
        trainer.register_hooks([CallbackHook(after_step=kill)])
        with pytest.raises(_Killed):
            trainer.train()
        return trainer, None
    return trainer, trainer.train()


@pytest.fixture(scope="module")
def runs(shapes_root, tmp_path_factory):
    """Run A: 6 uninterrupted iterations (+ evaluation). Run B: the same config killed after
    iteration 4 (last checkpoint: iteration 2), then resumed to the end."""
    a_dir = tmp_path_factory.mktemp("run_a")
    trainer_a, results_a = _train(tiny_cfg(a_dir))
    b_dir = tmp_path_factory.mktemp("run_b")
    _train(tiny_cfg(b_dir, "DATASETS.TEST", "()"), kill_after=4)
    killed_metrics = _metrics(b_dir)
    trainer_b, _ = _train(tiny_cfg(b_dir, "DATASETS.TEST", "()"), resume=True)
    return {
        "a_dir": a_dir, "b_dir": b_dir, "trainer_a": trainer_a, "trainer_b": trainer_b,
        "results_a": results_a, "killed_metrics": killed_metrics,
    }


@pytest.mark.slow
def test_same_seed_same_first_losses(runs):
    a, b = _metrics(runs["a_dir"]), runs["killed_metrics"]  # both start at 0: same smoothing
    for it in range(5):
        assert a[it]["total_loss"] == b[it]["total_loss"]
        assert a[it]["loss_ce"] == b[it]["loss_ce"]
    assert a[0]["total_loss"] != a[1]["total_loss"]  # and they are real, changing losses


@pytest.mark.slow
def test_resume_continues_exactly(runs):
    ta, tb = runs["trainer_a"], runs["trainer_b"]
    assert tb.start_iter == 3  # resumed after the checkpoint of iteration 2
    pa, pb = _params(ta.unwrapped_model), _params(tb.unwrapped_model)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.allclose(pa[k], pb[k], rtol=0, atol=1e-6), k
    # same LR and same data (same raw losses) after the resume
    for name in ("lr", "total_loss", "loss_ce", "loss_mask"):
        hist_a = dict((int(i), v) for v, i in ta.storage.history(name).values())
        hist_b = dict((int(i), v) for v, i in tb.storage.history(name).values())
        # the smoothed losses' windows also hold iterations 0-2, restored from the checkpoint
        assert sorted(hist_b) == ([3, 4, 5] if name == "lr" else [0, 1, 2, 3, 4, 5])
        for it in hist_b:
            assert hist_a[it] == pytest.approx(hist_b[it], rel=1e-6, abs=1e-9), (name, it)
    # training changed the trainable parameters but not the frozen ones
    init = torch.load(runs["b_dir"] / "model_0000002.pth", weights_only=True)["model"]
    assert not torch.equal(init["sem_seg_head.predictor.query_feat.weight"],
                           pb["sem_seg_head.predictor.query_feat.weight"])
    frozen = [k for k in pb if k.startswith(("backbone.clip_model.", "sam.image_encoder."))]
    assert frozen and all(torch.equal(init[k], pb[k]) for k in frozen)


@pytest.mark.slow
def test_resumed_log_smooths_like_an_uninterrupted_one(runs):
    """After --resume the logged medians (window 20) continue the saved window: iteration 3 of
    the resumed run logs what the uninterrupted run logged, not the median of one new value."""
    a, b = _metrics(runs["a_dir"]), _metrics(runs["b_dir"])  # b: the resumed lines win
    for it in (3, 4, 5):
        for key in ("total_loss", "loss_ce", "loss_mask", "loss_dice"):
            assert b[it][key] == pytest.approx(a[it][key], rel=1e-6), (key, it)
    raw_3 = dict((int(i), v) for v, i in runs["trainer_b"].storage.history("total_loss").values())[3]
    assert b[3]["total_loss"] != pytest.approx(raw_3, rel=1e-6)  # a median of 4 values, not of 1


@pytest.mark.slow
def test_checkpoint_and_output_files(runs):
    d = runs["a_dir"]
    assert (d / "last_checkpoint").read_text() == "model_final.pth"
    assert (d / "model_0000002.pth").is_file() and (d / "model_final.pth").is_file()
    ckpt = torch.load(d / "model_final.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "iteration", "seed", "data_state"} <= set(ckpt)
    assert ckpt["iteration"] == 5 and ckpt["seed"] == 7
    assert ckpt["data_state"]["samples_consumed"] == 12
    assert any(k.startswith("backbone.clip_model.") for k in ckpt["model"])  # full state dict
    assert (d / "config.yaml").is_file() and "IMAGE_SIZE: 64" in (d / "config.yaml").read_text()
    if importlib.util.find_spec("tensorboard") is not None:  # optional dependency
        assert list(d.glob("events.out.tfevents.*")), "TensorBoard event file"
    m = _metrics(d)
    assert set(range(6)) <= set(m)
    for key in ("total_loss", "loss_ce", "loss_mask", "loss_dice", "lr", "data_time"):
        assert key in m[5]
    log = (d / "log.txt").read_text()
    assert "Environment info" in log and "eta:" in log and "iter: 5" in log and "lr:" in log


@pytest.mark.slow
def test_evaluation_after_training(runs):
    res = runs["results_a"]
    assert set(res) == {"sem_seg", "panoptic_seg"}
    assert {"mIoU", "fwIoU", "mACC", "pACC"} <= set(res["sem_seg"])
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(res["panoptic_seg"])
    out = runs["a_dir"] / "inference" / "synthetic_shapes_val_panoptic"
    saved = json.loads((out / "results.json").read_text())
    assert saved["panoptic_seg"]["PQ"] == pytest.approx(res["panoptic_seg"]["PQ"])
    m = _metrics(runs["a_dir"])
    assert m[6]["panoptic_seg/PQ"] == pytest.approx(res["panoptic_seg"]["PQ"])  # also in metrics.json


@pytest.mark.slow
def test_eval_only_command_line(runs, tmp_path):
    """``train_net.py --eval-only MODEL.WEIGHTS <ours>``: the same metrics as at the end of
    training, plus TTA results, files under OUTPUT_DIR/inference/<dataset>/ and copypaste lines."""
    import train_net

    weights = runs["a_dir"] / "model_final.pth"
    argv = ["--config-file", str(SHAPES_CONFIG), "--eval-only",
            *[str(x) for x in TINY_OVERRIDES + FROZENSEG_TINY_OVERRIDES], "MODEL.DEVICE", "cpu",
            "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path),
            "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)"]
    res = train_net.cli(argv)
    assert set(res) == {"sem_seg", "panoptic_seg", "sem_seg_TTA"}
    for task in ("sem_seg", "panoptic_seg"):
        for k, v in runs["results_a"][task].items():
            assert res[task][k] == pytest.approx(v, nan_ok=True), (task, k)
    assert 0.0 <= res["sem_seg_TTA"]["mIoU"] <= 100.0
    ds = tmp_path / "inference" / "synthetic_shapes_val_panoptic"
    assert (ds / "results.json").is_file() and (ds / "panoptic_evaluation.json").is_file()
    assert (tmp_path / "inference_TTA" / "synthetic_shapes_val_panoptic" / "results.json").is_file()
    log = (tmp_path / "log.txt").read_text()
    assert "copypaste: Task: panoptic_seg" in log and "copypaste: PQ,SQ,RQ" in log


@pytest.mark.slow
def test_resume_skips_torn_newest_checkpoints(runs, tmp_path, caplog):
    """model_final.pth and model_0000005.pth torn (a copy cut short): --resume names them,
    continues from model_0000002.pth and ends with the weights of the uninterrupted run."""
    for n, name in enumerate(("model_0000002.pth", "model_0000005.pth", "model_final.pth", "last_checkpoint")):
        shutil.copyfile(runs["a_dir"] / name, tmp_path / name)
        os.utime(tmp_path / name, (1000 + n, 1000 + n))
    for name in ("model_0000005.pth", "model_final.pth"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="frozenseg.checkpoint.checkpointer"):
        trainer, _ = _train(tiny_cfg(tmp_path, "DATASETS.TEST", "()"), resume=True)
    assert trainer.start_iter == 3
    skipped = [r.getMessage() for r in caplog.records if r.name == "frozenseg.checkpoint.checkpointer"]
    assert skipped == ["model_final.pth is truncated or unreadable; model_0000005.pth is truncated or "
                       "unreadable; resuming from model_0000002.pth."]
    pa, pb = _params(runs["trainer_a"].unwrapped_model), _params(trainer.unwrapped_model)
    assert all(torch.allclose(pa[k], pb[k], rtol=0, atol=1e-6) for k in pa)


@pytest.mark.slow
def test_run_failing_before_any_metric_leaves_no_metrics_files(shapes_root, tmp_path):
    """A run that stops at its first iteration leaves no empty metrics.json or event file."""
    cfg = tiny_cfg(tmp_path, "DATASETS.TEST", "()")
    cfg.freeze()
    default_setup(cfg)
    trainer = DefaultTrainer(cfg, log_period=1)
    trainer.resume_or_load(resume=False)

    def fail(t):
        raise _Killed()
    trainer.register_hooks([CallbackHook(before_step=fail)])
    with pytest.raises(_Killed):
        trainer.train()
    left = set(os.listdir(tmp_path))
    assert left == {"config.yaml", "log.txt"}, left


def test_a_refused_resume_leaves_the_folder_as_it_was(shapes_root, tmp_path):
    """``--resume`` in a folder whose checkpoint the config's model refuses (here a checkpoint of
    another model): exit status 2 with one sentence, and the folder's config.yaml and files are
    untouched (the config is saved only once the checkpoint has loaded)."""
    import train_net

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("MODEL:\n  META_ARCHITECTURE: OVSeg\n")
    torch.save({"model": {"clip_adapter.non_object_embedding": torch.zeros(1, 8)}}, out / "model_0000009.pth")
    (out / "last_checkpoint").write_text("model_0000009.pth")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["--config-file", str(SHAPES_CONFIG), "--resume",
            *[str(x) for x in TINY_OVERRIDES + FROZENSEG_TINY_OVERRIDES], "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(out)]
    with pytest.raises(SystemExit) as info:
        train_net.cli(argv)
    assert info.value.code == 2
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "log.txt"}
    assert after == before
