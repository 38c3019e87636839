#!/usr/bin/env python
"""Record, then compare, the outputs of every released architecture on random weights.

For refactors that must not change behaviour: ``record`` builds the released configurations
(FrozenSeg ConvNeXt-L and RN50x64; OVSeg R101c + ViT-B/16, Swin-B + ViT-L/14 and the latter's
demo rule) with random weights, saves their state dicts and their outputs on a fixed image
(FrozenSeg: every task, panoptic, instance and semantic, and the semantic-only path; OVSeg: its
semantic output); ``compare`` rebuilds them with the code as it is now, loads the saved weights,
runs the same inputs and reports whether every output tensor is bit-identical. The weights are
saved rather than re-drawn, so a change in the order in which modules are built does not matter.
Two CPU threads, fp32; one to two minutes per configuration on a 2-core machine.

    python tools/refactor_parity.py record --dir /tmp/parity    # before the change
    python tools/refactor_parity.py compare --dir /tmp/parity   # after it; exit status 1 on a difference

``--opts KEY VALUE ...`` overrides config keys of both configurations, e.g. ``--opts
MODEL.FAST_INFERENCE False`` to compare the upstream forwards of the frozen encoders with a
baseline recorded before the fast path existed. For outputs that differ, ``compare`` logs how
far apart they are (max relative difference, changed arg-max pixels, changed elements).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch

from frozenseg.engine.setup import load_config
from frozenseg.modeling.build import build_model

logger = logging.getLogger("frozenseg.parity")

_FROZENSEG_OPTS = ["MODEL.FROZEN_SEG.TEXT_CACHE_DIR", "", "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS", "",
                   "MODEL.SAM_CHECKPOINT", "",
                   # keep every panoptic segment of the random weights
                   "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0", "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0"]
_OVSEG_OPTS = ["MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", ""]
#: name -> (config file, overrides that keep every weight random and every cache off)
CONFIGS = {
    "convnext_large": ("configs/coco/frozenseg/convnext_large_eval_ade20k.yaml", _FROZENSEG_OPTS),
    "rn50x64": ("configs/coco/frozenseg/r50x64_eval_ade20k.yaml", _FROZENSEG_OPTS),
    "ovseg_r101c_vitb16": ("configs/ovseg/ovseg_R101c_vitB_bs32_120k.yaml", _OVSEG_OPTS),
    "ovseg_swinb_vitl14": ("configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml", _OVSEG_OPTS),
    "ovseg_swinb_vitl14_demo": ("configs/ovseg/ovseg_swinB_vitL_demo.yaml", _OVSEG_OPTS),
}
VOCABULARY = ["cat,kitten", "dog,puppy", "grass,lawn", "sky", "tree,trees", "car"]
#: The task sets run per configuration of a model with panoptic output (output name prefix: tasks)
TASKS = {"all": ("panoptic", "instance", "semantic"), "semantic_only": ("semantic",)}
HEIGHT, WIDTH = 120, 160


def _image() -> torch.Tensor:
    """A fixed RGB image ``(3, HEIGHT, WIDTH)`` uint8: smooth gradients plus two blocks."""
    y = torch.linspace(0, 1, HEIGHT)[:, None]
    x = torch.linspace(0, 1, WIDTH)[None, :]
    img = torch.stack([255 * y * x, 255 * (1 - y) * x, 255 * y.expand(HEIGHT, WIDTH)])
    img[:, 20:60, 30:80] = torch.tensor([200.0, 40.0, 40.0])[:, None, None]
    img[:, 70:110, 100:150] = torch.tensor([30.0, 160.0, 60.0])[:, None, None]
    return img.round().to(torch.uint8)


def _build(name: str, opts: list[str]):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path, random_weights = CONFIGS[name]
    cfg = load_config(os.path.join(repo, path), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *random_weights, *opts])
    torch.manual_seed(0)
    model = build_model(cfg, load_frozen_weights=False)
    return model.eval()


def _flatten(prefix: str, value, out: dict[str, torch.Tensor]) -> None:
    """Every tensor (and number) of a model output, by a path name."""
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu()
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, (int, float, bool)):
        out[prefix] = torch.tensor(value)
    elif hasattr(value, "get_fields"):  # Instances
        _flatten(prefix, dict(value.get_fields()), out)


def _run(model) -> dict[str, torch.Tensor]:
    model.set_vocabulary(VOCABULARY)
    inputs = [{"image": _image(), "height": HEIGHT, "width": WIDTH}]
    out: dict[str, torch.Tensor] = {}
    if "panoptic" not in model.supported_tasks:  # semantic output only
        with torch.no_grad():
            _flatten("semantic", model(inputs)[0], out)
        return out
    for name, tasks in TASKS.items():
        model.set_tasks(tasks)
        with torch.no_grad():
            _flatten(name, model(inputs)[0], out)
    return out


def record(directory: str, opts: list[str], names: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name in names:
        model = _build(name, opts)
        torch.save(model.state_dict(), os.path.join(directory, f"{name}_weights.pth"))
        outputs = _run(model)
        torch.save(outputs, os.path.join(directory, f"{name}_outputs.pth"))
        logger.info("%s: recorded %d output tensors", name, len(outputs))


def _difference(before: torch.Tensor, now: torch.Tensor) -> str:
    """How far apart two same-shape outputs are: floats by max |now - before| / max |before|
    (and, for (K, H, W) maps, how many pixels change their arg-max class); other dtypes by the
    number of differing elements."""
    if not before.is_floating_point():
        return f"{int((before != now).sum())} of {before.numel()} elements differ"
    rel = float((now.double() - before.double()).abs().max() / before.double().abs().max().clamp_min(1e-30))
    text = f"max relative difference {rel:.2e}"
    if before.dim() == 3:
        text += f", arg-max differs at {int((before.argmax(0) != now.argmax(0)).sum())} of {before[0].numel()} pixels"
    return text


def compare(directory: str, opts: list[str], names: list[str]) -> bool:
    same = True
    for name in names:
        model = _build(name, opts)
        state = torch.load(os.path.join(directory, f"{name}_weights.pth"), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        now = _run(model)
        before = torch.load(os.path.join(directory, f"{name}_outputs.pth"), map_location="cpu", weights_only=True)
        differ = [k for k in sorted(set(before) | set(now))
                  if k not in before or k not in now or before[k].dtype != now[k].dtype
                  or before[k].shape != now[k].shape or not torch.equal(before[k], now[k])]
        logger.info("%s: %d output tensors, %s", name, len(before),
                    "all bit-identical" if not differ else f"DIFFERENT: {', '.join(differ[:10])}")
        for key in differ:
            if key in before and key in now and before[key].shape == now[key].shape:
                logger.info("  %s: %s", key, _difference(before[key], now[key]))
        same = same and not differ
    return same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["record", "compare"])
    ap.add_argument("--dir", required=True, help="folder of the recorded weights and outputs")
    ap.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                    help="config overrides for every configuration, e.g. MODEL.FAST_INFERENCE False")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS), metavar="NAME",
                    help=f"configurations to record or compare (default all: {', '.join(CONFIGS)})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    if args.action == "record":
        record(args.dir, args.opts, args.only)
        return 0
    return 0 if compare(args.dir, args.opts, args.only) else 1


if __name__ == "__main__":
    sys.exit(main())
