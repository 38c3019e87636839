"""Two-process distributed training on CPU (gloo + DDP) with the real tiny FrozenSeg."""

from __future__ import annotations

import os

import pytest
import torch

from frozenseg.engine import launch

from .conftest import tiny_cfg

pytestmark = pytest.mark.slow


def _ddp_worker(dataset_root: str, output_dir: str) -> None:
    """Runs in each spawned process: 3 iterations of 4 images = 2 processes x 2 accumulation
    steps x 1 image, then saves this rank's parameters."""
    import frozenseg.data as fdata
    from frozenseg.engine import DefaultTrainer, comm, default_setup

    fdata.register_all_builtin(dataset_root)
    cfg = tiny_cfg(output_dir, "SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.GRAD_ACCUM_STEPS", 2,
                   "DATASETS.TEST", "()")
    cfg.freeze()
    default_setup(cfg)
    trainer = DefaultTrainer(cfg, log_period=1)
    trainer.resume_or_load(resume=False)
    assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
    before = {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    trainer.train()
    after = trainer.unwrapped_model.state_dict()
    torch.save({"before": before, "after": after, "world": comm.get_world_size()},
               os.path.join(output_dir, f"params_rank{comm.get_rank()}.pt"))


def test_two_process_gloo_training_keeps_ranks_identical(shapes_root, tmp_path):
    launch(_ddp_worker, 2, dist_url="auto", args=(str(shapes_root), str(tmp_path)))
    r0 = torch.load(tmp_path / "params_rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "params_rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert r0["after"].keys() == r1["after"].keys()
    for k in r0["after"]:
        assert torch.equal(r0["after"][k], r1["after"][k]), k
    changed = [k for k in r0["after"] if not torch.equal(r0["before"][k], r0["after"][k])]
    assert any(k.startswith("sem_seg_head.") for k in changed)
    assert not any(k.startswith(("backbone.", "sam.")) for k in changed)  # frozen parts untouched
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "log.txt.rank1").is_file()  # rank 1 logs to its own file
