"""Cityscapes semantic (IoU, iIoU) and instance (AP, AP50) evaluation via cityscapesScripts.

Predictions are written in the official result format and handed to the official scripts:

* semantic: one ``<image>_pred.png`` per image holding Cityscapes *label ids* (the contiguous
  prediction is a train id, mapped with ``trainId2label``, as in Detectron2);
* instance: ``<image>_pred.txt`` listing ``<mask png> <label id> <score>`` per instance, with one
  binary PNG per instance.

Unlike Detectron2 (which writes into a directory shared by the processes of one machine), every
process encodes its files in memory and rank 0 writes them after gathering, so multi-machine
runs work too. Ground truth is searched under ``metadata.gt_dir`` (``*/*_gtFine_labelIds.png``
and ``*_gtFine_instanceIds.png``); only the images that were processed are evaluated.

Requires ``cityscapesscripts`` (with ``pyquaternion``, which its helpers import). Its calls to
``sys.exit`` on errors are turned into ``RuntimeError``; NumPy aliases it still uses
(``np.in1d``) and a JSON writer that accepts NumPy 2 scalars are provided to its modules only.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import json
import logging
import os
import tempfile
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .evaluator import DatasetEvaluator
from .utils import (
    capture_stdout,
    gather_list_on_main,
    patch_numpy_aliases,
    resolve_metadata,
    reverse_id_map,
    save_results_json,
    semantic_labels,
)

__all__ = ["CityscapesSemSegEvaluator", "CityscapesInstanceEvaluator", "cityscapes_image_key"]

logger = logging.getLogger(__name__)

_HINT = "cityscapesScripts is required: pip install cityscapesscripts pyquaternion"


def cityscapes_image_key(path: str) -> str:
    """``aachen_000000_000019`` from any Cityscapes file name of that frame."""
    parts = os.path.basename(path).split("_")
    if len(parts) < 3:
        raise ValueError(f"{path!r} is not a Cityscapes file name (<city>_<seq>_<frame>_...).")
    return "_".join(parts[:3])


def _png_bytes(array: np.ndarray) -> bytes:
    with io.BytesIO() as buf:
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()


def _json_default(obj: Any) -> Any:
    """JSON fallback for cityscapesScripts' dicts: NumPy scalars/arrays, then plain objects."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj.__dict__


def _write_dict_to_json(data: Any, path: str) -> None:
    """``csHelpers.writeDict2JSON`` that also accepts NumPy 2 scalars (``np.int64`` counts)."""
    with open(path, "w") as f:
        f.write(json.dumps(data, default=_json_default, sort_keys=True, indent=4))


def _patch_script_module(module: Any) -> None:
    """Module-local compatibility fixes for a cityscapesScripts evaluation module."""
    patch_numpy_aliases(module)
    if hasattr(module, "writeDict2JSON"):
        module.writeDict2JSON = _write_dict_to_json


@contextlib.contextmanager
def _official_script_errors():
    """cityscapesScripts reports errors with ``sys.exit``; raise ``RuntimeError`` instead."""
    try:
        yield
    except SystemExit as e:
        raise RuntimeError(f"cityscapesScripts evaluation failed (exit code {e.code}); see the log.") from e


class _CityscapesEvaluator(DatasetEvaluator):
    """Shared part: metadata, gathering of encoded files, ground-truth search, running the
    official script."""

    needs_full_semantic_map = False  # reads "sem_seg_scores" or no semantic output

    _gt_suffix = ""

    def __init__(self, dataset_name: Any = None, *, distributed: bool = True, output_dir: str | None = None,
                 gt_dir: str | None = None, metadata: Any = None):
        self._dataset_name, self._metadata = resolve_metadata(dataset_name, metadata)
        self._distributed = distributed
        self._output_dir = output_dir
        self._gt_dir = gt_dir or getattr(self._metadata, "gt_dir", None)
        self.reset()

    def reset(self) -> None:
        # One entry per image: (image key, {file name: bytes}).
        self._files: list[tuple[str, dict[str, bytes]]] = []

    def _ground_truth_files(self, keys: set[str]) -> dict[str, str]:
        if not self._gt_dir:
            raise ValueError("Cityscapes evaluation needs metadata.gt_dir (the gtFine/<split> folder).")
        found = glob.glob(os.path.join(self._gt_dir, "**", "*" + self._gt_suffix), recursive=True)
        gt = {cityscapes_image_key(p): os.path.abspath(p) for p in found}
        missing = keys - set(gt)
        if missing:
            raise FileNotFoundError(
                f"No Cityscapes ground truth (*{self._gt_suffix}) under {self._gt_dir} for {sorted(missing)[:5]}."
            )
        if len(gt) != len(keys):
            logger.warning("Cityscapes evaluation on %d of %d ground-truth images (the processed ones).",
                           len(keys), len(gt))
        return {k: gt[k] for k in keys}

    @staticmethod
    def _write_files(files: list[tuple[str, dict[str, bytes]]], directory: str) -> None:
        for _, entries in files:
            for name, data in entries.items():
                with open(os.path.join(directory, name), "wb") as f:
                    f.write(data)

    def _run_official_script(
        self,
        script: str,
        pred_suffix: str,
        script_args: Callable[[str], dict[str, Any]],
        in_output_dir: bool = False,
    ) -> Any:
        """Gather the encoded files, write them into a temporary folder and run the
        cityscapesScripts module ``script``'s ``evaluateImgLists`` on the processed images
        (prediction file ``<image key><pred_suffix>`` each). Returns its results on the main
        process, None on the other ranks.

        ``script_args(folder)`` gives the script's ``args`` settings beyond the shared ones;
        ``in_output_dir`` runs the script with the folder as working directory.
        """
        files = gather_list_on_main(self._files, self._distributed)
        if files is None:
            return None
        try:
            cs_eval = importlib.import_module(script)
        except ImportError as e:
            raise ImportError(_HINT) from e
        _patch_script_module(cs_eval)
        gt = self._ground_truth_files({k for k, _ in files})
        with tempfile.TemporaryDirectory(prefix="cityscapes_eval_") as tmp:
            self._write_files(files, tmp)
            keys = sorted(gt)
            gt_list = [gt[k] for k in keys]
            pred_list = [os.path.join(os.path.abspath(tmp), f"{k}{pred_suffix}") for k in keys]
            args = cs_eval.args
            args.predictionPath = os.path.abspath(tmp)
            args.predictionWalk = None
            args.JSONOutput = False
            args.colorized = False
            args.quiet = False
            for name, value in script_args(tmp).items():
                setattr(args, name, value)
            run_dir = contextlib.chdir(tmp) if in_output_dir else contextlib.nullcontext()
            with _official_script_errors(), capture_stdout(logger, logging.DEBUG), run_dir:
                return cs_eval.evaluateImgLists(pred_list, gt_list, args)


class CityscapesSemSegEvaluator(_CityscapesEvaluator):
    """Cityscapes pixel-level evaluation of ``output["sem_seg"]`` (contiguous ids = train ids).

    Returns ``{"sem_seg": {"IoU", "iIoU", "IoU_sup", "iIoU_sup"}}`` (×100; ``_sup`` are the
    category-level scores), as Detectron2's ``CityscapesSemSegEvaluator``.
    """

    _gt_suffix = "_gtFine_labelIds.png"

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        try:
            from cityscapesscripts.helpers.labels import trainId2label
        except ImportError as e:
            raise ImportError(_HINT) from e
        for inp, out in zip(inputs, outputs):
            pred = semantic_labels(out, "CityscapesSemSegEvaluator", "SEMANTIC_ON").cpu().numpy()
            label_ids = np.full(pred.shape, 255, dtype=np.uint8)
            for train_id, label in trainId2label.items():
                if label.ignoreInEval:
                    continue
                label_ids[pred == train_id] = label.id
            key = cityscapes_image_key(inp["file_name"])
            self._files.append((key, {f"{key}_pred.png": _png_bytes(label_ids)}))

    def evaluate(self) -> dict:
        results = self._run_official_script(
            "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
            "_pred.png",
            lambda tmp: {"bold": "", "nocol": ""},
        )
        if results is None:
            return {}
        res = OrderedDict(
            [
                ("IoU", 100.0 * results["averageScoreClasses"]),
                ("iIoU", 100.0 * results["averageScoreInstClasses"]),
                ("IoU_sup", 100.0 * results["averageScoreCategories"]),
                ("iIoU_sup", 100.0 * results["averageScoreInstCategories"]),
            ]
        )
        out = OrderedDict({"sem_seg": res})
        logger.info("Cityscapes semantic results: %s", dict(res))
        save_results_json(out, self._output_dir, "cityscapes_sem_seg_evaluation.json")
        return out


class CityscapesInstanceEvaluator(_CityscapesEvaluator):
    """Cityscapes instance-level evaluation of ``output["instances"]``.

    The Cityscapes label id of a contiguous class comes from the inverse of
    ``metadata.thing_dataset_id_to_contiguous_id`` (dataset ids are Cityscapes label ids), or
    else from ``metadata.thing_classes[class]`` looked up in ``name2label``.
    Returns ``{"segm": {"AP", "AP50"}}`` (×100), as Detectron2's ``CityscapesInstanceEvaluator``.
    """

    _gt_suffix = "_gtFine_instanceIds.png"

    def _label_id(self, contiguous: int, name2label) -> int:
        mapping = reverse_id_map(getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None))
        if contiguous in mapping:
            return mapping[contiguous]
        names = getattr(self._metadata, "thing_classes", None) or []
        if contiguous < len(names):
            for candidate in [names[contiguous]] + [s.strip() for s in str(names[contiguous]).split(",")]:
                if candidate in name2label:
                    return name2label[candidate].id
        raise KeyError(f"No Cityscapes label id for contiguous class {contiguous}.")

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        try:
            from cityscapesscripts.helpers.labels import name2label
        except ImportError as e:
            raise ImportError(_HINT) from e
        for inp, out in zip(inputs, outputs):
            key = cityscapes_image_key(inp["file_name"])
            entries: dict[str, bytes] = {}
            lines = []
            if "instances" in out:
                instances = out["instances"].to("cpu")
                masks = instances.pred_masks
                masks = (masks if masks.dtype == torch.bool else masks > 0.5).numpy()
                for i in range(len(instances)):
                    class_id = self._label_id(int(instances.pred_classes[i]), name2label)
                    png_name = f"{key}_{i}_{class_id}.png"
                    entries[png_name] = _png_bytes(masks[i].astype(np.uint8) * 255)
                    lines.append(f"{png_name} {class_id} {float(instances.scores[i])}\n")
            # Cityscapes needs a prediction file for every ground-truth image, even if empty.
            entries[f"{key}_pred.txt"] = "".join(lines).encode("utf-8")
            self._files.append((key, entries))

    def evaluate(self) -> dict:
        results = self._run_official_script(
            "cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling",
            "_pred.txt",
            lambda tmp: {"gtInstancesFile": os.path.join(tmp, "gtInstances.json")},
            # The script writes "matches.json" into the working directory: run it inside tmp.
            in_output_dir=True,
        )
        if results is None:
            return {}
        results = results["averages"]
        res = OrderedDict([("AP", 100.0 * float(results["allAp"])), ("AP50", 100.0 * float(results["allAp50%"]))])
        out = OrderedDict({"segm": res})
        logger.info("Cityscapes instance results: %s", dict(res))
        save_results_json(out, self._output_dir, "cityscapes_instances_evaluation.json")
        return out
