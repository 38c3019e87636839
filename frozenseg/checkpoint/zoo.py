"""Released weights by name: the table of released checkpoints, their download into a local cache,
their verification, and the one function that turns a weights setting into a local file.

``MODEL.WEIGHTS``, ``MODEL.SAM_CHECKPOINT``, ``MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS`` and
``MODEL.CLIP_ADAPTER.CLIP_WEIGHTS`` accept a local path (as always), an ``http(s)://`` URL, or a
name of :data:`RELEASED_WEIGHTS` (``frozenseg_convnext_large``, ``sam_vit_b``, ...);
:func:`resolve_weights` returns the local file. The entry points call it where the keys are read:
:func:`frozenseg.engine.setup.build_inference_model`, ``DefaultTrainer``, the training
checkpointer's ``load``, :func:`frozenseg.build_model` (for the frozen parts' keys, through
:func:`resolve_frozen_weights`) and ``tools/save_sam_masks.py``.

A name's file is downloaded once into :func:`weights_dir` (``$FROZENSEG_CACHE/weights``, else
``$XDG_CACHE_HOME/frozenseg/weights``, else ``~/.cache/frozenseg/weights``) under its released
file name: written to ``<file>.part`` (a cut download resumes from there with an HTTP ``Range``
request), verified (the checksum where the publisher states one; the key layout, shapes and
dtypes against the layout shipped in ``frozenseg/checkpoint/layouts/``), then renamed into place;
a ``<file>.verified`` note (size, modification time, what was checked) spares the next run the
checksum. A file that fails verification is deleted when it was just downloaded, and refused
(never marked verified) when someone placed it in the cache. ``FROZENSEG_WEIGHTS_URL`` replaces
every URL of the table by ``$FROZENSEG_WEIGHTS_URL/<file name>`` (a mirror, or a local test
server). CLIP names map to an open_clip ``(model, pretrained tag)`` and are fetched by open_clip
into its own (Hugging Face) cache, with the offline rules of
:mod:`frozenseg.modeling.backbone.clip_weights`.

Every failure is one sentence (:class:`WeightsDownloadError`, :class:`WeightsVerificationError`,
:class:`UnknownWeightsError`, :class:`WeightsKeyError`, all
:class:`~frozenseg.utils.errors.UserInputError`) naming the file and the fix; offline, the
sentence names the file to download and the exact path to place it at.

Provenance of the table: the FrozenSeg links are the "checkpoint" links of the FrozenSeg README
(github.com/chenxi52/FrozenSeg, Google Drive; no checksum published); the OVSeg links, file names
and md5 prefixes are those of the OVSeg README / GETTING_STARTED.md (github.com/facebookresearch/
ov-seg, Google Drive); the SAM URLs are segment-anything's README, whose file names end in the
first hex digits of the file's sha256 (the torch.hub convention); the CLIP entries are open_clip's
pretrained tags used by the released configs. The layouts are the ``state_dict()`` of the models
the releases build (``layouts/*.json``; see their ``source`` field).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import html.parser
import http.client
import json
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..utils.errors import CheckpointError, CheckpointNotFoundError, ConfigValueError
from ..utils.paths import CACHE_ENV, cache_root
from .loading import _extract_state_dict, read_checkpoint_file

__all__ = [
    "CACHE_ENV",
    "URL_ENV",
    "RELEASED_WEIGHTS",
    "WeightsEntry",
    "UnknownWeightsError",
    "WeightsDownloadError",
    "WeightsKeyError",
    "WeightsVerificationError",
    "cache_root",
    "weights_dir",
    "weights_path",
    "get_entry",
    "fetch",
    "fetch_url",
    "load_layout",
    "verify_weights_file",
    "resolve_weights",
    "resolve_frozen_weights",
    "model_config_file",
    "model_names",
]

logger = logging.getLogger(__name__)

#: Environment variable: a base URL that replaces every URL of the table (``<base>/<file name>``).
URL_ENV = "FROZENSEG_WEIGHTS_URL"

#: The config keys that hold weights, and the kind of weights each takes.
KEY_KINDS = {
    "MODEL.WEIGHTS": "model",
    "MODEL.SAM_CHECKPOINT": "sam",
    "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS": "clip",
    "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS": "clip",
}
_KIND_WORDS = {"model": "a model checkpoint", "sam": "SAM weights", "clip": "CLIP weights"}
_KIND_KEYS = {"model": "MODEL.WEIGHTS", "sam": "MODEL.SAM_CHECKPOINT",
              "clip": "MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS (FrozenSeg) or MODEL.CLIP_ADAPTER.CLIP_WEIGHTS (OVSeg)"}

_LAYOUT_DIR = Path(__file__).resolve().parent / "layouts"
_LAYOUT_FORMAT = "frozenseg-weights-layout/1"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
#: Consecutive attempts of one URL that bring no new byte before the next URL is tried.
_MAX_STALLED_ATTEMPTS = 3


@dataclass(frozen=True)
class WeightsEntry:
    """One released weights file (or, for CLIP, one open_clip pretrained tag).

    Attributes:
        name: the short name users type.
        title: what it is, for listings and messages.
        kind: ``"model"`` (MODEL.WEIGHTS), ``"sam"`` (MODEL.SAM_CHECKPOINT) or ``"clip"`` (the
            CLIP weights keys).
        file_name: the released file's name (the cached file's name).
        urls: where it is published, tried in order (``FROZENSEG_WEIGHTS_URL`` replaces them).
        config_file: the config (relative to the repository root) the weights belong with.
        layout: a shipped layout (``layouts/<layout>.json``) or the path of a layout JSON file.
        sha256: the publisher's sha256 of the file, or its first hex digits ("" when unknown).
        md5: the publisher's md5 or its first hex digits ("" when unknown).
        open_clip: ``(model name, pretrained tag)`` of a CLIP entry.
        source: where the URL and checksum are published.
    """

    name: str
    title: str
    kind: str
    file_name: str = ""
    urls: tuple[str, ...] = ()
    config_file: str = ""
    layout: str = ""
    sha256: str = ""
    md5: str = ""
    open_clip: tuple[str, str] | None = None
    source: str = ""


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?export=download&id={file_id}"


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_FROZENSEG_SOURCE = "FrozenSeg README (github.com/chenxi52/FrozenSeg), Google Drive; no checksum published"
_OVSEG_SOURCE = "OVSeg README / GETTING_STARTED.md (github.com/facebookresearch/ov-seg), Google Drive; md5 prefix"
_SAM_SOURCE = "segment-anything README (github.com/facebookresearch/segment-anything); sha256 prefix in the file name"
_CLIP_SOURCE = "open_clip pretrained tag of the released config"

#: Every released weights name (see the module doc for the provenance).
RELEASED_WEIGHTS: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry(
            "frozenseg_convnext_large", "FrozenSeg ConvNeXt-L (CLIP convnext_large_d_320, SAM vit_b)", "model",
            "frozenseg_convnext_large.pth", (_drive("1ThjVgY7nawm1AAP1LhrmGVlI3zr1EYMG"),),
            "configs/coco/frozenseg/convnext_large_eval_ade20k.yaml", "frozenseg_convnext_large",
            source=_FROZENSEG_SOURCE,
        ),
        WeightsEntry(
            "frozenseg_rn50x64", "FrozenSeg RN50x64 (CLIP RN50x64, SAM vit_b)", "model",
            "frozenseg_rn50x64.pth", (_drive("1wiPKPczTXrH1cPrDbf-l9NGdOkMUUikw"),),
            "configs/coco/frozenseg/r50x64_eval_ade20k.yaml", "frozenseg_rn50x64",
            source=_FROZENSEG_SOURCE,
        ),
        WeightsEntry(
            "ovseg_swinb_vitl14", "OVSeg Swin-B + CLIP ViT-L/14 (fine-tuned and mask-prompt-tuned)", "model",
            "ovseg_swinbase_vitL14_ft_mpt.pth", (_drive("1cn-ohxgXDrDfkzC1QdO-fi8IjbjXmgKy"),),
            "configs/ovseg/ovseg_swinB_vitL_bs32_120k.yaml", "ovseg_swinb_vitl14", md5="526080",
            source=_OVSEG_SOURCE,
        ),
        WeightsEntry(
            "ovseg_r101c_vitb16", "OVSeg R101c + CLIP ViT-B/16 (fine-tuned and mask-prompt-tuned)", "model",
            "ovseg_R101c_vitB16_ft_mpt.pth", (_drive("1ZmeFMEkhuLqaWkhz4t4IlQ8YflrYja8q"),),
            "configs/ovseg/ovseg_R101c_vitB_bs32_120k.yaml", "ovseg_r101c_vitb16", md5="c746f4",
            source=_OVSEG_SOURCE,
        ),
        WeightsEntry(
            "sam_vit_b", "Segment Anything ViT-B", "sam", "sam_vit_b_01ec64.pth",
            (_SAM_URL + "sam_vit_b_01ec64.pth",), layout="sam_vit_b", sha256="01ec64", source=_SAM_SOURCE,
        ),
        WeightsEntry(
            "sam_vit_l", "Segment Anything ViT-L", "sam", "sam_vit_l_0b3195.pth",
            (_SAM_URL + "sam_vit_l_0b3195.pth",), layout="sam_vit_l", sha256="0b3195", source=_SAM_SOURCE,
        ),
        WeightsEntry(
            "sam_vit_h", "Segment Anything ViT-H", "sam", "sam_vit_h_4b8939.pth",
            (_SAM_URL + "sam_vit_h_4b8939.pth",), layout="sam_vit_h", sha256="4b8939", source=_SAM_SOURCE,
        ),
        WeightsEntry(
            "clip_convnext_large_d_320", "CLIP ConvNeXt-L (LAION-2B, fine-tuned soup; FrozenSeg ConvNeXt-L)",
            "clip", open_clip=("convnext_large_d_320", "laion2b_s29b_b131k_ft_soup"), source=_CLIP_SOURCE,
        ),
        WeightsEntry(
            "clip_rn50x64", "CLIP RN50x64 (OpenAI; FrozenSeg RN50x64)", "clip",
            open_clip=("RN50x64", "openai"), source=_CLIP_SOURCE,
        ),
        WeightsEntry(
            "clip_vit_l14", "CLIP ViT-L/14 (OpenAI; OVSeg Swin-B before adaptation)", "clip",
            open_clip=("ViT-L-14", "openai"), source=_CLIP_SOURCE,
        ),
        WeightsEntry(
            "clip_vit_b16", "CLIP ViT-B/16 (OpenAI; OVSeg R101c before adaptation)", "clip",
            open_clip=("ViT-B-16", "openai"), source=_CLIP_SOURCE,
        ),
    )
}


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
class UnknownWeightsError(CheckpointNotFoundError):
    """A weights setting is neither a file, an URL nor a released weights name."""


class WeightsDownloadError(CheckpointNotFoundError):
    """A released file is not in the cache and cannot be downloaded (offline, HTTP error)."""


class WeightsVerificationError(CheckpointError):
    """A downloaded or cached file is not the released one (checksum, key layout, shapes)."""


class WeightsKeyError(ConfigValueError):
    """A released weights name given to a key that takes another kind of weights."""


# ----------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------
def weights_dir() -> str:
    """Where released weights are cached: ``<cache_root()>/weights``."""
    return os.path.join(cache_root(), "weights")


def weights_path(name: str) -> str:
    """The cached file of the released weights ``name`` (whether or not it is there yet)."""
    entry = get_entry(name)
    if not entry.file_name:
        raise UnknownWeightsError(
            f"{name!r} names open_clip's {entry.open_clip[0]} weights (tag {entry.open_clip[1]!r}), which "
            "open_clip caches itself; it has no file in the FrozenSeg cache."
        )
    return os.path.join(weights_dir(), entry.file_name)


def get_entry(name: str) -> WeightsEntry:
    """The entry of a released weights name (case-insensitive); ``UnknownWeightsError``, with
    the closest names, otherwise."""
    entry = _lookup(name)
    if entry is None:
        raise UnknownWeightsError(f"Unknown released weights name {name!r}{_suggestion(name)}; known names: "
                                  f"{', '.join(RELEASED_WEIGHTS)}.")
    return entry


def _lookup(name: str) -> WeightsEntry | None:
    if name in RELEASED_WEIGHTS:
        return RELEASED_WEIGHTS[name]
    folded = {k.lower(): e for k, e in RELEASED_WEIGHTS.items()}
    return folded.get(name.lower())


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(RELEASED_WEIGHTS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _urls(entry: WeightsEntry) -> tuple[str, ...]:
    base = os.environ.get(URL_ENV, "").strip()
    if base:
        return (base.rstrip("/") + "/" + urllib.parse.quote(entry.file_name),)
    return entry.urls


# ----------------------------------------------------------------------------------------------
# Layouts and verification
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _read_layout(path: str) -> tuple[dict[str, tuple[tuple[int, ...], str]], tuple[str, ...]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != _LAYOUT_FORMAT:
        raise ValueError(f"{path} is not a {_LAYOUT_FORMAT} file")
    default = data.get("default_dtype", "float32")
    dtypes = data.get("dtypes", {})
    keys = {k: (tuple(shape), dtypes.get(k, default)) for k, shape in data["keys"].items()}
    optional = tuple(data.get("optional_prefixes", ()))
    for prefix, other in data.get("include", {}).items():
        included, _ = _read_layout(_layout_file(other))
        keys.update({prefix + k: v for k, v in included.items()})
    return keys, optional


def _layout_file(layout: str) -> str:
    if layout.endswith(".json") or os.sep in layout or "/" in layout:
        return layout
    return str(_LAYOUT_DIR / f"{layout}.json")


def load_layout(layout: str) -> tuple[dict[str, tuple[tuple[int, ...], str]], tuple[str, ...]]:
    """``({key: (shape, dtype name)}, optional key prefixes)`` of a shipped layout name (a file of
    ``frozenseg/checkpoint/layouts``) or of a layout JSON file; ``include`` entries expanded."""
    return _read_layout(_layout_file(layout))


def _dtype_kind(dtype: str) -> str:
    if dtype == "bool":
        return "bool"
    if dtype.startswith(("float", "bfloat", "complex")):
        return "floating-point"
    return "integer"


def _layout_problems(state: Mapping[str, Any], layout: str) -> str:
    """Why ``state`` is not a state dict of ``layout`` ("" when it is). Every key must be in the
    layout with the same shape and the same kind of dtype (floating-point, integer or bool: a
    file saved in half precision still passes); every key outside the optional prefixes (the
    frozen parts a checkpoint may omit) must be present."""
    keys, optional = load_layout(layout)
    unknown = [k for k in state if k not in keys]
    shapes = [f"{k}: {tuple(v.shape)} instead of {keys[k][0]}" for k, v in state.items()
              if k in keys and tuple(v.shape) != keys[k][0]]
    dtypes = [f"{k}: {str(v.dtype).removeprefix('torch.')} instead of {keys[k][1]}" for k, v in state.items()
              if k in keys and _dtype_kind(str(v.dtype).removeprefix("torch.")) != _dtype_kind(keys[k][1])]
    missing = [k for k in keys if k not in state and not k.startswith(optional)]
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} of its {len(state)} tensors are not in the released layout, e.g. {unknown[0]!r}")
    if shapes:
        parts.append(f"{len(shapes)} tensors have other shapes, e.g. {shapes[0]}")
    if dtypes:
        parts.append(f"{len(dtypes)} tensors have another dtype, e.g. {dtypes[0]}")
    if missing:
        parts.append(f"{len(missing)} released tensors are missing, e.g. {missing[0]!r}")
    return "; ".join(parts)


def _file_digest(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _checks(entry: WeightsEntry) -> str:
    """What verifying ``entry``'s file checks (stored in the ``.verified`` note)."""
    return f"sha256={entry.sha256};md5={entry.md5};layout={entry.layout}"


def verify_weights_file(path: str, entry: WeightsEntry) -> str:
    """Why the file at ``path`` is not ``entry``'s released file, or "" when it is: the checksum
    (where the table has one), then the file as a checkpoint (read with
    ``read_checkpoint_file(mmap=True)``, so a truncated file is caught) against the entry's
    layout (keys, shapes, dtype kinds)."""
    for algorithm, expected in (("sha256", entry.sha256), ("md5", entry.md5)):
        if expected:
            got = _file_digest(path, algorithm)
            if not got.startswith(expected.lower()):
                return f"its {algorithm} is {got[:len(expected) + 6]}..., the released file's starts with {expected}"
    try:
        obj = read_checkpoint_file(path, mmap=True)
    except CheckpointError:
        return "it cannot be read as a checkpoint (truncated, or not a file torch.save wrote)"
    if not entry.layout:
        return ""
    try:
        state = _extract_state_dict(obj, repr(path))
    except CheckpointError:
        return "it holds no state dict of tensors"
    return _layout_problems(state, entry.layout)


def _verified_note(path: str) -> str:
    return path + ".verified"


def _note_matches(path: str, checks: str) -> bool:
    try:
        with open(_verified_note(path), encoding="utf-8") as f:
            note = json.load(f)
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return note == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checks": checks}


def _write_note(path: str, checks: str) -> None:
    st = os.stat(path)
    try:
        with open(_verified_note(path), "w", encoding="utf-8") as f:
            json.dump({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checks": checks}, f)
    except OSError as e:  # a read-only cache: the file is verified again next time
        logger.debug("Cannot write %s: %s", _verified_note(path), e)


# ----------------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------------
class _Incomplete(Exception):
    """The connection ended before the whole body arrived."""


class _WebPage(Exception):
    """The server sent an HTML page instead of the file."""


class _ConfirmForm(html.parser.HTMLParser):
    """Google Drive's "can't scan this file for viruses" page: the form (or link) to confirm."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.link = ""
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self.action:
            self.action, self._in_form = a.get("action") or "", True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "a" and "confirm=" in (a.get("href") or "") and not self.link:
            self.link = a["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _confirm_url(page: str, page_url: str, cookies: CookieJar) -> str:
    """The URL that confirms a Google Drive download ("" when the page has none): the page's
    form (``confirm``, ``uuid`` fields), a ``confirm=`` link, or the ``download_warning`` cookie
    of older pages."""
    form = _ConfirmForm()
    form.feed(page)
    if form.action and "confirm" in form.fields:
        action = urllib.parse.urljoin(page_url, form.action)
        return action + ("&" if "?" in action else "?") + urllib.parse.urlencode(form.fields)
    if form.link:
        return urllib.parse.urljoin(page_url, form.link.replace("&amp;", "&"))
    for cookie in cookies:
        if cookie.name.startswith("download_warning"):
            return page_url + ("&" if "?" in page_url else "?") + "confirm=" + urllib.parse.quote(cookie.value)
    return ""


def _open(opener, url: str, start: int):
    headers = {"User-Agent": "frozenseg-weights/1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return opener.open(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


def _open_file_response(url: str, start: int):
    """The response that carries the file (``start`` > 0: from that byte, if the server can),
    after Google Drive's confirmation page when there is one."""
    cookies = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    resp = _open(opener, url, start)
    for _ in range(2):
        if not resp.headers.get_content_type().startswith("text/html"):
            return resp
        page = resp.read(2 << 20).decode("utf-8", "replace")
        resp.close()
        confirm = _confirm_url(page, resp.geturl(), cookies)
        if not confirm:
            break
        resp = _open(opener, confirm, start)
    if resp.headers.get_content_type().startswith("text/html"):
        resp.close()
        raise _WebPage()
    return resp


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-999/1000"
    try:
        unit, rest = (value or "").split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _total_size(resp, start: int) -> int | None:
    rng = resp.headers.get("Content-Range")
    if rng and "/" in rng and not rng.endswith("/*"):
        return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _progress_bar(total: int | None, initial: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _download_once(url: str, part: str, desc: str, progress: bool | None) -> None:
    """One request for the rest of ``part``; raises ``_Incomplete`` when the connection ends
    early (``part`` keeps what arrived)."""
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        resp = _open_file_response(url, start)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the range starts at the end: the part may be whole already
            os.remove(part)
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if start and (status != 206 or _content_range_start(resp.headers.get("Content-Range")) != start):
            start = 0  # the server sends the whole file: start over
        total = _total_size(resp, start)
        if start:
            logger.info("Resuming %s at %.1f MB from %s", desc, start / 1e6, url)
        with open(part, "ab" if start else "wb") as f, _progress_bar(total, start, desc, progress) as bar:
            done = start
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (http.client.IncompleteRead, ConnectionError, socket.timeout) as e:
                    raise _Incomplete(str(e) or type(e).__name__) from None
                if not block:
                    break
                f.write(block)
                done += len(block)
                bar.update(len(block))
    if total is not None and done < total:
        raise _Incomplete(f"{done} of {total} bytes")


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, (ConnectionRefusedError, socket.gaierror, OSError)):
            return f"no connection: {getattr(reason, 'strerror', None) or reason}"
        return f"no connection: {reason}"
    if isinstance(err, _WebPage):
        return "the server sent a web page instead of the file, e.g. Google Drive's download quota page"
    if isinstance(err, _Incomplete):
        return f"the connection kept breaking off ({err})"
    return f"{type(err).__name__}: {err}"


def _download(urls: tuple[str, ...], final: str, desc: str, progress: bool | None) -> str:
    """Download into ``final + '.part'`` (resuming what is there) from the first URL that works;
    returns the URL used. Raises the last error (``urllib.error.URLError``, ``_WebPage``,
    ``_Incomplete``, ``OSError``) when none works."""
    part = final + ".part"
    last: BaseException = RuntimeError("no URL")
    for url in urls:
        stalled = 0
        while stalled < _MAX_STALLED_ATTEMPTS:
            before = os.path.getsize(part) if os.path.isfile(part) else 0
            t0 = time.perf_counter()
            try:
                logger.info("Downloading %s from %s to %s", desc, url, final)
                _download_once(url, part, desc, progress)
                size = os.path.getsize(part)
                logger.info("Downloaded %s (%.1f MB) in %.1f s", desc, size / 1e6, time.perf_counter() - t0)
                return url
            except _Incomplete as e:
                last = e
                after = os.path.getsize(part) if os.path.isfile(part) else 0
                stalled = 0 if after > before else stalled + 1
                logger.warning("Download of %s broke off at %.1f MB (%s); resuming.", desc, after / 1e6, e)
            except urllib.error.HTTPError as e:
                last = e
                if e.code == 416:
                    stalled += 1
                    continue
                break
            except (urllib.error.URLError, _WebPage, socket.timeout, ConnectionError) as e:
                last = e
                break
    raise last


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive lock on ``path + '.lock'`` (POSIX), so that the processes of a multi-GPU job
    download a file once: the others wait, then find it in the cache."""
    try:
        import fcntl

        f = open(path + ".lock", "a+")
    except (ImportError, OSError):  # not POSIX, or a read-only cache (nothing will be written)
        f = None
    if f is None:
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            logger.info("Waiting for another process to download %s", os.path.basename(path))
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fetch_file(entry: WeightsEntry, final: str, urls: tuple[str, ...], progress: bool | None) -> str:
    """``final`` verified: from the cache when its note says so, else verified now (a file placed
    there by hand), else downloaded, verified and renamed into place."""
    checks = _checks(entry)
    if os.path.isfile(final) and _note_matches(final, checks):
        return final
    label = f"{entry.file_name} ({entry.name})" if entry.name else os.path.basename(final)
    source = (entry.urls or urls or ("its release",))[0]  # the publisher's URL, not a mirror's
    try:
        os.makedirs(os.path.dirname(final), exist_ok=True)
    except OSError as e:
        if not os.path.isfile(final):
            raise WeightsDownloadError(
                f"Cannot create the weights cache {os.path.dirname(final)!r} for {label} ({e.strerror or e}); set "
                f"{CACHE_ENV} to a writable folder, or give the file's path instead of the name."
            ) from None
    with _locked(final):
        if os.path.isfile(final):
            if _note_matches(final, checks):
                return final
            problem = verify_weights_file(final, entry)
            if problem:
                raise WeightsVerificationError(
                    f"{final!r} is not the released {label}: {problem}; delete it and run again to download "
                    f"it, or replace it with the file from {source}."
                )
            _write_note(final, checks)
            logger.info("Verified %s", final)
            return final
        part = final + ".part"
        if not urls:
            raise WeightsDownloadError(f"{label} has no download URL; place the file at {final}.")
        try:
            used = _download(urls, final, label, progress)
        except (urllib.error.URLError, _WebPage, _Incomplete, OSError) as e:
            raise WeightsDownloadError(
                f"Cannot download {label} from {urls[0] if urls else 'its release'} ({_reason(e)}); on a "
                f"machine with network access download it from {source} and place it at {final} (or give "
                "the file's path instead of the name)."
            ) from None
        problem = verify_weights_file(part, entry)
        if problem:
            os.remove(part)
            raise WeightsVerificationError(
                f"The file downloaded from {used} for {label} is not the released file ({problem}), so it was "
                f"deleted; run again to download it anew, or download {source} yourself and place it at {final}."
            )
        os.replace(part, final)
        _write_note(final, checks)
        return final


def fetch(name: str, *, progress: bool | None = None) -> str:
    """The local, verified file of the released weights ``name``, downloaded on first use (see
    the module doc). CLIP names are fetched by open_clip into its cache.

    Args:
        progress: show a progress bar on stderr (None: when stderr is a terminal).
    Raises:
        UnknownWeightsError, WeightsDownloadError, WeightsVerificationError (one sentence each);
        for CLIP names the errors of ``clip_weights.tag_weights_file``.
    """
    entry = get_entry(name)
    if entry.open_clip is not None:
        from ..modeling.backbone.clip_weights import tag_weights_file

        model_name, tag = entry.open_clip
        return tag_weights_file(model_name, tag, None)
    return _fetch_file(entry, weights_path(entry.name), _urls(entry), progress)


def fetch_url(url: str, *, progress: bool | None = None) -> str:
    """The local copy of a checkpoint URL: a released entry's URL is fetched as that entry;
    another URL is downloaded once into ``weights_dir()/urls/<hash of the URL>/<file name>`` and
    checked to be a readable checkpoint."""
    for entry in RELEASED_WEIGHTS.values():
        if url in entry.urls:
            return fetch(entry.name, progress=progress)
    file_name = os.path.basename(urllib.parse.urlparse(url).path) or "weights.pth"
    final = os.path.join(weights_dir(), "urls", hashlib.sha256(url.encode()).hexdigest()[:16], file_name)
    return _fetch_file(WeightsEntry("", url, "", file_name, (url,)), final, (url,), progress)


# ----------------------------------------------------------------------------------------------
# The resolution point
# ----------------------------------------------------------------------------------------------
def _looks_like_name(value: str) -> bool:
    return bool(value) and all(c.isalnum() or c in "_-" for c in value)


def resolve_weights(value: str, *, config_key: str = "MODEL.WEIGHTS", kind: str | None = None,
                    progress: bool | None = None) -> str:
    """The local file a weights setting names: a path is returned unchanged (an existing file
    always wins, even over a name), an ``http(s)://`` URL is downloaded into the cache
    (:func:`fetch_url`), and a released name is fetched (:func:`fetch`); "" stays "".

    Args:
        value: the setting (``MODEL.WEIGHTS``, ``MODEL.SAM_CHECKPOINT``, a CLIP weights key...).
        config_key: the key (or flag) that holds it, for the messages; it also decides which
            kind of weights the value may name (:data:`KEY_KINDS`) unless ``kind`` is given.
        kind: ``"model"``, ``"sam"`` or ``"clip"``; None: from ``config_key`` (any kind for a key
            not in :data:`KEY_KINDS`).
    Returns the local path; for a CLIP name, the file open_clip cached for its (model, tag).
    Raises ``WeightsKeyError`` for a name of another kind of weights than the key takes,
    ``UnknownWeightsError`` when a model or SAM value looks like a name (letters, digits, ``_``,
    ``-``) but is neither a file nor a released name (the CLIP keys' open_clip tags, and other
    keys' values, look the same and are passed on), and the errors of :func:`fetch`.
    """
    if not value:
        return value
    text = str(value).strip()
    if text.lower().startswith(("http://", "https://")):
        path = fetch_url(text, progress=progress)
        logger.info("%s %s: %s", config_key, text, path)
        return path
    if os.path.exists(os.path.expandvars(os.path.expanduser(text))):
        return value
    kind = kind or KEY_KINDS.get(config_key)
    entry = _lookup(text) if _looks_like_name(text) else None
    if entry is None:
        if _looks_like_name(text) and kind in ("model", "sam"):  # CLIP tags and other keys' values pass
            names = [n for n, e in RELEASED_WEIGHTS.items() if kind is None or e.kind == kind]
            raise UnknownWeightsError(
                f"{config_key} {text!r} is neither a file nor a released weights name{_suggestion(text)}; give a "
                f"file path, an URL or one of: {', '.join(names)}."
            )
        return value
    if kind is not None and entry.kind != kind:
        raise WeightsKeyError(
            f"{config_key} {text!r} names {_KIND_WORDS[entry.kind]} ({entry.title}), which belong in "
            f"{_KIND_KEYS[entry.kind]}; give {config_key} {_KIND_WORDS[kind]}."
        )
    path = fetch(entry.name, progress=progress)
    logger.info("%s %s: %s", config_key, text, path)
    return path


def _cfg_value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def resolve_frozen_weights(cfg, frozen_parts: Mapping[str, str]):
    """``cfg`` with the weights keys of a model's frozen parts (its ``frozen_parts``: ``{state-dict
    prefix: config key}``) resolved by :func:`resolve_weights`; a clone (frozen if ``cfg`` is)
    when a value changed, else ``cfg`` itself. Nothing is fetched on the ``meta`` device."""
    if str(cfg.MODEL.DEVICE) == "meta":
        return cfg
    changes = {}
    for key in dict.fromkeys(frozen_parts.values()):
        value = _cfg_value(cfg, key)
        if isinstance(value, str) and value:
            resolved = resolve_weights(value, config_key=key)
            if resolved != value:
                changes[key] = resolved
    if not changes:
        return cfg
    out = cfg.clone()
    out.defrost()
    for key, resolved in changes.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, resolved)
    if cfg.is_frozen():
        out.freeze()
    return out


def model_names() -> list[str]:
    """The released weights names that are whole models (those with a config): what ``--model``
    takes."""
    return [name for name, entry in RELEASED_WEIGHTS.items() if entry.config_file]


def model_config_file(name: str) -> str:
    """The config file the released model weights ``name`` belong with: the table's path
    (``configs/...``) from the working directory, else from the repository checkout the package
    was installed from. ``UnknownWeightsError`` for another name or a name without a config
    (SAM, CLIP); a missing file is left to the config loader's error."""
    from ..utils.paths import resolve_path

    entry = get_entry(name)
    if not entry.config_file:
        models = ", ".join(model_names())
        raise UnknownWeightsError(
            f"{name!r} names {_KIND_WORDS[entry.kind]} ({entry.title}), not a model with a config; give "
            f"--model one of: {models}."
        )
    return str(resolve_path(entry.config_file))


def describe(entry: WeightsEntry) -> str:
    """One line about ``entry`` for listings (``tools/download_weights.py``)."""
    if entry.open_clip is not None:
        where = f"open_clip {entry.open_clip[0]} / {entry.open_clip[1]} (open_clip's cache)"
    else:
        where = os.path.join(weights_dir(), entry.file_name)
        if os.path.isfile(where):
            where += " [cached]"
    config = f"; config {entry.config_file}" if entry.config_file else ""
    return f"{entry.name}: {entry.title}{config}; {where}"
