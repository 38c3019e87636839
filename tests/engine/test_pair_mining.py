"""Mask-noun pair mining (docs/models/ovseg.md §3.B1; frozenseg.models.ovseg.adaptation.pair_mining, frozenseg.models.ovseg.adaptation.mask_noun_pairs,
tools/mine_mask_noun_pairs.py): the matching rule on hand-made similarity matrices, the records
of a synthetic COCO Captions set mined with a tiny random OVSeg (crops, masks, nouns, similarities
checked against the model), the file format's round trip and the release's fill colour, resume,
shards, changed parameters and the command line."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

import frozenseg
from frozenseg.models.ovseg.adaptation.caption_nouns import VocabularyNounExtractor
from frozenseg.models.ovseg.adaptation.mask_noun_pairs import (
    RELEASE_TRAIN_FILL,
    apply_release_fill,
    load_coco_captions,
    load_pair,
    mask_from_fill,
    read_image_records,
    read_pair_index,
    records_path,
)
from frozenseg.models.ovseg.adaptation.pair_mining import (
    EMPTY_WEIGHTS_WARNING,
    MatchingRule,
    NounEmbeddings,
    match_nouns,
    mine_pairs,
)

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = str(REPO_ROOT / "configs/tiny/ovseg_tiny_swin.yaml")
ALL = MatchingRule(min_similarity=-1.0, margin=0.0, exclusive=False)  # every noun gets its best proposal
CAPTIONS = {  # image id -> captions (annotation ids increase down the list)
    3: ["Two dogs and a cat on the grass."],
    1: ["A man holding an umbrella.", "A person with a bag."],
    4: ["Nothing to see here."],
    2: ["Buses near traffic lights."],
}
NOUNS = {3: ["dog", "cat", "grass"], 1: ["man", "umbrella"], 4: [], 2: ["bus", "traffic light"]}
FIRST_CAPTION_NOUNS = {**NOUNS, 1: ["person", "bag"]}


# ---------------------------------------------------------------------------------------------
# The matching rule
# ---------------------------------------------------------------------------------------------
def test_match_nouns_on_hand_made_similarities():
    s = torch.tensor([
        [0.50, 0.30, 0.10],  # noun 0: proposal 0, margin 0.2
        [0.45, 0.44, 0.00],  # noun 1: margin 0.01 < 0.05 -> no pair
        [0.10, 0.20, 0.60],  # noun 2: proposal 2
        [0.55, 0.10, 0.00],  # noun 3: proposal 0 too, more similar than noun 0
    ])
    rule = MatchingRule(min_similarity=0.2, margin=0.05)
    assert match_nouns(s, rule) == [(2, 2), (3, 0)]
    assert match_nouns(s, MatchingRule(0.2, 0.05, exclusive=False)) == [(0, 0), (2, 2), (3, 0)]
    assert match_nouns(s, MatchingRule(0.58, 0.05)) == [(2, 2)]
    # proposal 0 is not a candidate (objectness 0.1 < 0.5): noun 0 -> 1 (0.30 vs 0.10), noun 1 -> 1
    # (0.44, more similar: it keeps proposal 1), noun 3's best 0.10 < 0.2
    scores = torch.tensor([0.1, 0.9, 0.9])
    assert match_nouns(s, MatchingRule(0.2, 0.05, min_score=0.5), scores) == [(1, 1), (2, 2)]
    assert match_nouns(s, MatchingRule(0.2, 0.05, min_score=0.95), scores) == []
    assert match_nouns(torch.tensor([[0.3]]), MatchingRule(0.2, 0.5)) == [(0, 0)]  # no competitor
    assert match_nouns(torch.tensor([[0.3, 0.1], [0.3, 0.1]]), MatchingRule(0.2, 0.1)) == [(0, 0)]  # tie: first noun
    assert match_nouns(torch.zeros(0, 3), rule) == []


def test_empty_weights_warning_names_an_ovseg_checkpoint():
    """Mining needs an OVSeg: the warning names stage A's checkpoint and a released OVSeg by its
    name and file (as the weights zoo lists them), never a FrozenSeg checkpoint."""
    from frozenseg.checkpoint.zoo import get_entry

    released = get_entry("ovseg_swinb_vitl14")
    assert released.kind == "model" and released.title.startswith("OVSeg")
    assert EMPTY_WEIGHTS_WARNING == (
        "MODEL.WEIGHTS is empty: the OVSeg that mines has a random proposal generator and CLIP, so its pairs "
        "are arbitrary. Pass an OVSeg checkpoint: stage A's (MODEL.WEIGHTS output/ovseg_a/model_final.pth) or "
        f"a released OVSeg by name (MODEL.WEIGHTS {released.name}, fetched into the cache) or file "
        f"(MODEL.WEIGHTS /path/to/{released.file_name})."
    )
    assert "frozenseg" not in EMPTY_WEIGHTS_WARNING.lower()


# ---------------------------------------------------------------------------------------------
# A synthetic COCO Captions set and a tiny OVSeg
# ---------------------------------------------------------------------------------------------
def write_captions(root) -> tuple[str, str]:
    images, anns, ann_id = [], [], 10
    rng = np.random.default_rng(0)
    os.makedirs(root / "train2017", exist_ok=True)
    for image_id, captions in CAPTIONS.items():
        name = f"{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(root / "train2017" / name, format="PNG")
        images.append({"id": image_id, "file_name": name, "height": 64, "width": 80})
        for c in captions:
            anns.append({"id": ann_id, "image_id": image_id, "caption": c})
            ann_id -= 1  # later captions have lower ids: "1cap" takes the lowest annotation id
    anns.reverse()
    path = root / "captions_train2017.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": anns}))
    return str(path), str(root / "train2017")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(CONFIG)
    m = frozenseg.build_model(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(m.clip_adapter.clip_model.visual.mask_embedding, std=0.5)
    return m


@pytest.fixture
def dataset(tmp_path):
    return load_coco_captions(*write_captions(tmp_path))


def mine(dataset, model, out, rule=ALL, **kw):
    return mine_pairs(dataset, model, str(out), extract_nouns=VocabularyNounExtractor(), resize=lambda x: x,
                      rule=rule, log_every=1, **kw)


def test_load_coco_captions(dataset, tmp_path):
    assert [d["image_id"] for d in dataset] == [1, 2, 3, 4]
    assert dataset[0]["captions"] == ["A person with a bag."]  # lowest annotation id
    assert dataset[0]["file_name"].endswith("train2017/000000000001.jpg")
    assert load_coco_captions(*write_captions(tmp_path), captions_per_image=0)[0]["captions"] == [
        "A person with a bag.", "A man holding an umbrella."]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO Captions file"):
        load_coco_captions(str(bad), "")


@pytest.mark.slow
def test_mined_records_match_the_model(dataset, model, tmp_path):
    for d in dataset:  # the captions of CAPTIONS, one per image: check all of image 1's nouns too
        d["captions"] = CAPTIONS[d["image_id"]][:1]
    out = tmp_path / "pairs"
    summary = mine(dataset, model, out)
    assert (summary.written, summary.skipped, summary.failed) == (4, 0, [])
    embed = NounEmbeddings(model.text_classifier_builder)
    total = 0
    for d in dataset:
        image = torch.from_numpy(np.asarray(Image.open(d["file_name"]).convert("RGB"))).permute(2, 0, 1)
        props = model.proposals([{"image": image}])[0]
        records = read_image_records(records_path(str(out), d["image_id"]))
        nouns = NOUNS[d["image_id"]]
        assert [r.title for r in records] == nouns  # exclusive=False: one pair per noun
        total += len(records)
        if not nouns:
            continue
        with torch.no_grad():
            feats = F.normalize(model.clip_adapter.encode_regions(props.regions, props.masks.float()), dim=-1)
        sim = embed(nouns) @ feats.t()
        for k, r in enumerate(records):
            j = int((props.query_indices == r.query).nonzero()[0, 0])
            assert j == int(sim[k].argmax())
            assert r.similarity == pytest.approx(float(sim[k, j]), abs=1e-5)
            assert r.caption == d["captions"][0] and r.image_id == d["image_id"]
            assert r.box == props.boxes[j].tolist() and r.score == pytest.approx(float(props.scores[j]))
            crop = np.asarray(Image.open(out / r.filepath))
            mask = np.asarray(Image.open(out / r.mask))
            assert crop.shape == (56, 56, 3) and set(np.unique(mask)) <= {0, 255}
            assert np.array_equal(mask > 0, props.masks[j, 0].numpy())
            assert np.array_equal(crop, apply_release_fill(props.crops[j].permute(1, 2, 0).numpy(), mask > 0))
            assert (crop[mask == 0] == RELEASE_TRAIN_FILL).all()
            assert np.array_equal(mask_from_fill(crop), mask > 0)  # the release's colour rule agrees
    rows = read_pair_index(str(out / "pairs.tsv"))
    assert len(rows) == total == summary.files_in_cache == 7
    header = (out / "pairs.tsv").read_text().splitlines()[0].split("\t")
    assert header[:2] == ["filepath", "title"]
    image, mask = load_pair(rows[0])
    assert image.size == (56, 56) and mask.shape == (56, 56)
    assert np.array_equal(mask, load_pair({**rows[0], "mask": ""})[1])  # colour rule = explicit mask
    info = json.loads((out / "cache_info.json").read_text())
    assert info["format_version"] == 1 and info["matching_rule"]["exclusive"] is False


def test_release_fill_moves_clashing_foreground_pixels():
    crop = np.full((2, 2, 3), 7, np.uint8)
    crop[0, 0] = RELEASE_TRAIN_FILL
    crop[1, 1] = RELEASE_TRAIN_FILL
    mask = np.array([[True, True], [False, False]])
    out = apply_release_fill(crop, mask)
    assert out[0, 0].tolist() == [124, 116, 104] and out[0, 1].tolist() == [7, 7, 7]
    assert (out[1] == RELEASE_TRAIN_FILL).all()
    assert np.array_equal(mask_from_fill(out), mask)


@pytest.mark.slow
def test_resume_shards_and_changed_parameters(dataset, model, tmp_path):
    out = tmp_path / "pairs"
    first = mine(dataset, model, out, max_images=2)
    assert first.written == 2 and not (out / "pairs.tsv").exists()
    done = {d["image_id"]: os.stat(records_path(str(out), d["image_id"])).st_mtime_ns for d in dataset[:2]}
    second = mine(dataset, model, out)
    assert (second.skipped, second.written) == (2, 2) and (out / "pairs.tsv").exists()
    assert all(os.stat(records_path(str(out), i)).st_mtime_ns == t for i, t in done.items())
    with pytest.raises(ValueError, match="other parameters"):
        mine(dataset, model, out, rule=MatchingRule())

    sharded = tmp_path / "sharded"
    a = mine(dataset, model, sharded, num_shards=2, shard_id=1)
    assert a.written == 2 and sorted(os.listdir(sharded / "records")) == ["2.jsonl", "4.jsonl"]
    assert not (sharded / "pairs.tsv").exists()
    b = mine(dataset, model, sharded, num_shards=2, shard_id=0)
    assert b.written == 2 and len(os.listdir(sharded / "records")) == 4
    assert (sharded / "pairs.tsv").read_text() == (out / "pairs.tsv").read_text()


def test_unreadable_image_is_listed(dataset, model, tmp_path):
    with open(dataset[1]["file_name"], "wb") as f:
        f.write(b"not an image")
    out = tmp_path / "pairs"
    summary = mine(dataset, model, out)
    assert [f["image_id"] for f in summary.failed] == ["2"] and summary.written == 3
    assert json.loads((out / "failed_images.shard-0-of-1.json").read_text())[0]["image_id"] == "2"
    assert not (out / "pairs.tsv").exists()


def _tool():
    spec = importlib.util.spec_from_file_location("mine_tool", REPO_ROOT / "tools" / "mine_mask_noun_pairs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_command_line(tmp_path, caplog):
    captions, root = write_captions(tmp_path)
    out = tmp_path / "out"
    tool = _tool()
    args = ["--config-file", CONFIG, "--captions", captions, "--image-root", root, "--output", str(out),
            "--min-similarity", "-1", "--margin", "0", "--device", "cpu"]
    with caplog.at_level("INFO"):
        assert tool.main(args) == 0
    assert "back-end 'vocabulary'" in caplog.text and torch.is_grad_enabled()  # no global side effect
    assert EMPTY_WEIGHTS_WARNING in caplog.text  # no MODEL.WEIGHTS: the OVSeg checkpoint to pass is named
    rows = read_pair_index(str(out / "pairs.tsv"))
    assert 0 < len(rows) <= 7 and {r["title"] for r in rows} <= {n for v in FIRST_CAPTION_NOUNS.values() for n in v}
    (out / "pairs.tsv").unlink()
    assert tool.main(["--config-file", CONFIG, "--captions", captions, "--image-root", root, "--output", str(out),
                      "--index-only"]) == 0
    assert len(read_pair_index(str(out / "pairs.tsv"))) == len(rows)
    assert tool.main(["--config-file", CONFIG, "--captions", str(tmp_path / "none.json"), "--image-root", root,
                      "--output", str(out)]) == 2
