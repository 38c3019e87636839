"""Released weights by name (:mod:`frozenseg.checkpoint.zoo`): download into the cache with a
progress bar, cache hits without a request, resume of a cut download with an HTTP Range request,
Google Drive's confirmation page, refusal of corrupt and wrong files (not cached), the offline
sentence naming the file and where to place it, the resolution of every weights key, ``--model``
on ``demo/demo.py`` and ``train_net.py``, and the shipped layouts.

Every download goes to a local HTTP server on 127.0.0.1 (:class:`WeightsServer`); nothing touches
the internet."""

from __future__ import annotations

import fnmatch
import hashlib
import http.server
import importlib.util
import io
import json
import logging
import re
import socket
import threading
import tomllib
import urllib.parse
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from frozenseg.checkpoint import FrozenSegCheckpointer, zoo
from frozenseg.checkpoint.zoo import (
    RELEASED_WEIGHTS,
    UnknownWeightsError,
    WeightsDownloadError,
    WeightsEntry,
    WeightsKeyError,
    WeightsVerificationError,
    resolve_frozen_weights,
    resolve_weights,
)
from frozenseg.utils.errors import CheckpointNotFoundError, is_user_error

from .conftest import OFFICIAL_STATE_DICTS, REPO_ROOT, restored_loggers

TINY_CONFIG = "configs/tiny/frozenseg_tiny_convnext.yaml"
FAST_OPTS = ["SEED", "0", "MODEL.SAM_IMAGE_SIZE", "256", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "128"]


# ----------------------------------------------------------------------------------------------
# The local server
# ----------------------------------------------------------------------------------------------
class WeightsServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (path -> bytes), with ``Range`` requests
    (206) unless ``ranges`` is False, paths whose first response is cut off mid-body
    (``cut_once``), Google-Drive-like confirmation pages (``drive_pages``: path -> file path),
    other web pages (``pages``: path -> HTML) and a log of every request (``requests``: (path
    with query, headers))."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.drive_pages: dict[str, str] = {}
        self.pages: dict[str, bytes] = {}
        self.ranges = True
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers.items())))
                url = urllib.parse.urlparse(self.path)
                path = url.path.lstrip("/")
                query = urllib.parse.parse_qs(url.query)
                if path in server.pages:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(server.pages[path])))
                    self.end_headers()
                    self.wfile.write(server.pages[path])
                    return
                if path in server.drive_pages:
                    if "confirm" not in query:
                        page = (
                            "<html><body><p>Google Drive can't scan this file for viruses.</p>"
                            '<form id="download-form" action="/download" method="get">'
                            '<input type="submit" value="Download anyway"/>'
                            f'<input type="hidden" name="id" value="{query["id"][0]}">'
                            '<input type="hidden" name="export" value="download">'
                            '<input type="hidden" name="confirm" value="t">'
                            '<input type="hidden" name="uuid" value="1234-abcd"></form></body></html>'
                        ).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "text/html; charset=utf-8")
                        self.send_header("Content-Length", str(len(page)))
                        self.end_headers()
                        self.wfile.write(page)
                        return
                    path = server.drive_pages[path]
                elif path == "download" and "confirm" in query:
                    path = next(iter(server.drive_pages.values()))
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and server.ranges and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes="):-1])
                if start >= len(body) and start:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if path in server.cut_once:
                    server.cut_once.discard(path)
                    self.wfile.write(body[start: start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = WeightsServer()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty weights cache (``FROZENSEG_CACHE``), no mirror URL."""
    root = tmp_path / "cache"
    monkeypatch.setenv(zoo.CACHE_ENV, str(root))
    monkeypatch.delenv(zoo.URL_ENV, raising=False)
    return root / "weights"


def closed_port_url() -> str:
    """An URL on 127.0.0.1 where nothing listens (a machine without network)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def one_sentence(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.endswith("."), text
    assert is_user_error(err)
    return text


# ----------------------------------------------------------------------------------------------
# A tiny released file
# ----------------------------------------------------------------------------------------------
def tiny_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "head.weight": torch.randn(4, 3, generator=g),
        "head.bias": torch.zeros(4),
        "encoder.proj.weight": torch.randn(3, 3, generator=g),
        "encoder.steps": torch.tensor(7),
    }


def write_layout(path: Path, state: dict[str, torch.Tensor], *, optional=(), name="tiny") -> Path:
    """A layout JSON of ``state`` in the shipped format."""
    data = {
        "format": "frozenseg-weights-layout/1", "name": name, "source": "a test", "optional_prefixes": list(optional),
        "include": {}, "default_dtype": "float32",
        "dtypes": {k: str(v.dtype).removeprefix("torch.") for k, v in state.items() if v.dtype != torch.float32},
        "keys": {k: list(v.shape) for k, v in state.items()},
    }
    path.write_text(json.dumps(data))
    return path


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def tiny(server, tmp_path, monkeypatch):
    """A released name ``tiny_test`` (file ``tiny_test.pth`` on the local server, layout and
    sha256 known) added to the table."""
    body = saved({"model": tiny_state(), "iteration": 9})
    layout = write_layout(tmp_path / "tiny_layout.json", tiny_state())
    server.files["tiny_test.pth"] = body
    entry = WeightsEntry("tiny_test", "Tiny test weights", "model", "tiny_test.pth", (server.url("tiny_test.pth"),),
                         layout=str(layout), sha256=hashlib.sha256(body).hexdigest()[:8])
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_test", entry)
    return entry, body


def cached_files(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()} if cache.exists() else set()


# ----------------------------------------------------------------------------------------------
# Download, cache, resume
# ----------------------------------------------------------------------------------------------
def test_download_verifies_caches_and_shows_progress(cache, server, tiny, capsys):
    entry, body = tiny
    path = zoo.fetch("tiny_test", progress=True)
    assert path == str(cache / "tiny_test.pth") and Path(path).read_bytes() == body
    assert cached_files(cache) == {"tiny_test.pth", "tiny_test.pth.verified", "tiny_test.pth.lock"}  # no .part
    err = capsys.readouterr().err
    assert "tiny_test.pth (tiny_test)" in err and "100%" in err  # the progress bar
    assert len(server.requests) == 1 and "Range" not in server.requests[0][1]
    # a cache hit: no second request, whichever way the name is given
    assert zoo.fetch("tiny_test") == path
    assert resolve_weights("tiny_test", config_key="MODEL.WEIGHTS") == path
    assert resolve_weights("TINY_TEST") == path
    assert len(server.requests) == 1


def test_cut_download_resumes_with_a_range_request(cache, server, tiny):
    entry, body = tiny
    server.cut_once.add("tiny_test.pth")  # the first response breaks off after half the body
    path = zoo.fetch("tiny_test", progress=False)
    assert len(server.requests) == 2
    first, second = (h for _, h in server.requests)
    assert "Range" not in first
    assert second["Range"] == f"bytes={len(body) // 2}-"
    assert Path(path).read_bytes() == body and (cache / "tiny_test.pth.verified").is_file()
    assert not (cache / "tiny_test.pth.part").exists()


def test_partial_file_of_an_earlier_run_resumes(cache, server, tiny):
    entry, body = tiny
    cache.mkdir(parents=True)
    (cache / "tiny_test.pth.part").write_bytes(body[:100])  # a run stopped after 100 bytes
    assert Path(zoo.fetch("tiny_test")).read_bytes() == body
    assert [h.get("Range") for _, h in server.requests] == ["bytes=100-"]


def test_server_without_range_support_starts_over(cache, server, tiny):
    entry, body = tiny
    server.ranges = False  # answers 200 with the whole file to a Range request
    cache.mkdir(parents=True)
    (cache / "tiny_test.pth.part").write_bytes(b"x" * 50)
    assert Path(zoo.fetch("tiny_test")).read_bytes() == body


def test_google_drive_confirmation_page_is_followed(cache, server, tiny, monkeypatch):
    entry, body = tiny
    server.drive_pages["uc"] = "tiny_test.pth"
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_test",
                        WeightsEntry(**{**entry.__dict__, "urls": (server.url("uc?export=download&id=XYZ"),)}))
    assert Path(zoo.fetch("tiny_test")).read_bytes() == body
    paths = [p for p, _ in server.requests]
    assert paths[0] == "/uc?export=download&id=XYZ"
    confirm = urllib.parse.urlparse(paths[1])
    assert confirm.path == "/download"
    assert urllib.parse.parse_qs(confirm.query) == {"id": ["XYZ"], "export": ["download"], "confirm": ["t"],
                                                    "uuid": ["1234-abcd"]}


def test_a_web_page_instead_of_the_file_is_refused(cache, server, tiny, monkeypatch):
    """A page without a confirmation form (e.g. Google Drive's quota page) is not saved as the file."""
    entry, _ = tiny
    server.pages["uc"] = b"<html><body>Too many users have viewed or downloaded this file recently.</body></html>"
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_test",
                        WeightsEntry(**{**entry.__dict__, "urls": (server.url("uc?export=download&id=XYZ"),)}))
    with pytest.raises(WeightsDownloadError) as info:
        zoo.fetch("tiny_test")
    msg = one_sentence(info.value)
    assert "web page instead of the file" in msg and f"place it at {cache / 'tiny_test.pth'} " in msg
    assert not (cache / "tiny_test.pth").exists() and not (cache / "tiny_test.pth.part").exists()


# ----------------------------------------------------------------------------------------------
# Corrupt, wrong and missing files
# ----------------------------------------------------------------------------------------------
def test_corrupt_download_is_refused_and_not_cached(cache, server, tiny):
    entry, body = tiny
    server.files["tiny_test.pth"] = saved({"model": {**tiny_state(), "head.bias": torch.ones(4)}})  # other bytes
    with pytest.raises(WeightsVerificationError) as info:
        zoo.fetch("tiny_test")
    msg = one_sentence(info.value)
    assert "tiny_test.pth (tiny_test)" in msg and f"starts with {entry.sha256}" in msg
    assert "deleted" in msg and str(cache / "tiny_test.pth") in msg
    assert cached_files(cache) <= {"tiny_test.pth.lock"}  # nothing left that looks downloaded
    server.files["tiny_test.pth"] = body  # the fix the sentence names: run again
    assert Path(zoo.fetch("tiny_test")).read_bytes() == body


def test_released_sam_name_with_a_bad_checksum(cache, server, monkeypatch):
    monkeypatch.setenv(zoo.URL_ENV, server.base + "/mirror/")
    server.files["mirror/sam_vit_b_01ec64.pth"] = b"not the SAM checkpoint" * 100
    with pytest.raises(WeightsVerificationError) as info:
        resolve_weights("sam_vit_b", config_key="MODEL.SAM_CHECKPOINT")
    msg = one_sentence(info.value)
    assert "sam_vit_b_01ec64.pth (sam_vit_b)" in msg and "sha256" in msg and "01ec64" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in msg  # the publisher's URL
    assert [p for p, _ in server.requests] == ["/mirror/sam_vit_b_01ec64.pth"]
    assert not (cache / "sam_vit_b_01ec64.pth").exists() and not (cache / "sam_vit_b_01ec64.pth.part").exists()


def test_wrong_file_for_a_released_name_is_refused(cache, server, monkeypatch):
    """A tiny model's checkpoint served as the released FrozenSeg ConvNeXt-L (no checksum
    published): its key layout gives it away."""
    monkeypatch.setenv(zoo.URL_ENV, server.base)
    server.files["frozenseg_convnext_large.pth"] = saved({"model": tiny_state()})
    with pytest.raises(WeightsVerificationError) as info:
        resolve_weights("frozenseg_convnext_large")
    msg = one_sentence(info.value)
    assert "frozenseg_convnext_large.pth (frozenseg_convnext_large) is not the released file" in msg
    assert "4 of its 4 tensors are not in the released layout" in msg and "released tensors are missing" in msg
    assert cached_files(cache) <= {"frozenseg_convnext_large.pth.lock"}


def test_released_layout_with_wrong_shapes_and_dtypes(tmp_path):
    """A file with the released keys but another shape or dtype kind fails verification; one
    without the optional frozen parts passes."""
    keys, optional = zoo.load_layout("frozenseg_convnext_large")
    trainable = {k: torch.zeros(s, dtype=torch.float16) for k, (s, _) in keys.items() if not k.startswith(optional)}
    entry = RELEASED_WEIGHTS["frozenseg_convnext_large"]
    for name, state, expected in [
        ("ok.pth", trainable, ""),  # half precision and no frozen parts: still the released layout
        ("shape.pth", {**trainable, "void_embedding.weight": torch.zeros(1, 7)}, "other shapes"),
        ("dtype.pth", {**trainable, "void_embedding.weight": torch.zeros(keys["void_embedding.weight"][0],
                                                                          dtype=torch.int64)}, "another dtype"),
    ]:
        torch.save(state, tmp_path / name)
        problem = zoo.verify_weights_file(str(tmp_path / name), entry)
        assert (expected in problem) if expected else problem == "", (name, problem)


def test_wrong_file_placed_in_the_cache_is_refused_every_time(cache, server, monkeypatch):
    monkeypatch.setenv(zoo.URL_ENV, server.base)
    cache.mkdir(parents=True)
    placed = cache / "frozenseg_convnext_large.pth"
    placed.write_bytes(saved(tiny_state()))
    for _ in range(2):
        with pytest.raises(WeightsVerificationError) as info:
            resolve_weights("frozenseg_convnext_large")
        msg = one_sentence(info.value)
        assert msg.startswith(f"{str(placed)!r} is not the released frozenseg_convnext_large.pth")
        assert "delete it and run again" in msg
    assert not (cache / "frozenseg_convnext_large.pth.verified").exists() and server.requests == []


def test_truncated_file_placed_in_the_cache_is_refused(cache, tiny, monkeypatch):
    entry, body = tiny
    cache.mkdir(parents=True)
    (cache / "tiny_test.pth").write_bytes(body[: len(body) // 2])
    # no checksum: reading the file (memory-mapped) catches it
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_test", WeightsEntry(**{**entry.__dict__, "sha256": ""}))
    with pytest.raises(WeightsVerificationError, match="cannot be read as a checkpoint"):
        zoo.fetch("tiny_test")


def test_offline_names_the_file_and_where_to_place_it(cache, tiny, monkeypatch):
    monkeypatch.setenv(zoo.URL_ENV, closed_port_url())
    with pytest.raises(WeightsDownloadError) as info:
        resolve_weights("frozenseg_convnext_large")
    msg = one_sentence(info.value)
    target = cache / "frozenseg_convnext_large.pth"
    assert "Cannot download frozenseg_convnext_large.pth" in msg and "no connection" in msg
    assert f"place it at {target} " in msg and "drive.google.com" in msg
    assert isinstance(info.value, CheckpointNotFoundError) and not target.exists()
    # the fix the sentence names: the file placed there is used (verified) without any network
    entry, body = tiny
    (cache / "tiny_test.pth").write_bytes(body)
    assert zoo.fetch("tiny_test") == str(cache / "tiny_test.pth")
    assert (cache / "tiny_test.pth.verified").is_file()


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(zoo.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.weights_dir() == str(tmp_path / "home" / ".cache" / "frozenseg" / "weights")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.weights_path("sam_vit_h") == str(tmp_path / "xdg" / "frozenseg" / "weights" / "sam_vit_h_4b8939.pth")
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "mine"))
    assert zoo.weights_dir() == str(tmp_path / "mine" / "weights")


# ----------------------------------------------------------------------------------------------
# Resolution of the weights keys
# ----------------------------------------------------------------------------------------------
def test_paths_urls_and_names_resolve(cache, server, tiny, tmp_path):
    entry, body = tiny
    local = tmp_path / "mine.pth"
    local.write_bytes(body)
    assert resolve_weights("") == ""
    assert resolve_weights(str(local)) == str(local)  # a path: unchanged
    assert resolve_weights("not/there.pth") == "not/there.pth"  # left to the loader's own error
    server.files["files/other.pth"] = body
    url_path = resolve_weights(server.url("files/other.pth"))  # an URL: downloaded once
    assert Path(url_path).read_bytes() == body and Path(url_path).parent.parent.name == "urls"
    assert resolve_weights(server.url("files/other.pth")) == url_path and len(server.requests) == 1
    assert resolve_weights(server.url("tiny_test.pth")) == str(cache / "tiny_test.pth")  # a released URL: its name


def test_names_of_another_kind_and_unknown_names(cache):
    with pytest.raises(WeightsKeyError) as info:
        resolve_weights("sam_vit_b", config_key="MODEL.WEIGHTS")
    msg = one_sentence(info.value)
    assert "names SAM weights" in msg and "MODEL.SAM_CHECKPOINT" in msg and isinstance(info.value, ValueError)
    with pytest.raises(WeightsKeyError, match="names a model checkpoint"):
        resolve_weights("frozenseg_rn50x64", config_key="MODEL.SAM_CHECKPOINT")
    with pytest.raises(UnknownWeightsError) as info:
        resolve_weights("frozenseg_convnext_larg", config_key="MODEL.WEIGHTS")
    msg = one_sentence(info.value)
    assert "did you mean 'frozenseg_convnext_large'" in msg and "ovseg_swinb_vitl14" in msg
    assert "sam_vit_b" not in msg  # only the names MODEL.WEIGHTS takes
    assert resolve_weights("imagenet", config_key="MODEL.MY_ENCODER_WEIGHTS") == "imagenet"  # another key's value
    # open_clip tags look like names: the CLIP keys leave them to open_clip
    assert resolve_weights("laion2b_s29b_b131k_ft_soup", config_key="MODEL.FROZEN_SEG.CLIP_PRETRAINED_WEIGHTS") \
        == "laion2b_s29b_b131k_ft_soup"


def test_clip_names_go_through_open_clip(cache, monkeypatch):
    """A CLIP name is open_clip's (model, tag), fetched by the existing tag machinery (here
    offline, so it says which file to get)."""
    from frozenseg.modeling.backbone.clip_weights import CLIPWeightsUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache.parent / "hf"))
    with pytest.raises(CLIPWeightsUnavailableError) as info:
        resolve_weights("clip_rn50x64", config_key="MODEL.CLIP_ADAPTER.CLIP_WEIGHTS")
    msg = one_sentence(info.value)
    assert "'RN50x64' tag 'openai'" in msg
    with pytest.raises(WeightsKeyError, match="names CLIP weights"):
        resolve_weights("clip_vit_l14", config_key="MODEL.WEIGHTS")


def test_frozen_part_keys_resolve_in_a_copy_of_the_config(cache, server, tiny, monkeypatch):
    from frozenseg.engine.setup import load_config
    from frozenseg.modeling.build import meta_arch_class

    entry, body = tiny
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_sam", WeightsEntry(**{**entry.__dict__, "name": "tiny_sam",
                                                                       "kind": "sam"}))
    cfg = load_config(str(REPO_ROOT / TINY_CONFIG), ["MODEL.SAM_CHECKPOINT", "tiny_sam"], freeze=True)
    resolved = resolve_frozen_weights(cfg, meta_arch_class(cfg).frozen_parts)
    assert resolved.MODEL.SAM_CHECKPOINT == str(cache / "tiny_test.pth") and resolved.is_frozen()
    assert cfg.MODEL.SAM_CHECKPOINT == "tiny_sam"  # the caller's config is left alone
    assert resolve_frozen_weights(resolved, meta_arch_class(cfg).frozen_parts) is resolved  # nothing to do
    meta = load_config(str(REPO_ROOT / TINY_CONFIG), ["MODEL.SAM_CHECKPOINT", "sam_vit_h"])
    meta.MODEL.DEVICE = "meta"
    assert resolve_frozen_weights(meta, meta_arch_class(cfg).frozen_parts) is meta  # meta: nothing fetched


def test_checkpointer_loads_a_name(cache, server, tiny):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 4)
            self.encoder = nn.Module()
            self.encoder.proj = nn.Linear(3, 3, bias=False)
            self.encoder.register_buffer("steps", torch.tensor(0))

    model = Tiny()
    FrozenSegCheckpointer(model).load("tiny_test", checkpointables=[])
    assert torch.equal(model.head.weight, tiny_state()["head.weight"]) and int(model.encoder.steps) == 7


# ----------------------------------------------------------------------------------------------
# --model on the command lines
# ----------------------------------------------------------------------------------------------
def _demo_cli():
    spec = importlib.util.spec_from_file_location("frozenseg_demo_cli_zoo", REPO_ROOT / "demo" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_model_state():
    """The trainable part of the tiny FrozenSeg (its frozen CLIP and SAM are random anyway)."""
    from frozenseg.engine.setup import load_config
    from frozenseg.modeling.build import build_model

    cfg = load_config(str(REPO_ROOT / TINY_CONFIG), FAST_OPTS)
    state = build_model(cfg).state_dict()
    return {k: v for k, v in state.items() if not k.startswith(("backbone.clip_model.", "sam."))}, state


@pytest.fixture
def tiny_frozenseg(server, tmp_path, monkeypatch, tiny_model_state):
    """A released name ``tiny_frozenseg`` whose config is the tiny FrozenSeg's."""
    trainable, full = tiny_model_state
    server.files["tiny_frozenseg.pth"] = saved({"model": trainable})
    layout = write_layout(tmp_path / "tiny_frozenseg.json", full, optional=("backbone.clip_model.", "sam."))
    entry = WeightsEntry("tiny_frozenseg", "Tiny FrozenSeg", "model", "tiny_frozenseg.pth",
                         (server.url("tiny_frozenseg.pth"),), config_file=TINY_CONFIG, layout=str(layout))
    monkeypatch.setitem(RELEASED_WEIGHTS, "tiny_frozenseg", entry)
    return entry


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (120, 180, 60)).save(path)
    return path


@pytest.fixture
def restore_logging():
    with restored_loggers(("frozenseg", "fvcore", "train_net", "frozenseg.demo")):
        yield


def test_demo_model_flag_downloads_and_uses_the_names_config(cache, server, tiny_frozenseg, image, tmp_path,
                                                             caplog, restore_logging):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        rc = _demo_cli().main(["--model", "tiny_frozenseg", "--input", str(image), "--output", str(out),
                               "--vocabulary", "cat;grass", "--opts", *FAST_OPTS])
    assert rc == 0 and (out / "photo_overlay.png").is_file()
    target = cache / "tiny_frozenseg.pth"
    assert target.is_file() and [p for p, _ in server.requests] == ["/tiny_frozenseg.pth"]
    assert f"MODEL.WEIGHTS tiny_frozenseg: {target}" in caplog.text  # the name, resolved to the cache
    assert re.search(r"loaded \d+ tensors", caplog.text)


def test_demo_model_flag_offline(cache, image, tmp_path, caplog, monkeypatch, restore_logging):
    monkeypatch.setenv(zoo.URL_ENV, closed_port_url())
    with caplog.at_level(logging.ERROR):
        rc = _demo_cli().main(["--model", "frozenseg_convnext_large", "--input", str(image),
                               "--output", str(tmp_path / "out"), "--vocabulary", "cat;dog"])
    assert rc == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("Cannot build the model: Cannot download frozenseg_convnext_large.pth")
    assert f"place it at {cache / 'frozenseg_convnext_large.pth'} " in errors[0]


def test_demo_model_flag_refuses_weights_without_a_config(cache, image, tmp_path, caplog, restore_logging):
    with caplog.at_level(logging.ERROR):
        rc = _demo_cli().main(["--model", "sam_vit_b", "--input", str(image), "--output", str(tmp_path / "out")])
    assert rc == 2 and "names SAM weights (Segment Anything ViT-B), not a model with a config" in caplog.text


def test_train_net_model_flag_eval_only(cache, server, tiny_frozenseg, tmp_path, restore_logging):
    import train_net

    out = tmp_path / "run"
    res = train_net.cli(["--model", "tiny_frozenseg", "--eval-only", "MODEL.DEVICE", "cpu", "DATASETS.TEST", "()",
                         "OUTPUT_DIR", str(out), *FAST_OPTS])
    assert res == {}
    log = (out / "log.txt").read_text()
    assert f"MODEL.WEIGHTS tiny_frozenseg: {cache / 'tiny_frozenseg.pth'}" in log  # the name, from the cache
    assert re.search(r"loaded \d+ tensors", log)
    saved_cfg = (out / "config.yaml").read_text()
    assert "WEIGHTS: tiny_frozenseg" in saved_cfg and "tiny_convnext_clip" in saved_cfg  # the name's config


def test_train_net_model_flag_offline(cache, tmp_path, monkeypatch, capsys, restore_logging):
    import train_net

    monkeypatch.setenv(zoo.URL_ENV, closed_port_url())
    with pytest.raises(SystemExit) as info:
        train_net.cli(["--model", "ovseg_swinb_vitl14", "--eval-only", "MODEL.DEVICE", "cpu",
                       "OUTPUT_DIR", str(tmp_path / "run")])
    assert info.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train_net.py: error: ")]
    assert len(err) == 1 and "Cannot download ovseg_swinbase_vitL14_ft_mpt.pth (ovseg_swinb_vitl14)" in err[0]
    assert f"place it at {cache / 'ovseg_swinbase_vitL14_ft_mpt.pth'} " in err[0]


def test_download_weights_tool(cache, server, tiny, capsys):
    spec = importlib.util.spec_from_file_location("download_weights", REPO_ROOT / "tools" / "download_weights.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in RELEASED_WEIGHTS) and str(cache) in listing
    assert tool.main(["--path", "sam_vit_l"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "sam_vit_l_0b3195.pth")
    assert tool.main(["--no-progress", "tiny_test"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "tiny_test.pth")
    with pytest.raises(SystemExit) as info:
        tool.main(["nope"])
    assert info.value.code == 2 and "Unknown released weights name 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The table and the shipped layouts
# ----------------------------------------------------------------------------------------------
REFERENCE_LAYOUTS = {
    "frozenseg_convnext_large": "convnext_large_d_320__sam_vit_b.json",
    "frozenseg_rn50x64": "rn50x64__sam_vit_b.json",
    "ovseg_swinb_vitl14": "ovseg_swinB_vitL14.json",
    "ovseg_r101c_vitb16": "ovseg_R101c_vitB16.json",
}


@pytest.mark.parametrize("name", list(REFERENCE_LAYOUTS))
def test_shipped_layouts_are_the_released_ones(name):
    keys, _ = zoo.load_layout(RELEASED_WEIGHTS[name].layout)
    reference = json.loads((OFFICIAL_STATE_DICTS / REFERENCE_LAYOUTS[name]).read_text())
    assert list(keys) == list(reference)
    assert keys == {k: (tuple(shape), dtype) for k, (shape, dtype) in reference.items()}


def test_shipped_layouts_are_complete_and_package_data():
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["frozenseg"]
    package = REPO_ROOT / "frozenseg"
    shipped = sorted((package / "checkpoint" / "layouts").glob("*.json"))
    assert {p.stem for p in shipped} == {e.layout for e in RELEASED_WEIGHTS.values() if e.layout}
    sam_b, _ = zoo.load_layout("sam_vit_b")
    for path in shipped:
        assert any(fnmatch.fnmatch(path.relative_to(package).as_posix(), p) for p in patterns), path
        data = json.loads(path.read_text())
        keys, optional = zoo.load_layout(path.stem)
        assert data["name"] == path.stem and data["source"] and len(keys) >= len(data["keys"]) > 0
        assert set(data["dtypes"]) <= set(data["keys"])
        for prefix in optional:  # each optional prefix is a part of the model
            assert any(k.startswith(prefix) for k in keys), (path.stem, prefix)
        if "sam." in data["include"]:  # FrozenSeg carries the whole SAM vit_b
            assert {k[len("sam."):]: v for k, v in keys.items() if k.startswith("sam.")} == sam_b
    sizes = {n: len(zoo.load_layout(n)[0]) for n in ("sam_vit_b", "sam_vit_l", "sam_vit_h")}
    assert sizes == {"sam_vit_b": 314, "sam_vit_l": 482, "sam_vit_h": 594}


def test_the_table_is_consistent():
    from frozenseg.modeling.sam.specs import SAM_SPECS

    for name, entry in RELEASED_WEIGHTS.items():
        assert entry.name == name and entry.kind in ("model", "sam", "clip") and entry.source
        assert name == name.lower() and zoo._looks_like_name(name)
        if entry.kind == "clip":
            import open_clip

            assert open_clip.is_pretrained_cfg(*entry.open_clip), entry.open_clip
            continue
        assert entry.file_name and entry.urls and entry.layout
        if entry.config_file:
            assert (REPO_ROOT / entry.config_file).is_file()
        if entry.kind == "sam":
            spec = SAM_SPECS[name.removeprefix("sam_")]
            assert (entry.file_name, entry.urls[0]) == (spec.checkpoint_file, spec.checkpoint_url)
            assert entry.file_name.removesuffix(".pth").endswith("_" + entry.sha256)  # the published prefix
    assert {n for n, e in RELEASED_WEIGHTS.items() if e.kind == "model"} == set(REFERENCE_LAYOUTS)
