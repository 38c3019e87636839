"""The default vocabulary (no --vocabulary, no file, no dataset): COCO panoptic + ADE20K-150, and
LVIS only when its annotation json is present under ``$DETECTRON2_DATASETS`` (docs/demo.md,
Options: *(none of the three)*)."""

from __future__ import annotations

import pytest

from frozenseg.data import builtin, register_all_builtin
from frozenseg.data.vocabulary_sources import default_vocabulary, default_vocabulary_lvis_json, load_vocabulary


@pytest.fixture
def datasets_dir(tmp_path, monkeypatch):
    """A fresh ``$DETECTRON2_DATASETS`` with the built-in datasets registered under it; the
    previous registration is restored afterwards."""
    previous = builtin._REGISTERED_ROOT.get("openvocab_lvis_v1_val")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    register_all_builtin()
    yield tmp_path
    register_all_builtin(previous)


def _firsts(v):
    return [n.split(",")[0].lower() for n in v.class_names]


def test_without_the_lvis_json_the_default_is_coco_and_ade20k(datasets_dir):
    assert default_vocabulary_lvis_json() == str(datasets_dir / "lvis" / "lvis_v1_val.json")
    (datasets_dir / "lvis").mkdir()  # the folder alone is not enough
    v = load_vocabulary()
    assert len(v) == 227 and v.class_names == default_vocabulary(include_lvis=False).class_names
    assert "openvocab_lvis_v1_val" not in v.source.split("(LVIS")[0]
    assert f"no {datasets_dir / 'lvis' / 'lvis_v1_val.json'}" in v.source  # says why
    firsts = _firsts(v)
    assert firsts[0] == "person" and "sky" in firsts and "aerosol_can" not in firsts


def test_with_the_lvis_json_lvis_joins(datasets_dir):
    (datasets_dir / "lvis").mkdir()
    (datasets_dir / "lvis" / "lvis_v1_val.json").write_text("{}")  # present; not read
    v = load_vocabulary()
    assert len(v) == 227 + 1105  # the LVIS classes whose names COCO / ADE20K lack
    assert v.source.endswith("openvocab_lvis_v1_val (+1105)")
    firsts = _firsts(v)
    assert firsts[:227] == _firsts(default_vocabulary(include_lvis=False))  # the same order first
    assert "aerosol_can" in firsts and len(firsts) == len(set(firsts))
    assert len(default_vocabulary(include_lvis=False)) == 227  # still opt-out
