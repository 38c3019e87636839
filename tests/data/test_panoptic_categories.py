"""Thing/stuff split of the panoptic datasets whose split comes from their own json (Mapillary
Vistas, BDD): the json's ``isthing`` flags win over the built-in table, read on first access."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from importlib import import_module as prepare_module
from typing import Callable

import pytest

from frozenseg.data import DatasetCatalog, MetadataCatalog, builtin
from frozenseg.data.builtin import MAPILLARY_THING_IDS, register_all_builtin
from frozenseg.data.synthetic import make_bdd, make_mapillary
from frozenseg.data.vocabulary import builtin_vocabulary_path, read_vocabulary_entries

LOGGER = "frozenseg.data.builtin"


@dataclass(frozen=True)
class Case:
    """A dataset with a json-decided thing/stuff split, and how its json maps to its vocabulary."""

    name: str
    vocab: str
    json: str  # relative to the datasets root
    make: Callable[[str], None]  # writes the dataset (with its panoptic json) under a root
    table_things: frozenset[int]  # vocabulary ids of the built-in table's things
    vocab_id: Callable[[int], int]  # json category id -> vocabulary id
    json_id: Callable[[int], int]  # vocabulary id -> json category id (the metadata's dataset id)


def write_mapillary(root: str) -> None:
    make_mapillary(root, 0, 1, 2)


def write_bdd(root: str) -> None:
    make_bdd(root, 0, 1, 2)
    prepare_module("prepare_bdd_panoptic").convert(root)  # bitmasks -> panoptic json and PNGs


MV = Case("openvocab_mapillary_vistas_panoptic_val", "mapillary_vistas.txt",
          "mapillary_vistas/validation/panoptic/panoptic_2018.json", write_mapillary,
          frozenset(MAPILLARY_THING_IDS), lambda i: i - 1, lambda i: i + 1)
BDD = Case("bdd10k_40_panoptic_val", "bdd_panoptic.txt", "bdd100k/labels/pan_seg/panoptic_val.json",
           write_bdd, frozenset(range(31, 41)), lambda i: i, lambda i: i)


@pytest.fixture
def register():
    """``register_all_builtin``; the registration in place before the test is restored after it."""
    previous = builtin._REGISTERED_ROOT.get(MV.name)
    yield register_all_builtin
    register_all_builtin(previous)


def vocab_entries(case: Case) -> list[tuple[int, list[str]]]:
    return read_vocabulary_entries(builtin_vocabulary_path(case.vocab))


def expected_things(case: Case, things: set[int] | frozenset[int],
                    with_json: bool = True) -> tuple[list[str], dict[int, int]]:
    """``thing_classes`` and ``thing_dataset_id_to_contiguous_id`` for the thing vocabulary ids
    ``things``; the dataset ids are the json's category ids when the json exists, else the
    vocabulary's."""
    entries = vocab_entries(case)
    dataset_id = case.json_id if with_json else (lambda i: i)
    names = [n[0] for i, n in entries if i in things]
    mapping = {dataset_id(i): k for k, (i, _) in enumerate(entries) if i in things}
    return names, mapping


def edit_json(root: str, case: Case, edit: Callable[[dict], None]) -> dict:
    path = os.path.join(root, case.json)
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return data


def used_categories(data: dict) -> set[int]:
    return {s["category_id"] for a in data["annotations"] for s in a["segments_info"]}


def flip_two(data: dict) -> tuple[dict, dict]:
    """Flip a used thing category to stuff and a used stuff category to thing; returns them."""
    used = used_categories(data)
    cats = sorted((c for c in data["categories"] if c["id"] in used), key=lambda c: c["id"])
    thing = next(c for c in cats if c["isthing"])
    stuff = next(c for c in cats if not c["isthing"])
    thing["isthing"], stuff["isthing"] = 0, 1
    return thing, stuff


def builtin_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.mark.parametrize("case", [MV, BDD], ids=["mapillary", "bdd"])
def test_json_isthing_overrides_table(tmp_path, register, caplog, case):
    root = str(tmp_path)
    case.make(root)
    flipped: list[dict] = []
    edit_json(root, case, lambda d: flipped.extend(flip_two(d)))
    to_stuff, to_thing = case.vocab_id(flipped[0]["id"]), case.vocab_id(flipped[1]["id"])
    assert to_stuff in case.table_things and to_thing not in case.table_things
    register(root)
    meta = MetadataCatalog.get(case.name)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        things = meta.thing_dataset_id_to_contiguous_id
    want = set(case.table_things - {to_stuff}) | {to_thing}
    names, mapping = expected_things(case, want)
    assert things == mapping and meta.thing_classes == names
    assert case.json_id(to_stuff) not in things and case.json_id(to_thing) in things
    stuff_map = meta.stuff_dataset_id_to_contiguous_id
    assert meta.thing_colors == [meta.stuff_colors[stuff_map[i]] for i in mapping]
    info = builtin_records(caplog, logging.INFO)
    assert len(info) == 1
    entries = dict(vocab_entries(case))
    msg = info[0].getMessage()
    assert f"{entries[to_stuff][0]!r} (stuff)" in msg and f"{entries[to_thing][0]!r} (thing)" in msg
    assert not builtin_records(caplog, logging.WARNING)

    dicts = DatasetCatalog.get(case.name)
    segs = [s for d in dicts for s in d["segments_info"]]
    contiguous_things = set(mapping.values())
    assert all(s["isthing"] == (s["category_id"] in contiguous_things) for s in segs)
    assert any(s["category_id"] == stuff_map[case.json_id(to_stuff)] and not s["isthing"] for s in segs)
    assert any(s["category_id"] == stuff_map[case.json_id(to_thing)] and s["isthing"] for s in segs)


@pytest.mark.parametrize("case", [MV, BDD], ids=["mapillary", "bdd"])
def test_without_json_metadata_is_the_table(tmp_path, register, caplog, case):
    register(str(tmp_path))
    meta = MetadataCatalog.get(case.name)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        names, mapping = expected_things(case, case.table_things, with_json=False)
        assert meta.thing_dataset_id_to_contiguous_id == mapping and meta.thing_classes == names
    assert len(mapping) == len(case.table_things) > 0
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert os.path.join(str(tmp_path), case.json) in records[0].getMessage()


def test_json_without_isthing_uses_table(tmp_path, register):
    root = str(tmp_path)
    MV.make(root)

    def drop_flags(data: dict) -> None:  # only "bird" (json id 1, a thing) keeps a flag: stuff
        for c in data["categories"]:
            del c["isthing"]
            if c["id"] == 1:
                c["isthing"] = 0

    edit_json(root, MV, drop_flags)
    register(root)
    names, mapping = expected_things(MV, MV.table_things - {0})
    assert MetadataCatalog.get(MV.name).thing_dataset_id_to_contiguous_id == mapping
    assert MetadataCatalog.get(MV.name).thing_classes == names


def test_category_name_mismatch_warns_and_loads(tmp_path, register, caplog):
    root = str(tmp_path)
    MV.make(root)
    renamed = {1: "Zebra", 2: "Ground-Animal", 9: "Crosswalk - Plain", 50: "Traffic Sign (Back)",
               25: "Lane_Marking - General", 3: "Curb (Cut)", 4: "Fences", 5: "X1", 6: "X2", 7: "X3",
               8: "X4", 10: "X5"}

    def rename(data: dict) -> None:
        for c in data["categories"]:
            c["name"] = renamed.get(c["id"], c["name"])

    edit_json(root, MV, rename)
    register(root)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        meta = MetadataCatalog.get(MV.name)
        assert meta.thing_classes == expected_things(MV, MV.table_things)[0]
        assert len(DatasetCatalog.get(MV.name)) == 2
    warnings = builtin_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    # "Ground-Animal", "Crosswalk - Plain", "Traffic Sign (Back)", "Lane_Marking - General" and
    # "Fences" match their classes; "Zebra", "Curb (Cut)" (mapped to "curb") and X1..X5 do not
    assert msg.startswith(f"{MV.name}: 7 categories of ") and "vocabulary order" in msg
    assert "1 'Zebra' -> 0 'bird'" in msg and "3 'Curb (Cut)' -> 2 'curb'" in msg
    assert "'X1'" in msg and "'X2'" in msg and "'X3'" in msg and "'X4'" not in msg
    assert msg.endswith(" and 2 more")
    for ok in ("Ground-Animal", "Crosswalk", "Traffic Sign", "Lane_Marking", "Fences"):
        assert ok not in msg
    assert not builtin_records(caplog, logging.INFO)


def test_registration_does_not_read_the_json(tmp_path, register):
    root = str(tmp_path)
    register(root)  # nothing under root yet
    meta = MetadataCatalog.get(MV.name)
    assert "thing_classes" not in meta.as_dict()  # class metadata not computed yet
    MV.make(root)
    flipped: list[dict] = []
    edit_json(root, MV, lambda d: flipped.extend(flip_two(d)))
    want = set(MV.table_things - {MV.vocab_id(flipped[0]["id"])}) | {MV.vocab_id(flipped[1]["id"])}
    names, mapping = expected_things(MV, want)
    assert meta.thing_dataset_id_to_contiguous_id == mapping and meta.thing_classes == names
