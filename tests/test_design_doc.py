"""DESIGN.md describes the code that exists: every module and folder its
package map names, and every backticked `module.name` it cites, is there."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hific_diffusion"


def _layout_block() -> str:
    text = (ROOT / "DESIGN.md").read_text()
    start = text.index("## Layout")
    a = text.index("```", start)
    return text[a + 3 : text.index("```", a + 3)]


def test_every_file_and_folder_in_the_package_map_exists():
    block = _layout_block()
    names = set(re.findall(r"[\w/]+\.py|\b[a-z_]+/", block))
    assert len(names) > 20  # the map is really parsed
    missing = []
    for name in names:
        candidates = [PKG / name, ROOT / name] + [d / name for d in ROOT.glob("*/*/")]
        candidates += [d / name for d in ROOT.glob("*/")]
        if not any(c.exists() for c in candidates):
            missing.append(name)
    assert not missing, missing


def test_every_package_module_is_on_the_map_or_in_its_subpackage():
    block = _layout_block()
    top = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert [n for n in top if n not in block] == []
    subs = sorted(p.name + "/" for p in PKG.iterdir() if (p / "__init__.py").is_file())
    assert [s for s in subs if s not in block] == []


def test_cited_module_attributes_exist():
    """`valid.BUCKET_SIDES`, `bitstream.real_bpp`, ... in the prose."""
    text = (ROOT / "DESIGN.md").read_text()
    modules = {}
    for p in PKG.rglob("*.py"):
        dotted = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        modules.setdefault(p.stem, []).append(dotted)
    checked = 0
    for mod, attr in set(re.findall(r"`(\w+)\.(\w+)`", text)):
        if mod not in modules or attr == "py":
            continue
        found = [hasattr(importlib.import_module(d), attr) for d in modules[mod]]
        assert any(found), f"DESIGN.md cites {mod}.{attr}, which does not exist"
        checked += 1
    assert checked >= 5
