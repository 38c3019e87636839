"""OVSeg's own benchmark class strings: the two shipped lists (exact values), the converter that
copies the others from an ov-seg checkout (without importing it), and the benchmark names that
use them over the openvocab_* files."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from frozenseg.data import DatasetCatalog, MetadataCatalog, dataset_vocabulary, register_all_builtin
from frozenseg.data import builtin
from frozenseg.data.builtin import OVSEG_BENCHMARKS, _SPECS
from frozenseg.data.ovseg_classes import OVSEG_VOCABULARIES, _SHIPPED_FILE, ovseg_classes
from frozenseg.data.prepare.common import InputError
from frozenseg.data.prepare.ovseg import class_lists_in_source, convert

from .conftest import VOC20, write_fake_ovseg_repo

REPO_ROOT = Path(__file__).resolve().parents[2]

#: SHA-256 recorded in frozenseg/data/vocabularies/README.md
SHIPPED_SHA256 = "5a85c054faa2b94dbade0b75ce5f8ef4515736a38627995101c535fc0e7e0a38"


def test_shipped_lists_are_detectron2s_verbatim():
    with open(_SHIPPED_FILE, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == SHIPPED_SHA256
    assert SHIPPED_SHA256 in (REPO_ROOT / "frozenseg/data/vocabularies/README.md").read_text()
    ade = ovseg_classes("ade20k_sem_seg", "/nonexistent")
    assert len(ade) == 150 and ade[:3] == ["wall", "building", "sky"]
    assert ade[6] == "road, route" and ade[8] == "window "  # verbatim: comma list, trailing space
    assert ade[116] == "minibike, motorbike" and ade[-1] == "flag"
    assert ovseg_classes("pascalvoc20_sem_seg", "/nonexistent") == VOC20


def test_benchmark_names_use_the_twin_files_and_ignore_labels():
    assert [n for n, _, _ in OVSEG_BENCHMARKS] == [
        "ade20k_sem_seg_val", "ade20k_full_sem_seg_val", "pascal_context_59_sem_seg_val",
        "pascal_context_459_sem_seg_val", "pascalvoc20_sem_seg_val", "ovseg_coco_2017_train_stuff_sem_seg",
    ]
    for name, _, twin in OVSEG_BENCHMARKS:
        assert name in DatasetCatalog
        assert _SPECS[name].paths == _SPECS[twin].paths
        assert MetadataCatalog.get(name).ignore_label == MetadataCatalog.get(twin).ignore_label
    assert MetadataCatalog.get("ade20k_full_sem_seg_val").ignore_label == 65535
    assert dataset_vocabulary("ade20k_sem_seg_val")[8] == "window "
    assert dataset_vocabulary("pascalvoc20_sem_seg_val") == VOC20


@pytest.fixture
def register_under():
    """Register the built-in datasets under another root; afterwards restore the root that was
    registered before (the data tests' session root, or the default)."""
    before = builtin._REGISTERED_ROOT.get("ade20k_sem_seg_val")
    yield register_all_builtin
    register_all_builtin(before)


def test_missing_prepared_list_names_the_command(tmp_path, register_under):
    register_under(str(tmp_path))
    with pytest.raises(ValueError, match="prepare_ovseg_vocabularies.py --ovseg-repo"):
        dataset_vocabulary("pascal_context_459_sem_seg_val")


def test_convert_copies_the_lists_verbatim_and_registers_them(tmp_path, caplog, register_under):
    repo = write_fake_ovseg_repo(tmp_path / "ov-seg", voc=VOC20[:-1] + ["tv"])
    root = tmp_path / "ds"
    with caplog.at_level(logging.WARNING, logger="frozenseg.data.prepare"):
        written = convert(str(root), str(repo))
    assert len(written) == 4
    assert "differs from the shipped pascalvoc20_sem_seg list" in caplog.text
    data = json.loads((root / "ovseg_vocabularies" / "pascal_context_459_sem_seg.json").read_text())
    assert data["source"].endswith("register_pascal_context.py:PASCALCONTEX459_NAMES")
    register_under(str(root))
    assert dataset_vocabulary("pascal_context_459_sem_seg_val")[3] == "c459 3 "  # verbatim
    assert dataset_vocabulary("ade20k_full_sem_seg_val")[846] == "thing 846, alias"
    assert dataset_vocabulary("pascal_context_59_sem_seg_val")[0] == "c59_0"
    assert dataset_vocabulary("pascalvoc20_sem_seg_val") == VOC20  # the shipped list wins
    assert ovseg_classes("coco_2017_stuff_sem_seg", str(root))[170] == "stuff-170"


def test_convert_refuses_ambiguous_or_missing_lists(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        convert(str(tmp_path / "ds"), str(tmp_path / "nothing"))
    repo = write_fake_ovseg_repo(tmp_path / "ov-seg")
    ctx = repo / "open_vocab_seg/data/datasets/register_pascal_context.py"
    ctx.write_text(ctx.read_text() + f"COPY = {tuple(str(i) for i in range(59))!r}\n")
    with pytest.raises(InputError, match="exactly one list of 59 class names; found 2"):
        convert(str(tmp_path / "ds"), str(repo))


def test_class_lists_in_source_reads_literals_only():
    src = "A = ['x', 'y']\nB: tuple = ({'name': 'p'}, {'name': 'q'})\nC = f(1)\nD = [1, 2]\nE = []\n"
    assert class_lists_in_source(src) == {"A": ["x", "y"], "B": ["p", "q"]}


@pytest.mark.slow
def test_command_line_from_another_directory(tmp_path):
    repo = write_fake_ovseg_repo(tmp_path / "ov-seg")
    script = REPO_ROOT / "datasets" / "prepare_ovseg_vocabularies.py"
    ok = subprocess.run([sys.executable, str(script), "--root", "ds", "--ovseg-repo", str(repo)],
                        cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "ds" / "ovseg_vocabularies").glob("*.json"))) == 4
    bad = subprocess.run([sys.executable, str(script), "--root", "ds", "--ovseg-repo", "missing"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "--ovseg-repo" in bad.stderr


def test_every_ovseg_key_has_a_count():
    assert {k: n for k, (n, _) in OVSEG_VOCABULARIES.items()} == {
        "ade20k_sem_seg": 150, "pascalvoc20_sem_seg": 20, "ade20k_full_sem_seg": 847,
        "pascal_context_59_sem_seg": 59, "pascal_context_459_sem_seg": 459, "coco_2017_stuff_sem_seg": 171,
    }
