"""Environment: logging set-up and the environment summary printed at start-up (seeding lives in
:mod:`frozenseg.utils.rng`)."""

from __future__ import annotations

import importlib
import logging
import os
import platform
import sys
from collections import OrderedDict

import torch

from ..utils.errors import LOG_FILE_ONLY

__all__ = ["setup_logger", "collect_env_info"]

_LOG_FORMAT = "[%(asctime)s %(name)s %(levelname)s]: %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"


def setup_logger(
    output: str | None = None,
    distributed_rank: int = 0,
    names: tuple[str, ...] = ("frozenseg", "fvcore", "train_net", "__main__"),
    level: int = logging.INFO,
) -> logging.Logger:
    """Configure the project's loggers (Detectron2's ``setup_logger``).

    Rank 0 logs to the console (stdout) and to ``output/log.txt``; other ranks only to
    ``output/log.txt.rank{r}``. Records marked :data:`~frozenseg.utils.errors.LOG_FILE_ONLY`
    (the ``Stopped: <sentence>`` of a user error, which stderr shows already) reach the files
    only. Calling it again replaces the handlers it installed before, so tests and repeated
    set-ups do not duplicate lines. Returns the ``frozenseg`` logger.
    """
    formatter = logging.Formatter(_LOG_FORMAT, datefmt=_DATE_FORMAT)
    handlers: list[logging.Handler] = []
    if distributed_rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setFormatter(formatter)
        ch.addFilter(lambda record: not getattr(record, LOG_FILE_ONLY, False))
        handlers.append(ch)
    if output:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        fh = logging.FileHandler(filename, mode="a", encoding="utf-8")
        fh.setFormatter(formatter)
        handlers.append(fh)
    for h in handlers:
        h.setLevel(level)
        h._frozenseg_engine = True  # type: ignore[attr-defined]
    for name in names:
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.propagate = False
        for h in list(lg.handlers):
            if getattr(h, "_frozenseg_engine", False):
                lg.removeHandler(h)
                if h not in handlers:
                    h.close()
        for h in handlers:
            lg.addHandler(h)
    return logging.getLogger("frozenseg")


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure just means "not available"
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def collect_env_info() -> str:
    """A table of the software and devices this run uses (logged at start-up)."""
    info: "OrderedDict[str, str]" = OrderedDict()
    info["sys.platform"] = sys.platform
    info["Platform"] = platform.platform()
    info["Python"] = sys.version.replace("\n", " ")
    info["frozenseg"] = f"{_version('frozenseg')} @ {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}"
    info["PyTorch"] = f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"
    info["PyTorch debug build"] = str(torch.version.debug)
    info["torch threads"] = str(torch.get_num_threads())
    info["CPU count"] = str(os.cpu_count())
    cuda = torch.cuda.is_available()
    info["CUDA available"] = str(cuda)
    if cuda:
        info["CUDA (torch build)"] = str(torch.version.cuda)
        info["cuDNN"] = str(torch.backends.cudnn.version())
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info[f"GPU {i}"] = f"{p.name} ({p.total_memory / 2**30:.1f} GiB, sm_{p.major}{p.minor})"
        info["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    info["torch.distributed"] = f"available={torch.distributed.is_available()} " + (
        f"nccl={torch.distributed.is_nccl_available()} gloo={torch.distributed.is_gloo_available()}"
        if torch.distributed.is_available() else ""
    )
    for name, module in (
        ("torchvision", "torchvision"), ("numpy", "numpy"), ("fvcore", "fvcore"), ("iopath", "iopath"),
        ("open_clip", "open_clip"), ("timm", "timm"), ("segment_anything", "segment_anything"),
        ("pycocotools", "pycocotools"), ("panopticapi", "panopticapi"), ("Pillow", "PIL"),
        ("tensorboard", "tensorboard"), ("tqdm", "tqdm"),
    ):
        info[name] = _version(module)
    width = max(len(k) for k in info)
    lines = ["-" * (width + 40)] + [f"{k:<{width}}  {v}" for k, v in info.items()] + ["-" * (width + 40)]
    return "\n".join(lines)
