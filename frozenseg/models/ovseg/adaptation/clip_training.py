"""Adapting OVSeg's CLIP to masked images (docs/models/ovseg.md §3.B2-3.B3): contrastive training on mined
mask-noun pairs with the text tower locked, the engine of ``tools/train_clip_adapter.py``.

Two modes:

* ``"finetune"`` (§3.B2): the whole image tower and ``logit_scale`` are trained (``logit_scale``
  clamped to [0, ln 100] after every step); the plain CLIP forward (no mask prompts). A
  ``visual.mask_embedding`` that the starting weights carry stays as it is and is written out;
  one they lack is not written (it would be all zeros, docs/models/ovseg.md quirk 18).
* ``"mask_prompt"`` (§3.B3): only ``visual.mask_embedding`` (depth d, grid², width) changes; it
  starts from the starting weights' embedding, or from normal(std 0.02) when they have none (the
  release's "mae" initialisation). The forward is OVSeg's mask-prompted one (§2.9), with the
  masks of the pairs. **Deviation** (docs/models/ovseg.md quirk 12): the release's ``logit_scale`` is also
  trained in this mode (lr 0.05, clamped to ln 100) because it is not locked; OVSeg never uses
  it (its temperature is a fixed 100), so here it stays frozen and the mode changes nothing but
  the mask embedding.

Loss: OpenCLIP's ``ClipLoss``: L2-normalised image (crop) and text (noun) features, logits
``exp(logit_scale) I Tᵀ`` over the features of **all** processes (gathered without gradient,
this process's own features put back so its gradient flows), symmetric cross-entropy, duplicate
nouns in a batch counted as negatives. The text tower (transformer, token/positional embeddings,
``ln_final``, ``text_projection``) never changes. Titles are tokenised as they are (no prompt
template), as in the release.

Release defaults (the scripts ``coco_proposal_1cap_{finetune,mask_prompt_tuning}_VitL.sh``):
lr 5e-6 (finetune) / 0.05 (mask prompts), AdamW betas (0.9, 0.98), eps 1e-6, weight decay 0.2
(finetune) / 0 (mask prompts) on parameters of >= 2 dimensions whose name has none of "bn",
"ln", "bias", "logit_scale" (0 for the others), a per-step cosine schedule after 100 linear
warm-up steps, 5 epochs, 32 pairs per process, ``RandomResizedCrop(S, scale (0.9, 1.0),
bicubic)`` (the mask cropped and resized identically, nearest), CLIP normalisation. The masks
come from the pairs' explicit mask files (the release's colour rule only for index files
without a ``mask`` column; :func:`frozenseg.models.ovseg.adaptation.mask_noun_pairs.load_pair`).

Runs: one process, or DDP under ``launch``/torchrun (each process a disjoint share of every
epoch's permutation); AMP (fp16 with a gradient scaler on CUDA, bf16); logs, ``metrics.json``
and TensorBoard through the main trainer's event writers; a checkpoint per epoch,
``checkpoints/epoch_<k>.pt`` = ``{"state_dict": the CLIP in OpenAI key names, "optimizer",
"scaler", "epoch", "step", "storage", "settings"}`` (the OpenCLIP checkpoint layout, so it is
itself a ``MODEL.CLIP_ADAPTER.CLIP_WEIGHTS`` file), written atomically, and at the end
``clip_final.pth``, the bare CLIP state dict. Every epoch's order and every sample's augmentation
are functions of (seed, epoch, index), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import open_clip
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from .mask_noun_pairs import load_pair, read_pair_index
from .splice import ovseg_checkpoint_clip
from ..clip_adapter import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    build_ovseg_clip_model,
    check_clip_state,
    encode_image_with_mask_prompts,
    ovseg_clip_arch,
)
from ....utils import comm
from ....utils.errors import ConfigValueError
from ....utils.file_io import atomic_write
from ....utils.rng import derive_seed
from ....engine.defaults import create_ddp_model
from ....engine.env import setup_logger
from ....engine.events import CommonMetricPrinter, EventStorage, JSONWriter, TensorboardXWriter
from ....engine.train_loop import amp_settings

__all__ = [
    "MODES",
    "RELEASE_DEFAULTS",
    "AdaptationSettings",
    "PairDataset",
    "epoch_batches",
    "cosine_lr",
    "clip_contrastive_loss",
    "gather_features",
    "adaptation_param_groups",
    "ContrastiveCLIP",
    "CLIPAdaptationTrainer",
    "setup_run",
]

logger = logging.getLogger(__name__)

MODES = ("finetune", "mask_prompt")
#: The release's per-mode learning rate and weight decay (docs/models/ovseg.md §3.B2, §3.B3).
RELEASE_DEFAULTS = {"finetune": {"lr": 5e-6, "weight_decay": 0.2}, "mask_prompt": {"lr": 0.05, "weight_decay": 0.0}}
_MASK_EMBEDDING = "visual.mask_embedding"
_NO_DECAY = ("bn", "ln", "bias", "logit_scale")
FINAL_FILE = "clip_final.pth"


@dataclass
class AdaptationSettings:
    """What a CLIP adaptation run does (module doc); ``lr`` / ``weight_decay`` None = the
    release's value of the mode."""

    mode: str
    clip_model: str = "ViT-L/14"
    clip_weights: str = "openai"
    mask_prompt_depth: int = 3
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    epochs: int = 5
    batch_size: int = 32
    crop_scale: tuple[float, float] = (0.9, 1.0)
    workers: int = 4
    seed: int = 0
    amp: bool = False
    amp_dtype: str = "float16"
    log_period: int = 20
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigValueError(f"Unknown mode {self.mode!r}; use one of {', '.join(MODES)}.")
        if self.mode == "mask_prompt" and self.mask_prompt_depth < 1:
            raise ConfigValueError("--mode mask_prompt needs --mask-prompt-depth >= 1 (3 released).")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        self.lr = RELEASE_DEFAULTS[self.mode]["lr"] if self.lr is None else float(self.lr)
        if self.weight_decay is None:
            self.weight_decay = RELEASE_DEFAULTS[self.mode]["weight_decay"]
        self.betas, self.crop_scale = tuple(self.betas), tuple(self.crop_scale)


class PairDataset(Dataset):
    """Mask-noun pairs as training samples: ``(image (3, S, S) CLIP-normalised, mask (1, S, S)
    float 0/1, title)``, augmented by ``RandomResizedCrop(S, scale, bicubic)`` applied to the
    crop and (nearest) to its mask with the same parameters. The augmentation of sample i in
    epoch e is a function of ``(seed, e, i)`` (:meth:`set_epoch`)."""

    def __init__(self, rows: Sequence[dict[str, str]], size: int, scale: tuple[float, float] = (0.9, 1.0), seed: int = 0):
        """``rows``: :func:`frozenseg.models.ovseg.adaptation.mask_noun_pairs.read_pair_index` rows; ``size``: S."""
        self.rows = list(rows)
        self.seed = int(seed)
        self.epoch = 0
        self.transform = v2.RandomResizedCrop(size, scale=scale, interpolation=InterpolationMode.BICUBIC)
        self.mean = torch.tensor(CLIP_PIXEL_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_PIXEL_STD).view(3, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        row = self.rows[index]
        image, mask = load_pair(row)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.epoch, index))
            image, mask = self.transform(image, tv_tensors.Mask(torch.from_numpy(mask)[None].to(torch.uint8)))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (pixels - self.mean) / self.std, mask.as_subclass(torch.Tensor).float(), row["title"]


def epoch_batches(num_samples: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This process's batches of an epoch: a permutation seeded by ``(seed, epoch)``, every
    ``world``-th index from ``rank``, cut into full batches (the rest dropped, as the release's
    loader does); every process gets the same number of batches."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch))
    share = torch.randperm(num_samples, generator=g)[rank::world].tolist()
    steps = (num_samples // world) // batch_size
    return [share[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """OpenCLIP's ``cosine_lr`` at 0-based ``step``: ``base_lr (step + 1) / warmup`` during the
    warm-up, then ``base_lr (1 + cos(pi e / (total - warmup))) / 2`` with e = step - warmup."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span)) * base_lr


def gather_features(image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) each -> (W B, D): every process's features in rank order, gathered without
    gradient, with this process's own tensors (which carry the gradient) in its slot
    (OpenCLIP's ``gather_features`` without ``gather_with_grad``). Identity in one process."""
    world = comm.get_world_size()
    if world == 1:
        return image_features, text_features
    out = []
    for local in (image_features, text_features):
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.detach().contiguous())
        parts[comm.get_rank()] = local
        out.append(torch.cat(parts))
    return out[0], out[1]


def clip_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric CLIP loss of (N, D) normalised features: ``logits = scale I Tᵀ``, pair i is the
    positive of row and column i; ``(CE(logits, i) + CE(logitsᵀ, i)) / 2``."""
    logits = scale * image_features @ text_features.t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def adaptation_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The release's two AdamW groups of the trainable parameters: ``weight_decay`` for those of
    >= 2 dimensions whose name contains none of "bn", "ln", "bias", "logit_scale"; 0 for the rest.
    Groups carry ``param_names``; an empty group is left out."""
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        target = no_decay if p.ndim < 2 or any(s in name for s in _NO_DECAY) else decay
        target[0].append(p)
        target[1].append(name)
    groups = [
        {"params": params, "param_names": names, "weight_decay": wd}
        for (params, names), wd in ((decay, weight_decay), (no_decay, 0.0))
        if params
    ]
    return groups


class ContrastiveCLIP(nn.Module):
    """A CLIP whose forward returns what the contrastive loss needs; the text tower is locked
    (encoded without gradient) and only the parameters of ``mode`` are trainable."""

    def __init__(self, clip_model: nn.Module, mode: str):
        super().__init__()
        self.clip_model = clip_model
        self.mode = mode
        clip_model.requires_grad_(False)
        if mode == "finetune":
            clip_model.visual.requires_grad_(True)
            clip_model.logit_scale.requires_grad_(True)
            if hasattr(clip_model.visual, "mask_embedding"):
                clip_model.visual.mask_embedding.requires_grad_(False)
        else:
            clip_model.visual.mask_embedding.requires_grad_(True)

    def train(self, mode: bool = True) -> "ContrastiveCLIP":
        """The locked text tower stays in eval mode."""
        super().train(mode)
        for name, child in self.clip_model.named_children():
            if name != "visual":
                child.eval()
        return self

    def forward(self, images: torch.Tensor, masks: torch.Tensor, tokens: torch.Tensor):
        """(B, 3, S, S) normalised crops, (B, 1, S, S) masks, (B, L) tokens -> (image features,
        text features) (B, D) each, L2-normalised, and ``exp(logit_scale)``."""
        with torch.no_grad():
            text = self.clip_model.encode_text(tokens)
        prompts = masks if self.mode == "mask_prompt" else None
        image = encode_image_with_mask_prompts(self.clip_model.visual, images, prompts)
        return F.normalize(image, dim=-1), F.normalize(text, dim=-1), self.clip_model.logit_scale.exp()


def _load_ovseg_clip(clip_model: nn.Module, state: dict[str, torch.Tensor], path: str, model_name: str) -> None:
    """Load the CLIP of the OVSeg checkpoint ``path`` into ``clip_model``; one sentence when it is
    another CLIP (width, depth, keys). A zero ``visual.mask_embedding`` (an OVSeg trained with a
    CLIP without mask prompts) counts as absent (see :meth:`CLIPAdaptationTrainer._prepare_mask_embedding`)."""
    check_clip_state(state, clip_model, repr(path))
    own = clip_model.state_dict()
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    other = sorted((set(own) ^ set(state)) - {_MASK_EMBEDDING})
    if wrong or other:
        raise ConfigValueError(
            f"The CLIP of the OVSeg checkpoint {path!r} is not a {model_name} CLIP (e.g. {(other + wrong)[:3]}); "
            f"set --clip-model to the CLIP the checkpoint was trained with (MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME)."
        )
    clip_model.load_state_dict(state, strict=False)
    logger.info("Starting from the CLIP of the OVSeg checkpoint %s (%d tensors).", path, len(state))


def _collate(tokenizer):
    def collate(samples):
        images, masks, titles = zip(*samples)
        return torch.stack(images), torch.stack(masks), tokenizer(list(titles)).long()
    return collate


class CLIPAdaptationTrainer:
    """One CLIP adaptation run (module doc).

    Args:
        settings: what to train and how.
        pairs: the pair index (``pairs.tsv`` of ``tools/mine_mask_noun_pairs.py`` or an OpenCLIP
            CSV), or its rows.
        output_dir: checkpoints, ``clip_final.pth``, ``log.txt``, ``metrics.json``, TensorBoard.
        device: torch device of this process.
        resume: continue from the newest epoch checkpoint in ``output_dir/checkpoints``.
    """

    def __init__(self, settings: AdaptationSettings, pairs: str | Sequence[dict[str, str]], output_dir: str, *,
                 device: str | torch.device = "cpu", resume: bool = False):
        self.settings = settings
        self.output_dir = output_dir
        self.device = torch.device(device)
        self.checkpoint_dir = os.path.join(output_dir, "checkpoints")
        rows = read_pair_index(pairs) if isinstance(pairs, str) else list(pairs)
        torch.manual_seed(settings.seed)
        # --clip-weights may name an OVSeg checkpoint (stage A's model_final.pth): its CLIP is the start
        from_ovseg = ovseg_checkpoint_clip(settings.clip_weights)
        clip_model = build_ovseg_clip_model(settings.clip_model, settings.mask_prompt_depth,
                                            "" if from_ovseg is not None else settings.clip_weights)
        if from_ovseg is not None:
            _load_ovseg_clip(clip_model, from_ovseg, settings.clip_weights, settings.clip_model)
        self.keep_mask_embedding = self._prepare_mask_embedding(clip_model)
        self.model = ContrastiveCLIP(clip_model, settings.mode).to(self.device)
        self.tokenizer = open_clip.get_tokenizer(ovseg_clip_arch(settings.clip_model))
        self.dataset = PairDataset(rows, clip_model.visual.image_size[0], settings.crop_scale, settings.seed)
        self.rank, self.world = comm.get_rank(), comm.get_world_size()
        self.steps_per_epoch = len(epoch_batches(len(rows), settings.batch_size, 0, settings.seed, self.rank, self.world))
        if self.steps_per_epoch == 0:
            raise ConfigValueError(
                f"{len(rows)} pairs make no full batch of {settings.batch_size} per process on {self.world} "
                f"process(es); lower --batch-size or mine more pairs."
            )
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.optimizer = torch.optim.AdamW(
            adaptation_param_groups(self.model, settings.weight_decay), lr=settings.lr, betas=settings.betas,
            eps=settings.eps,
        )
        amp = SimpleNamespace(SOLVER=SimpleNamespace(AMP=SimpleNamespace(ENABLED=settings.amp, DTYPE=settings.amp_dtype)))
        self.amp_dtype, use_scaler = amp_settings(amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None
        self.ddp_model = create_ddp_model(self.model)
        self.start_epoch = 0
        self.storage_state: dict[str, Any] = {}
        if resume:
            self._resume()

    # ---- set-up --------------------------------------------------------------------------
    def _prepare_mask_embedding(self, clip_model: nn.Module) -> bool:
        """Whether ``visual.mask_embedding`` belongs in the output; initialise it for mask-prompt
        tuning when the starting weights had none (it is then all zeros)."""
        emb = getattr(clip_model.visual, "mask_embedding", None)
        if emb is None:
            return False
        from_weights = bool(emb.detach().abs().sum() > 0)
        if self.settings.mode == "mask_prompt" and not from_weights:
            g = torch.Generator().manual_seed(derive_seed(self.settings.seed, 0x3A5C))
            with torch.no_grad():
                emb.copy_(torch.randn(emb.shape, generator=g) * 0.02)
            logger.info("visual.mask_embedding %s initialised from normal(std 0.02).", tuple(emb.shape))
        return self.settings.mode == "mask_prompt" or from_weights

    def clip_state_dict(self) -> dict[str, torch.Tensor]:
        """The CLIP's weights in OpenAI key names (with ``visual.mask_embedding`` when it belongs
        in the output), on the CPU."""
        state = self.model.clip_model.state_dict()
        if not self.keep_mask_embedding:
            state.pop(_MASK_EMBEDDING, None)
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    # ---- checkpoints -----------------------------------------------------------------------
    def _last_checkpoint(self) -> str | None:
        tag = os.path.join(self.checkpoint_dir, "last_checkpoint")
        if not os.path.isfile(tag):
            return None
        with open(tag, encoding="utf-8") as f:
            return os.path.join(self.checkpoint_dir, f.read().strip())

    def _resume(self) -> None:
        path = self._last_checkpoint()
        if path is None:
            logger.info("No checkpoint in %s: starting from epoch 0.", self.checkpoint_dir)
            return
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("mode", "clip_model"):
            if ckpt["settings"][key] != getattr(self.settings, key):
                raise ConfigValueError(
                    f"{path} was trained with {key} {ckpt['settings'][key]!r}, not {getattr(self.settings, key)!r}; "
                    f"resume with the same settings or use another --output."
                )
        own = self.model.clip_model.state_dict()
        state = dict(ckpt["state_dict"])
        if not self.keep_mask_embedding and _MASK_EMBEDDING in own:
            state[_MASK_EMBEDDING] = own[_MASK_EMBEDDING]
        self.model.clip_model.load_state_dict(state)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"])
        self.storage_state = ckpt.get("storage", {})
        logger.info("Resumed from %s (epoch %d of %d done).", path, self.start_epoch, self.settings.epochs)

    def _save_checkpoint(self, epoch: int, storage: EventStorage) -> None:
        if not comm.is_main_process():
            return
        name = f"epoch_{epoch}.pt"
        data = {
            "state_dict": self.clip_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "epoch": epoch,
            "step": epoch * self.steps_per_epoch,
            "storage": storage.state_dict(),
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.settings).items()},
        }
        path = os.path.join(self.checkpoint_dir, name)
        with atomic_write(path) as f:
            torch.save(data, f)
        with atomic_write(os.path.join(self.checkpoint_dir, "last_checkpoint"), "w") as f:
            f.write(name)
        logger.info("Saved %s", path)

    # ---- training --------------------------------------------------------------------------
    def _step(self, batch, step: int, storage: EventStorage) -> float:
        images, masks, tokens = (t.to(self.device, non_blocking=True) for t in batch)
        lr = cosine_lr(step, self.settings.lr, self.settings.warmup_steps, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        amp = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            image_features, text_features, scale = self.ddp_model(images, masks, tokens)
            all_image, all_text = gather_features(image_features, text_features)
            loss = clip_contrastive_loss(all_image.float(), all_text.float(), scale.float())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The contrastive loss became {float(loss)} at step {step}.")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.settings.mode == "finetune":
            with torch.no_grad():
                self.model.clip_model.logit_scale.clamp_(0, math.log(100))
        value = float(loss.detach())
        storage.put_scalars(loss_contrastive=value, total_loss=value)
        storage.put_scalar("lr", lr, smoothing_hint=False)
        storage.put_scalar("logit_scale", float(self.model.clip_model.logit_scale.detach().exp()), smoothing_hint=False)
        return value

    def train(self) -> str:
        """Train the remaining epochs; returns the path of ``clip_final.pth``."""
        s = self.settings
        writers = [CommonMetricPrinter(self.total_steps)]
        if comm.is_main_process():
            writers += [JSONWriter(os.path.join(self.output_dir, "metrics.json")), TensorboardXWriter(self.output_dir)]
        logger.info(
            "CLIP adaptation (%s): %d pairs, %d steps per epoch x %d epochs, %d process(es) x %d pairs, lr %g, wd %g, "
            "trainable %s", s.mode, len(self.dataset), self.steps_per_epoch, s.epochs, self.world, s.batch_size, s.lr,
            s.weight_decay, [n for g in self.optimizer.param_groups for n in g["param_names"]][:6],
        )
        self.ddp_model.train()
        collate = _collate(self.tokenizer)
        with EventStorage(self.start_epoch * self.steps_per_epoch) as storage:
            storage.load_state_dict(self.storage_state)
            for epoch in range(self.start_epoch, s.epochs):
                self.dataset.set_epoch(epoch)
                batches = epoch_batches(len(self.dataset), s.batch_size, epoch, s.seed, self.rank, self.world)
                loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=s.workers, collate_fn=collate,
                                    pin_memory=self.device.type == "cuda")
                end = time.perf_counter()
                for i, batch in enumerate(loader):
                    storage.put_scalar("data_time", time.perf_counter() - end)
                    self._step(batch, epoch * self.steps_per_epoch + i, storage)
                    storage.put_scalar("time", time.perf_counter() - end)
                    if (storage.iter + 1) % s.log_period == 0 or i == len(batches) - 1:
                        for w in writers:
                            w.write()
                    storage.step()
                    end = time.perf_counter()
                self._save_checkpoint(epoch + 1, storage)
        for w in writers:
            w.close()
        final = os.path.join(self.output_dir, FINAL_FILE)
        if comm.is_main_process():
            with atomic_write(final) as f:
                torch.save(self.clip_state_dict(), f)
            logger.info("Wrote the adapted CLIP to %s (load it with MODEL.CLIP_ADAPTER.CLIP_WEIGHTS).", final)
        comm.synchronize()
        return final


def setup_run(output_dir: str) -> None:
    """Create ``output_dir`` and log there (rank 0 also to the console), as the main trainer; the
    sentence of a user error goes to ``log.txt`` and once to stderr."""
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    setup_logger(output_dir, distributed_rank=comm.get_rank(), names=("frozenseg", "train_clip_adapter", "__main__"))
