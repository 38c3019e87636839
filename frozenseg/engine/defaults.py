"""Detectron2-style defaults: the argument parser, the set-up of a run and ``DefaultTrainer``.

``DefaultTrainer(cfg)`` builds the model, optimiser, LR scheduler, checkpointer and the standard
hooks from a config; ``resume_or_load`` then loads ``MODEL.WEIGHTS`` or resumes from the last
checkpoint in ``OUTPUT_DIR``; ``train()`` trains and evaluates. ``DefaultTrainer.test`` evaluates
a model on every dataset of ``DATASETS.TEST``, each with its own vocabulary.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import require_checkpoint_file
from ..utils import comm
from ..utils.cli import int_at_least
from ..utils.errors import DEBUG_ENV, ConfigValueError
from ..utils.file_io import atomic_write
from ..checkpoint import FrozenSegCheckpointer, GradScalerCheckpointable, checkpoint_has_frozen_weights
from ..checkpoint.zoo import resolve_frozen_weights, resolve_weights
from ..data.build import build_detection_test_loader, build_detection_train_loader, micro_batch_size
from ..evaluation.build import configured_tasks, task_switch_key
from ..modeling.build import build_model, meta_arch_class
from ..modeling.quantization import check_int8_cpu
from ..utils.rng import seed_all_rng
from .env import collect_env_info, setup_logger
from .launch import configure_cpu_process
from .events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from .hooks import EvalHook, IterationTimer, LRScheduler, PeriodicCheckpointer, PeriodicWriter
from .lr_scheduler import build_lr_scheduler
from .optimizer import build_optimizer, clip_gradients
from .train_loop import SimpleTrainer, amp_settings
from .setup import load_config, released_model_config
from .tta import SemanticSegmentorWithTTA

__all__ = [
    "default_argument_parser",
    "setup_cfg",
    "resolve_device",
    "default_setup",
    "make_output_dir",
    "save_config",
    "create_ddp_model",
    "DefaultTrainer",
    "merge_results",
]

logger = logging.getLogger(__name__)


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The flags of Detectron2's ``train_net.py``, then ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(
        epilog=epilog or (
            "Examples:\n"
            "  Train on 4 GPUs:   python train_net.py --config-file cfg.yaml --num-gpus 4\n"
            "  Change options:    python train_net.py --config-file cfg.yaml SOLVER.BASE_LR 1e-4\n"
            "  Evaluate:          python train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS model.pth\n"
            "  Released model:    python train_net.py --model frozenseg_convnext_large --eval-only\n"
            "  Resume:            python train_net.py --config-file cfg.yaml --resume\n"
            "  Multi-machine:     (machine 0) --num-machines 2 --machine-rank 0 --dist-url tcp://ip0:port\n"
            "                     (machine 1) --num-machines 2 --machine-rank 1 --dist-url tcp://ip0:port\n"
            "  torchrun:          torchrun --nproc_per_node 4 train_net.py --config-file cfg.yaml\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--model", default="", metavar="NAME",
        help="released weights by name (e.g. frozenseg_convnext_large, ovseg_swinb_vitl14): sets MODEL.WEIGHTS "
             "to it (downloaded once into the cache) and, without --config-file, uses its config; "
             "tools/download_weights.py lists the names",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="resume from the last checkpoint in OUTPUT_DIR (same iteration, LR, data order); "
             "without it MODEL.WEIGHTS only initialises the model",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
    parser.add_argument(
        "--register-dataset", action="append", default=[], metavar="FILE",
        help="register your own dataset from a description file (YAML or JSON; datasets/README.md, "
             "'Your own dataset'); repeatable; added to DATASETS.REGISTER",
    )
    parser.add_argument(
        "--debug", action="store_true",
        help=f"show the traceback of errors caused by the input, which otherwise end in one sentence "
             f"and exit status 2 (same as {DEBUG_ENV}=1)",
    )
    parser.add_argument("--num-gpus", type=int_at_least(1), default=1,
                        help="processes per machine (GPUs; CPU processes with gloo when there is no GPU)")
    parser.add_argument("--threads", type=int_at_least(0), default=0,
                        help="torch CPU threads per process (sets MODEL.CPU_THREADS; 0: auto, physical cores)")
    parser.add_argument("--num-machines", type=int_at_least(1), default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int_at_least(0), default=0,
                        help="the rank of this machine (unique per machine)")
    # a fixed default port per user, as in Detectron2 (several users may share a machine)
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    parser.add_argument(
        "--dist-url", default=f"tcp://127.0.0.1:{port}",
        help="initialization URL for torch.distributed ('auto': a free local port, single machine)",
    )
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.IMS_PER_BATCH 8 MODEL.WEIGHTS x.pth",
    )
    return parser


def _overridden_keys(opts) -> set[str]:
    return set((opts or [])[0::2])


def resolve_device(cfg, args=None) -> None:
    """Use CUDA when present unless ``MODEL.DEVICE`` was given on the command line; with several
    processes, each takes the GPU of its local rank (``cuda:<local_rank>``). Mutates ``cfg``."""
    explicit = args is not None and "MODEL.DEVICE" in _overridden_keys(getattr(args, "opts", None))
    device = str(cfg.MODEL.DEVICE)
    if torch.cuda.is_available() and not explicit and device == "cpu":
        device = "cuda"
    if device == "cuda" and torch.cuda.is_available():
        device = f"cuda:{comm.get_local_rank()}" if comm.get_world_size() > 1 else f"cuda:{torch.cuda.current_device()}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but CUDA is not available: using the CPU.", device)
        device = "cpu"
    cfg.MODEL.DEVICE = device


def setup_cfg(args, freeze: bool = True):
    """Config from ``args`` (:func:`frozenseg.engine.setup.load_config`: the defaults of the
    selected model, ``--config-file`` (or the config of ``--model``'s released weights), then
    ``MODEL.WEIGHTS <--model>``, the ``KEY VALUE`` overrides, ``--threads``,
    ``--register-dataset``); its dataset options checked
    (:func:`frozenseg.data.builtin.check_dataset_config`, and for the datasets registered from
    description files :func:`frozenseg.data.custom.check_custom_dataset_config`)."""
    from ..data.builtin import check_dataset_config
    from ..data.custom import check_custom_dataset_config

    config_file, defaults = released_model_config(getattr(args, "model", ""), args.config_file)
    cfg = load_config(config_file, list(args.opts or []), defaults=defaults, threads=args.threads,
                      register_datasets=getattr(args, "register_dataset", None) or ())
    check_dataset_config(cfg)
    check_custom_dataset_config(cfg)
    resolve_device(cfg, args)
    if freeze:
        cfg.freeze()
    return cfg


def default_setup(cfg, args=None) -> None:
    """Prepare a run: ``OUTPUT_DIR``, logging, environment summary, ``OUTPUT_DIR/config.yaml``,
    seeding (the same seed in every process, for identical model initialisation) and cuDNN."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        make_output_dir(output_dir)
    comm.synchronize()
    setup_logger(output_dir, distributed_rank=rank)
    log = logging.getLogger("frozenseg")
    log.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    log.info("Environment info:\n%s", collect_env_info())
    if args is not None:
        log.info("Command line arguments: %s", args)
        cfg_file = getattr(args, "config_file", "")
        if cfg_file and os.path.isfile(cfg_file):
            with open(cfg_file, encoding="utf-8") as f:
                log.info("Contents of args.config_file=%s:\n%s", cfg_file, f.read())
    if comm.is_main_process() and output_dir:
        log.info("Running with full config:\n%s", cfg.dump())
        # a resumed run's folder keeps its config.yaml until the checkpoint has loaded (a refused
        # resume leaves the folder as it was; DefaultTrainer.resume_or_load writes it then)
        if not (args is not None and args.resume and os.path.isfile(os.path.join(output_dir, "config.yaml"))):
            save_config(cfg)
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    seed_all_rng(seed)
    log.info("Using a random seed of %d for model initialisation%s", seed, "" if cfg.SEED >= 0 else " (SEED=-1)")
    configure_cpu_process(cfg, cfg.DATALOADER.NUM_WORKERS, comm.get_local_size())
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)


def make_output_dir(path: str) -> None:
    """Create the folder ``path`` (and its parents); ``ConfigValueError`` (one sentence) when it
    is a file, lies under a file, or cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigValueError(
            f"OUTPUT_DIR {path!r} cannot be created ({e.strerror or e}); choose a writable folder."
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigValueError(f"OUTPUT_DIR {path!r} is not writable; choose a writable folder.")


def save_config(cfg) -> str:
    """Write ``OUTPUT_DIR/config.yaml`` (atomically) and return its path."""
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    with atomic_write(path, "w") as f:
        f.write(cfg.dump())
    logging.getLogger("frozenseg").info("Full config saved to %s", path)
    return path


def create_ddp_model(model: nn.Module, *, find_unused_parameters: bool = False, **kwargs) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when there are several processes."""
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else comm.get_local_rank()])
    kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **kwargs)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class DefaultTrainer(SimpleTrainer):
    """The standard trainer of a config (Detectron2's ``DefaultTrainer``).

    Args:
        cfg: the (frozen) config.
        resume: hint used when building the model: when the checkpoint that will be loaded
            (the last one in ``OUTPUT_DIR`` with ``resume``, else ``MODEL.WEIGHTS``) contains the
            frozen CLIP/SAM weights, they are not loaded from their pretrained sources first.
        find_unused_parameters: passed to DDP.
        log_period: iterations between console / metrics.json / TensorBoard writes.
    """

    def __init__(self, cfg, *, resume: bool = False, find_unused_parameters: bool = False, log_period: int = 20):
        self.cfg = cfg
        if cfg.MODEL.INT8_CPU:
            check_int8_cpu(cfg.MODEL.DEVICE, training=True)
        weights = None
        if resume:
            probe = FrozenSegCheckpointer(nn.Identity(), cfg.OUTPUT_DIR)
            if probe.has_checkpoint():
                weights = probe.get_checkpoint_file()
        if weights is None:  # MODEL.WEIGHTS: a path, an URL or a released name (fetched now)
            weights = resolve_weights(cfg.MODEL.WEIGHTS, config_key="MODEL.WEIGHTS")
        model = self.build_model(cfg, weights=weights)
        optimizer = self.build_optimizer(cfg, model)
        device = next(model.parameters()).device
        amp_dtype, use_scaler = amp_settings(cfg, device)
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        micro_batch_size(cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size(), cfg.SOLVER.GRAD_ACCUM_STEPS)  # validate
        seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        ddp_model = create_ddp_model(model, find_unused_parameters=find_unused_parameters)
        super().__init__(
            ddp_model, None, optimizer,
            grad_accum_steps=cfg.SOLVER.GRAD_ACCUM_STEPS, amp_dtype=amp_dtype, grad_scaler=scaler,
            clip_fn=lambda params: clip_gradients(cfg, params), seed=seed,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = FrozenSegCheckpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
            optimizer=optimizer, scheduler=self.scheduler, scaler=GradScalerCheckpointable(scaler),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.log_period = int(log_period)
        self._eval_hook: EvalHook | None = None
        self.register_hooks(self.build_hooks())
        logger.info(
            "Trainer: %d iterations of %d images (%d process(es) x %d accumulation step(s)), %s%s",
            self.max_iter, cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size(), cfg.SOLVER.GRAD_ACCUM_STEPS,
            f"AMP {amp_dtype}" if amp_dtype is not None else "float32",
            " with a gradient scaler" if scaler is not None else "",
        )

    # ------------------------------------------------------------------------------------------
    # Resume / load
    # ------------------------------------------------------------------------------------------
    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint in ``OUTPUT_DIR``: load model, optimiser, scheduler,
        scaler, iteration, seed and the metrics' smoothing windows from the newest intact one
        (training and its log continue exactly; broken newer files are skipped and named in the
        log). Otherwise load only the model weights of ``MODEL.WEIGHTS`` (when set) and start
        at iteration 0."""
        self.storage_state = None
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            extra = self.checkpointer.load(path)
            self.start_iter = int(extra.get("iteration", -1)) + 1
            self.storage_state = extra.get("event_storage")
            saved_seed = extra.get("seed")
            if saved_seed is not None and int(saved_seed) != self.seed:
                if self.cfg.SEED >= 0:
                    logger.warning("SEED is %d but the checkpoint was trained with seed %d: resuming with %d.",
                                   self.cfg.SEED, saved_seed, saved_seed)
                self.seed = int(saved_seed)
            data_state = extra.get("data_state") or {}
            ims = data_state.get("ims_per_batch")
            if ims is not None and int(ims) != self.cfg.SOLVER.IMS_PER_BATCH:
                logger.warning("SOLVER.IMS_PER_BATCH changed from %d to %d since the checkpoint: the data "
                               "order continues at iteration %d of the new batch size.",
                               ims, self.cfg.SOLVER.IMS_PER_BATCH, self.start_iter)
            logger.info("Resumed from %s: continuing at iteration %d (lr %.6g)", path, self.start_iter,
                        self.optimizer.param_groups[0]["lr"])
        else:
            if resume:
                logger.info("--resume given but no checkpoint in %s: starting from scratch.", self.cfg.OUTPUT_DIR)
            path = resolve_weights(self.cfg.MODEL.WEIGHTS, config_key="MODEL.WEIGHTS")
            if path:
                self.checkpointer.load(require_checkpoint_file(path), checkpointables=[])
            self.start_iter = 0
        if resume and comm.is_main_process() and self.cfg.OUTPUT_DIR:
            save_config(self.cfg)  # the weights loaded: the folder's config is this run's now
        self._data_loader_iter_obj = None
        self.data_loader = None

    def _extra_checkpoint_state(self) -> dict[str, Any]:
        done = self.iter + 1
        return {
            "seed": self.seed,
            "event_storage": self.storage.state_dict(),
            "data_state": {
                "ims_per_batch": int(self.cfg.SOLVER.IMS_PER_BATCH),
                "grad_accum_steps": int(self.grad_accum_steps),
                "world_size": comm.get_world_size(),
                "samples_consumed": done * int(self.cfg.SOLVER.IMS_PER_BATCH),
            },
        }

    # ------------------------------------------------------------------------------------------
    # Hooks and training
    # ------------------------------------------------------------------------------------------
    def build_hooks(self) -> list:
        """IterationTimer, LRScheduler, PeriodicCheckpointer (main process), EvalHook,
        PeriodicWriter (main process)."""
        cfg = self.cfg
        hooks = [
            IterationTimer(),
            LRScheduler(),
            PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD,
                                 extra_state=self._extra_checkpoint_state) if comm.is_main_process() else None,
        ]
        if len(cfg.DATASETS.TEST) > 0:
            self._eval_hook = EvalHook(cfg.TEST.EVAL_PERIOD, self._eval_during_training)
            hooks.append(self._eval_hook)
        if comm.is_main_process():
            hooks.append(PeriodicWriter(self.build_writers(), period=self.log_period))
        return hooks

    def build_writers(self) -> list:
        """Console printer, ``OUTPUT_DIR/metrics.json`` and TensorBoard event files."""
        return [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
            TensorboardXWriter(self.cfg.OUTPUT_DIR),
        ]

    def _eval_during_training(self):
        results = self.test(self.cfg, self.unwrapped_model)
        if self.cfg.TEST.AUG.ENABLED:
            results = merge_results(results, self.test_with_TTA(self.cfg, self.unwrapped_model))
        return results

    def train(self):
        """Train from ``start_iter`` to ``SOLVER.MAX_ITER``; returns the last evaluation results
        (on the main process)."""
        if self.data_loader is None:
            self.data_loader = self.build_train_loader(self.cfg, seed=self.seed, start_iter=self.start_iter)
            self._data_loader_iter_obj = None
        super().train(self.start_iter, self.max_iter)
        if self._eval_hook is not None and comm.is_main_process():
            return self._eval_hook.last_results
        return None

    # ------------------------------------------------------------------------------------------
    # Builders (override in a subclass to customise)
    # ------------------------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg, weights: str | None = None) -> nn.Module:
        """Build the model on ``MODEL.DEVICE``; the frozen CLIP/SAM weights are loaded from their
        pretrained sources (their keys may name released weights, fetched into the cache) unless
        ``weights`` (the file that will be loaded) contains them."""
        weights = resolve_weights(weights, config_key="MODEL.WEIGHTS") if weights else ""
        frozen_parts = meta_arch_class(cfg).frozen_parts
        load_frozen = not checkpoint_has_frozen_weights(weights, frozen_parts)
        build_cfg = resolve_frozen_weights(cfg, frozen_parts) if load_frozen else cfg
        model = build_model(build_cfg, device=cfg.MODEL.DEVICE, load_frozen_weights=load_frozen)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        logger.info("Model: %s with %.2fM trainable of %.2fM parameters%s", type(model).__name__, n_train / 1e6,
                    n_all / 1e6, "" if load_frozen else " (frozen weights come from the checkpoint)")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, *, seed: int, start_iter: int = 0):
        """This process's micro-batches from optimiser step ``start_iter`` on (the resumable
        stream of :func:`frozenseg.data.build_detection_train_loader`)."""
        return build_detection_train_loader(cfg, seed=seed, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None,
                        tasks: tuple[str, ...] | None = None):
        """The evaluators of ``dataset_name`` for ``tasks`` (the model's enabled outputs; None:
        the config's ``MODEL.MASK_FORMER.TEST.*_ON`` switches)."""
        from ..evaluation import build_evaluator

        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder, tasks=tasks)

    # ------------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------------
    @classmethod
    def set_dataset_vocabulary(cls, cfg, model: nn.Module, dataset_name: str) -> None:
        """Give ``model`` the vocabulary (and thing classes) of ``dataset_name``."""
        from ..data.builtin import dataset_vocabulary, thing_class_indices

        _unwrap(model).set_vocabulary(dataset_vocabulary(dataset_name, cfg), thing_classes=thing_class_indices(dataset_name))

    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators=None, output_subdir: str = "inference") -> "OrderedDict":
        """Evaluate ``model`` on every dataset of ``DATASETS.TEST``.

        Each dataset gets its own vocabulary (literal for a model with ``literal_vocabulary``,
        see ``set_vocabulary``); evaluators write under
        ``OUTPUT_DIR/<output_subdir>/<dataset>/`` together with ``results.json``. Returns
        ``{dataset: {task: {metric: value}}}`` on the main process (a single dataset's dict
        directly when there is only one, as in Detectron2).
        """
        from ..evaluation import inference_on_dataset, print_csv_format
        from ..evaluation.utils import save_results_json

        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} test datasets.")
        model = _unwrap(model)
        tasks = _test_tasks(cfg, model)
        results: "OrderedDict[str, Any]" = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            out_dir = os.path.join(cfg.OUTPUT_DIR, output_subdir, name)
            cls.set_dataset_vocabulary(cfg, model, name)
            loader = cls.build_test_loader(cfg, name)
            if evaluators is not None:
                evaluator = evaluators[idx]
            else:
                try:
                    evaluator = cls.build_evaluator(cfg, name, out_dir, tasks=tasks)
                except NotImplementedError as e:
                    logger.warning("No evaluator for %s (%s): skipped.", name, e)
                    results[name] = {}
                    continue
            res = inference_on_dataset(model, loader, evaluator)
            results[name] = res
            if comm.is_main_process():
                if not isinstance(res, dict):
                    raise TypeError(f"Evaluator must return a dict on the main process, got {res!r}.")
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(res)
                save_results_json(res, out_dir, "results.json")
        if comm.is_main_process() and results:
            save_results_json(results, os.path.join(cfg.OUTPUT_DIR, output_subdir), "results.json")
        if len(results) == 1:
            return list(results.values())[0]
        return results

    @classmethod
    def test_with_TTA(cls, cfg, model: nn.Module) -> "OrderedDict":
        """Semantic segmentation with flip + multi-scale TTA (``TEST.AUG.*``); the result keys get
        a ``_TTA`` suffix and files go to ``OUTPUT_DIR/inference_TTA/<dataset>/``."""
        logger.info("Running inference with test-time augmentation ...")
        tta_model = SemanticSegmentorWithTTA(cfg, _unwrap(model))
        res = cls.test(cfg, tta_model, output_subdir="inference_TTA")
        if len(cfg.DATASETS.TEST) == 1:
            return OrderedDict((k + "_TTA", v) for k, v in res.items())
        return OrderedDict((name, OrderedDict((k + "_TTA", v) for k, v in r.items())) for name, r in res.items())


def _test_tasks(cfg, model) -> tuple[str, ...]:
    """The tasks to evaluate: those the config's switches ask for (``MODEL.MASK_FORMER.TEST.*_ON``),
    which the model must support (refused in one sentence otherwise, e.g. ``PANOPTIC_ON`` with the
    semantic-only OVSeg); the test-time-augmentation wrapper gives the semantic output only."""
    if isinstance(model, SemanticSegmentorWithTTA):
        return model.tasks
    wanted = configured_tasks(cfg)
    for task in wanted:
        if task not in model.supported_tasks:
            key = task_switch_key(task)
            raise ConfigValueError(
                f"{key} is True but {type(model).__name__} gives {' and '.join(model.supported_tasks)} output only; "
                f"set {key} False."
            )
    return wanted


def merge_results(a, b):
    """Merge nested result dicts (e.g. plain and ``_TTA`` results of the same datasets)."""
    out = OrderedDict(a or {})
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_results(out[k], v)
        else:
            out[k] = v
    return out
