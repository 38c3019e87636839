"""Training engine: launching (torch.distributed / DDP), the trainer and its hooks, optimiser and
LR schedules, checkpointing, metrics writers, test-time augmentation (Detectron2 conventions).

Typical use (what ``train_net.py`` does)::

    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))

    def main(args):
        cfg = setup_cfg(args); default_setup(cfg, args)
        trainer = DefaultTrainer(cfg, resume=args.resume)
        trainer.resume_or_load(resume=args.resume)
        return trainer.train()
"""

from .checkpoint import FrozenSegCheckpointer, checkpoint_has_frozen_weights
from .data import TrainingStream, build_test_loader, build_train_loader, ensure_synthetic_datasets
from .defaults import (
    DefaultTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    merge_results,
    resolve_device,
    setup_cfg,
    thing_class_indices,
)
from .env import collect_env_info, seed_all_rng, setup_logger
from .events import CommonMetricPrinter, EventStorage, JSONWriter, TensorboardXWriter, get_event_storage
from .hooks import (
    CallbackHook,
    EvalHook,
    IterationTimer,
    LRScheduler,
    PeriodicCheckpointer,
    PeriodicWriter,
)
from .launch import launch
from .lr_scheduler import WarmupMultiStepLR, WarmupPolyLR, build_lr_scheduler
from .optimizer import build_optimizer, clip_gradients, get_param_groups
from .train_loop import HookBase, SimpleTrainer, TrainerBase, check_finite_losses
from .tta import SemanticSegmentorWithTTA

__all__ = [
    "launch",
    "default_argument_parser",
    "default_setup",
    "setup_cfg",
    "resolve_device",
    "create_ddp_model",
    "DefaultTrainer",
    "SimpleTrainer",
    "TrainerBase",
    "HookBase",
    "CallbackHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "EvalHook",
    "PeriodicWriter",
    "EventStorage",
    "get_event_storage",
    "JSONWriter",
    "TensorboardXWriter",
    "CommonMetricPrinter",
    "build_optimizer",
    "get_param_groups",
    "clip_gradients",
    "build_lr_scheduler",
    "WarmupMultiStepLR",
    "WarmupPolyLR",
    "FrozenSegCheckpointer",
    "checkpoint_has_frozen_weights",
    "TrainingStream",
    "build_train_loader",
    "build_test_loader",
    "ensure_synthetic_datasets",
    "SemanticSegmentorWithTTA",
    "check_finite_losses",
    "collect_env_info",
    "seed_all_rng",
    "setup_logger",
    "thing_class_indices",
    "merge_results",
]
