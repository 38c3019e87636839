"""The Python snippets of README.md and docs/python_api.md run as written, with the tiny model in
place of the released files they name: a config under ``configs/`` becomes
``configs/tiny/frozenseg_tiny_convnext.yaml``, a ``.pth`` file a checkpoint of that tiny model, an
image file a small RGB image, and ``"cuda"`` ``"cpu"``. A name the snippet uses without defining
it, or an output key the model does not give, fails the test. Also: no block of lines repeats
within a page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAGES = ("README.md", "docs/python_api.md")
TINY_CONFIG = "configs/tiny/frozenseg_tiny_convnext.yaml"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_CONFIG = re.compile(r"""(["'])configs/[\w/.-]+\.yaml\1""")
_WEIGHTS = re.compile(r"""(["'])[\w/.-]+\.pth\1""")
_IMAGE = re.compile(r"""(["'])[\w/.-]+\.(?:jpg|jpeg|png)\1""")
_SAM_KEY = re.compile(r"""(["']MODEL\.SAM_CHECKPOINT["'],\s*)(["'])[^"']*\2""")


def python_snippets() -> list[tuple[str, int, str]]:
    """``(page, index, code)`` of every ```python block of :data:`PAGES`."""
    out = []
    for page in PAGES:
        text = (REPO_ROOT / page).read_text(encoding="utf-8")
        out += [(page, i, m.group(1)) for i, m in enumerate(_BLOCK.finditer(text))]
    return out


SNIPPETS = python_snippets()


def test_the_pages_have_python_snippets():
    assert SNIPPETS, f"no ```python block in {PAGES}"


def tiny_version(code: str, checkpoint: Path, image: Path) -> str:
    """``code`` with the released files replaced by the tiny model's (module doc)."""
    code = _SAM_KEY.sub(r'\1""', code)  # the tiny SAM has no weights file
    code = _CONFIG.sub(repr(TINY_CONFIG), code)
    code = _WEIGHTS.sub(repr(str(checkpoint)), code)
    code = _IMAGE.sub(repr(str(image)), code)
    return code.replace('"cuda"', '"cpu"')


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint of the tiny FrozenSeg and a 48 x 64 RGB image."""
    import frozenseg

    root = tmp_path_factory.mktemp("snippet")
    cfg = frozenseg.get_cfg()
    cfg.merge_from_file(str(REPO_ROOT / TINY_CONFIG))
    torch.manual_seed(0)
    model = frozenseg.build_model(cfg)
    torch.save({"model": model.state_dict()}, root / "tiny.pth")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "photo.png")
    return root / "tiny.pth", root / "photo.png"


@pytest.mark.parametrize("page, index, code", SNIPPETS, ids=[f"{p}[{i}]" for p, i, _ in SNIPPETS])
def test_snippet_runs_with_the_tiny_model(page, index, code, tiny_files, monkeypatch):
    checkpoint, image = tiny_files
    tiny = tiny_version(code, checkpoint, image)
    if "configs/" in code:
        assert TINY_CONFIG in tiny and "configs/coco" not in tiny, tiny
    monkeypatch.chdir(REPO_ROOT)  # the snippets name configs relative to the checkout
    namespace: dict = {"__name__": f"snippet_{index}"}
    exec(compile(tiny, f"{page}[python block {index}]", "exec"), namespace)  # noqa: S102


def test_tiny_version_replaces_the_released_files():
    code = ('cfg.merge_from_file("configs/coco/frozenseg/convnext_large_eval_ade20k.yaml")\n'
            'cfg.merge_from_list(["MODEL.DEVICE", "cuda", "MODEL.SAM_CHECKPOINT", "pretrained_checkpoint/sam.pth"])\n'
            'load(model, "frozenseg_convnext_large.pth"); read_image("photo.jpg")\n')
    assert tiny_version(code, Path("/c/t.pth"), Path("/i/p.png")) == (
        f'cfg.merge_from_file({TINY_CONFIG!r})\n'
        'cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SAM_CHECKPOINT", ""])\n'
        "load(model, '/c/t.pth'); read_image('/i/p.png')\n")


def repeated_blocks(lines: list[str], size: int) -> list[tuple[int, int]]:
    """``(first, second)`` 1-based line numbers of each window of ``size`` lines (with at least
    one non-blank line) that occurs twice."""
    seen: dict[tuple[str, ...], int] = {}
    found = []
    for i in range(len(lines) - size + 1):
        window = tuple(line.rstrip() for line in lines[i:i + size])
        if sum(bool(line.strip()) for line in window) < size // 2:
            continue
        if window in seen:
            found.append((seen[window] + 1, i + 1))
        else:
            seen[window] = i
    return found


@pytest.mark.parametrize("page", sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").rglob("*.md")))
def test_no_block_of_lines_repeats_within_a_page(page):
    lines = (REPO_ROOT / page).read_text(encoding="utf-8").splitlines()
    assert not repeated_blocks(lines, 6), f"{page}: repeated lines {repeated_blocks(lines, 6)[:3]}"
