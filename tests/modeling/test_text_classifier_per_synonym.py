"""The text classifier is cached per synonym, in memory and on disk, and a synonym's row is the
same bits however it was obtained: encoded with the whole vocabulary, encoded alone, read from
memory or read from disk. A vocabulary that adds one class to a cached one runs the text tower
on that class's prompts only, for both models: FrozenSeg (synonym lists, ViLD templates, the
shared-prefix path) and OVSeg (literal class strings, ViLD templates, the shared-prefix path).

The spies count the token sequences that enter the text tower (a forward hook on its token
embedding, which every text forward starts with: full prompts, prompt suffixes and template
prefixes alike)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import frozenseg
from frozenseg.checkpoint import zoo
from frozenseg.modeling.backbone import VILD_PROMPT_TEMPLATES, TextClassifierBuilder
from frozenseg.modeling.backbone.text_classifier import resolve_text_cache_dir
from frozenseg.utils.paths import cache_root

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = len(VILD_PROMPT_TEMPLATES)
FROZENSEG_TINY = REPO_ROOT / "configs/tiny/frozenseg_tiny_convnext.yaml"
OVSEG_TINY = REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml"

VOCABULARY = [
    "dog, puppy",
    "traffic light",
    "wall-brick, brick wall",
    "st., ok..., !?",  # BPE merges with the templates' "." (prompts end differently)
    "café, naïve 日本語",
    " ".join(["zebra"] * 80),  # longer than the context: every prompt cut, runs whole
    "sky",
]
NEW_CLASS = "red panda, lesser panda"


class PromptSpy:
    """Counts the token sequences entering a CLIP text tower (rows given to its token embedding),
    except the all-zero rows the builder pads its fixed-size calls with."""

    def __init__(self, clip_model):
        self.rows = 0
        self._handle = clip_model.token_embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.rows += int(args[0].ne(0).any(dim=1).sum())

    def take(self) -> int:
        rows, self.rows = self.rows, 0
        return rows


def _cfg(config, *opts):
    from frozenseg.engine.setup import load_config

    return load_config(str(config), list(opts))


@pytest.fixture(scope="module")
def frozenseg_model():
    torch.manual_seed(0)
    model = frozenseg.build_model(_cfg(FROZENSEG_TINY, "MODEL.FROZEN_SEG.TEXT_CACHE_DIR", ""))
    return model.eval()


@pytest.fixture(scope="module")
def ovseg_model():
    torch.manual_seed(0)
    return frozenseg.build_model(_cfg(OVSEG_TINY)).eval()


def test_frozenseg_one_new_class_encodes_only_its_prompts(frozenseg_model):
    model = frozenseg_model
    builder = model.text_classifier_builder
    builder.clear_cache()
    spy = PromptSpy(model.backbone.clip_model)
    model.set_vocabulary(VOCABULARY)
    model.encode_vocabulary()
    n_syn = sum(len(c.split(",")) for c in VOCABULARY)
    assert builder.last_build == {"memory": 0, "disk": 0, "encoded": n_syn}
    first = spy.take()
    assert first > n_syn * T  # the prompts (their suffixes) and the template prefixes, once

    model.set_vocabulary(VOCABULARY + [NEW_CLASS])
    model.encode_vocabulary()
    assert spy.take() == 2 * T  # the two synonyms of the new class, nothing else
    assert builder.last_build == {"memory": n_syn, "disk": 0, "encoded": 2}
    incremental, counts = builder.build(VOCABULARY + [NEW_CLASS])  # what inference uses
    assert spy.take() == 0

    fresh, fresh_counts = builder.build(VOCABULARY + [NEW_CLASS], cached=False)
    assert spy.take() == (n_syn + 2) * T  # really encoded again, all of it (the prefixes are kept)
    assert torch.equal(incremental, fresh) and counts == fresh_counts

    # another builder on the same weights, no cache at all: the same bits
    other = TextClassifierBuilder(encoder=model.backbone)
    assert torch.equal(other.build(VOCABULARY + [NEW_CLASS])[0], fresh)


def test_ovseg_one_new_class_encodes_only_its_prompts(ovseg_model):
    model = ovseg_model
    builder = model.text_classifier_builder
    builder.clear_cache()
    templates = len(builder.templates)
    spy = PromptSpy(model.clip_adapter.text_encoder.clip_model)
    model.set_vocabulary(VOCABULARY)
    model.encode_vocabulary()
    # one literal prompt set per class string (their suffixes), and the template prefixes, once
    assert spy.take() > len(VOCABULARY) * templates

    model.set_vocabulary(VOCABULARY + [NEW_CLASS])
    model.encode_vocabulary()
    assert spy.take() == templates  # "red panda, lesser panda" is one literal string
    assert builder.last_build == {"memory": len(VOCABULARY), "disk": 0, "encoded": 1}
    incremental, counts = builder.build(VOCABULARY + [NEW_CLASS], literal=True)
    fresh, fresh_counts = builder.build(VOCABULARY + [NEW_CLASS], literal=True, cached=False)
    assert spy.take() == (len(VOCABULARY) + 1) * templates
    assert torch.equal(incremental, fresh) and counts == fresh_counts == [1] * (len(VOCABULARY) + 1)


@pytest.mark.parametrize("share_prefixes", [True, False])
def test_rows_do_not_depend_on_the_rest_of_the_vocabulary(frozenseg_model, share_prefixes):
    """Bit for bit: the whole vocabulary at once = each class alone = in reverse order = with two
    intra-op threads instead of one (the disk cache mixes rows of processes that differ in both)."""
    clip = frozenseg_model.backbone
    names = VOCABULARY + [NEW_CLASS]
    sizes = [len(c.split(",")) for c in names]

    def build(vocabulary):
        return TextClassifierBuilder(encoder=clip, share_prefixes=share_prefixes).build(vocabulary, cached=False)[0]

    whole = build(names)
    assert torch.equal(torch.cat([build([c]) for c in names]), whole)
    assert torch.equal(torch.cat(build(names[::-1]).split(sizes[::-1])[::-1]), whole)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(build(names), whole)
        assert torch.equal(torch.cat([build(names[:3]), build(names[3:])]), whole)
    finally:
        torch.set_num_threads(threads)


def test_ovseg_rows_do_not_depend_on_the_rest_of_the_vocabulary(ovseg_model):
    builder = ovseg_model.text_classifier_builder
    names = VOCABULARY + [NEW_CLASS]
    whole, _ = builder.build(names, literal=True, cached=False)
    alone = torch.cat([builder.build([c], literal=True, cached=False)[0] for c in names])
    assert torch.equal(alone, whole)


def test_disk_cache_per_synonym_reads_old_classes_and_encodes_the_new_one(frozenseg_model, tmp_path):
    clip = frozenseg_model.backbone
    spy = PromptSpy(clip.clip_model)
    first = TextClassifierBuilder(encoder=clip, cache_dir=str(tmp_path))
    first.build(VOCABULARY)
    spy.take()
    n_syn = sum(len(c.split(",")) for c in VOCABULARY)
    assert len(list(tmp_path.rglob("*.pt"))) == n_syn

    second = TextClassifierBuilder(encoder=clip, cache_dir=str(tmp_path))  # as in another process
    rows, _ = second.build(VOCABULARY + [NEW_CLASS])
    assert second.last_build == {"memory": 0, "disk": n_syn, "encoded": 2}
    assert spy.take() <= 2 * T + T + 1  # the new synonyms' prompts and the template prefixes only
    fresh, _ = TextClassifierBuilder(encoder=clip).build(VOCABULARY + [NEW_CLASS], cached=False)
    assert torch.equal(rows, fresh)
    assert len(list(tmp_path.rglob("*.pt"))) == n_syn + 2


def test_project_cache_root_is_the_weights_cache_root(monkeypatch, tmp_path):
    """One cache folder for the project: the text embeddings beside the released weights."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cases = [
        ({"FROZENSEG_CACHE": None, "XDG_CACHE_HOME": None}, tmp_path / "home" / ".cache" / "frozenseg"),
        ({"FROZENSEG_CACHE": None, "XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "frozenseg"),
        ({"FROZENSEG_CACHE": str(tmp_path / "mine"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "mine"),
        ({"FROZENSEG_CACHE": "~/relative/../c", "XDG_CACHE_HOME": None}, tmp_path / "home" / "c"),
    ]
    for env, root in cases:
        for var, value in env.items():
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, value)
        assert cache_root() == str(root), env
        assert zoo.weights_dir() == str(root / "weights")
        expected = os.path.join(str(root), "text_classifier")
        assert resolve_text_cache_dir("$FROZENSEG_CACHE/text_classifier") == expected
        assert resolve_text_cache_dir("${FROZENSEG_CACHE}/t") == os.path.join(str(root), "t")
    assert resolve_text_cache_dir("") == ""  # no disk cache
    assert resolve_text_cache_dir("~/x") == str(tmp_path / "home" / "x")
    assert resolve_text_cache_dir("$FROZENSEG_CACHEX/y") == "$FROZENSEG_CACHEX/y"  # another variable (unset)


def test_tiny_config_caches_in_the_project_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FROZENSEG_CACHE", str(tmp_path))
    cfg = _cfg(FROZENSEG_TINY)
    builder = TextClassifierBuilder(cfg, encoder=object())
    assert builder.cache_dir == str(tmp_path / "text_classifier")


_SCRIPT = r"""
import hashlib, json, sys, torch
torch.set_num_threads(1)
from frozenseg.data.vocabulary_sources import default_vocabulary
from frozenseg.engine.setup import build_inference_model, load_config
cfg = load_config(sys.argv[1], ["SEED", "0", "MODEL.SAM_IMAGE_SIZE", "64"])
model = build_inference_model(cfg)
rows = []
model.backbone.clip_model.token_embedding.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
vocabulary = default_vocabulary()
model.set_vocabulary(vocabulary.class_names, vocabulary.thing_classes)
cache_dir = model.encode_vocabulary()
builder = model.text_classifier_builder
last_build = builder.last_build
classifier, _ = builder.build(vocabulary.class_names)
print(json.dumps({"rows": sum(rows), "cache_dir": cache_dir, "last_build": last_build,
                  "classes": len(vocabulary), "sha": hashlib.sha256(classifier.numpy().tobytes()).hexdigest()}))
"""


@pytest.mark.slow
def test_second_process_reads_the_default_vocabulary_from_the_disk_cache(tmp_path):
    """The tiny config's disk cache, in a fresh process: the second run encodes nothing and gets
    the same classifier bytes. (SEED 0: the tiny model's random text weights, which key the
    cache, are the same in both runs.)"""
    env = dict(os.environ, FROZENSEG_CACHE=str(tmp_path / "cache"),
               DETECTRON2_DATASETS=str(tmp_path / "datasets"), HF_HUB_OFFLINE="1")
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _SCRIPT, str(FROZENSEG_TINY)], env=env, cwd=str(REPO_ROOT),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["cache_dir"] == second["cache_dir"] == str(tmp_path / "cache" / "text_classifier")
    assert first["classes"] == second["classes"] == 227  # COCO + ADE20K: no LVIS json here
    n_syn = first["last_build"]["encoded"]
    assert n_syn > 227 and first["rows"] > n_syn * T  # the first run encodes every synonym
    assert second["rows"] == 0  # a cache hit: the text tower never ran
    assert second["last_build"] == {"memory": 0, "disk": n_syn, "encoded": 0}
    assert first["sha"] == second["sha"]
    assert len(list((tmp_path / "cache" / "text_classifier").rglob("*.pt"))) == n_syn
