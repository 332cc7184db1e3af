"""The photo corpus command on two tiny real .deb packages (no network) and the shipped manifest."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_diffusion.data import offline_photos, photo_corpus, sources

ROOT = Path(__file__).resolve().parents[2]
MAX_SIDE = 64
pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _jpeg(img: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _halves(size, left, right, mode="RGB"):
    """Left half ``left``, right half ``right``: shows where a rotation put them."""
    img = Image.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


# package -> version, {path inside the package: (bytes, split, id)}
PHOTOS = {
    "hfd-test-a": (
        "1.0-1",
        {
            "/usr/share/hfd-test/big.jpg": (_jpeg(_halves((200, 100), "red", "blue")), "train"),
            # stored 40 wide x 20 high, red left; orientation 6 = rotate 90 clockwise to view,
            # so the viewed photo is 20 x 40 with red on top
            "/usr/share/hfd-test/rot.jpg": (_jpeg(_halves((40, 20), "red", "blue"), 6), "heldout"),
        },
    ),
    "hfd-test-b": (
        "2.0",
        {
            "/usr/share/hfd-test/alpha.png": (
                _png(_halves((30, 20), (0, 0, 0, 0), (0, 128, 0, 255), "RGBA")),
                "train",
            ),
            "/usr/share/hfd-test/small.png": (_png(_halves((50, 10), "green", "blue")), "heldout"),
        },
    ),
}
IDS = {
    "/usr/share/hfd-test/big.jpg": "a-big",
    "/usr/share/hfd-test/rot.jpg": "a-rot",
    "/usr/share/hfd-test/alpha.png": "b-alpha",
    "/usr/share/hfd-test/small.png": "b-small",
}


def _build_deb(tmp: Path, name: str, version: str, files: dict) -> Path:
    root = tmp / f"root-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test photos\n"
    )
    for path, (data, _) in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    deb = tmp / "debs" / f"{name}_{version}_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("debs")
    for name, (version, files) in PHOTOS.items():
        _build_deb(tmp, name, version, files)
    return tmp / "debs"


def _manifest(tmp: Path, **changes) -> Path:
    """A manifest for the test packages plus one offline photo; ``changes``: id -> field updates."""
    files = [
        {
            "id": IDS[p],
            "split": split,
            "package": name,
            "path": p,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        for name, (_, photos) in PHOTOS.items()
        for p, (data, split) in photos.items()
    ]
    astronaut = np.ascontiguousarray(offline_photos.photo("astronaut")).tobytes()
    files.append(
        {
            "id": "sk-astronaut",
            "split": "train",
            "package": "scikit-image",
            "path": "astronaut",
            "sha256": hashlib.sha256(astronaut).hexdigest(),
            "licence": "public domain",
        }
    )
    for f in files:
        f.update(changes.get(f["id"], {}))
    manifest = {
        "packages": {
            "hfd-test-a": {"version": "1.0-1", "licence": "CC0-1.0"},
            "hfd-test-b": {"version": "2.0", "licence": "GPL-2+"},
            "scikit-image": {"version": "any", "source": "offline_photos", "licence": "mixed"},
        },
        "heldout": [f["id"] for f in files if f["split"] == "heldout"],
        "files": files,
    }
    path = tmp / f"manifest-{len(list(tmp.glob('manifest-*')))}.json"
    path.write_text(json.dumps(manifest))
    return path


def _run(*args, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "hific_diffusion.data.photo_corpus", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def _one_error_line(r) -> str:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def test_build_from_debs_then_rerun_is_a_noop(tmp_path, debs):
    out, man = tmp_path / "corpus", _manifest(tmp_path)
    r = _run("--out", out, "--debs", debs, "--manifest", man, "--max-side", MAX_SIDE)
    assert r.returncode == 0, r.stderr
    assert "wrote 3 train and 2 held-out" in r.stdout

    splits = {
        p.parent.name: sorted(q.stem for q in p.parent.glob("*.png")) for p in out.glob("*/*.png")
    }
    assert splits == {
        "train": ["a-big", "b-alpha", "sk-astronaut"],
        "heldout": ["a-rot", "b-small"],
    }
    big, rot = _rgb(out / "train/a-big.png"), _rgb(out / "heldout/a-rot.png")
    alpha, small = _rgb(out / "train/b-alpha.png"), _rgb(out / "heldout/b-small.png")
    assert big.shape == (32, 64, 3)  # 200x100 -> longer side 64, aspect kept
    assert _rgb(out / "train/sk-astronaut.png").shape == (64, 64, 3)
    assert small.shape == (10, 50, 3)  # smaller than max-side: never upscaled
    assert rot.shape == (40, 20, 3)  # EXIF orientation 6 applied: portrait
    assert rot[5, 10, 0] > 200 and rot[5, 10, 2] < 60  # red on top
    assert rot[35, 10, 2] > 200 and rot[35, 10, 0] < 60  # blue at the bottom
    np.testing.assert_array_equal(alpha[10, 5], [255, 255, 255])  # transparent -> white
    np.testing.assert_array_equal(alpha[10, 25], [0, 128, 0])

    done = json.loads((out / "manifest.json").read_text())
    assert done["counts"] == {"train": 3, "heldout": 2} and done["max_side"] == MAX_SIDE
    assert "--debs" in done["command"] and done["date"]
    rec = {p["id"]: p for p in done["photos"]}
    assert rec["a-big"]["original_size"] == [200, 100] and rec["a-big"]["output_size"] == [64, 32]
    assert rec["a-big"]["version"] == "1.0-1" and rec["a-big"]["licence"] == "CC0-1.0"
    assert (
        rec["b-small"]["licence"] == "GPL-2+" and rec["sk-astronaut"]["licence"] == "public domain"
    )
    for p in done["photos"]:
        assert hashlib.sha256((out / p["file"]).read_bytes()).hexdigest() == p["output_sha256"]
    assert len(sources.FolderSource(str(out / "train"))) == 3  # the training folder source

    before = (out / "manifest.json").stat().st_mtime_ns
    again = _run("--out", out, "--debs", debs, "--manifest", man, "--max-side", MAX_SIDE)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr
    assert (out / "manifest.json").stat().st_mtime_ns == before


def test_a_changed_split_never_leaves_the_photo_in_train(tmp_path, debs):
    out = tmp_path / "corpus"
    assert _run("--out", out, "--debs", debs, "--manifest", _manifest(tmp_path)).returncode == 0
    moved = _manifest(tmp_path, **{"a-big": {"split": "heldout"}})
    r = _run("--out", out, "--debs", debs, "--manifest", moved)
    assert r.returncode == 0, r.stderr
    assert not (out / "train/a-big.png").exists() and (out / "heldout/a-big.png").exists()


def test_sha256_mismatch_is_one_line_exit_2_unless_allowed(tmp_path, debs):
    out, man = tmp_path / "corpus", _manifest(tmp_path, **{"b-small": {"sha256": "0" * 64}})
    line = _one_error_line(_run("--out", out, "--debs", debs, "--manifest", man))
    assert "/usr/share/hfd-test/small.png" in line and "hfd-test-b" in line and "sha256" in line
    assert not (out / "manifest.json").exists()

    r = _run("--out", out, "--debs", debs, "--manifest", man, "--allow-changed")
    assert r.returncode == 0 and "warning:" in r.stderr, r.stderr
    rec = {p["id"]: p for p in json.loads((out / "manifest.json").read_text())["photos"]}
    assert rec["b-small"]["manifest_sha256"] == "0" * 64
    assert (
        rec["b-small"]["sha256"]
        == hashlib.sha256(PHOTOS["hfd-test-b"][1]["/usr/share/hfd-test/small.png"][0]).hexdigest()
    )


def test_missing_debs_and_apt_failures_are_clean_errors(tmp_path, debs):
    man, empty = _manifest(tmp_path), tmp_path / "empty"
    empty.mkdir()
    assert "no hfd-test-a_*.deb" in _one_error_line(
        _run("--out", tmp_path / "o1", "--debs", empty, "--manifest", man)
    )
    assert "not a directory" in _one_error_line(
        _run("--out", tmp_path / "o2", "--debs", tmp_path / "nope", "--manifest", man)
    )

    # apt-get stand-ins: one offline, one that "downloads" from the test debs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(
        "#!/bin/sh\necho 'E: Failed to fetch http://deb.debian.org/ Temporary failure resolving'"
        " >&2\nexit 100\n"
    )
    apt.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    line = _one_error_line(_run("--out", tmp_path / "o3", "--manifest", man, env=env))
    assert "apt-get download hfd-test-a failed" in line and "Temporary failure resolving" in line

    apt.write_text(f'#!/bin/sh\n[ "$1" = download ] && cp {debs}/"$2"_*.deb .\n')
    r = _run("--out", tmp_path / "o4", "--manifest", man, env=env)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "o4").glob("*/*.png"))) == 5


def test_a_packaged_file_that_is_not_an_image_is_one_line_exit_2(tmp_path):
    data = b"not an image"
    _build_deb(tmp_path, "hfd-test-c", "1", {"/usr/share/hfd-test/notes.png": (data, "train")})
    man = tmp_path / "manifest.json"
    photo = {"id": "c-notes", "split": "train", "package": "hfd-test-c"}
    photo.update(path="/usr/share/hfd-test/notes.png", sha256=hashlib.sha256(data).hexdigest())
    pkgs = {"hfd-test-c": {"version": "1", "licence": "CC0-1.0"}}
    man.write_text(json.dumps({"packages": pkgs, "heldout": [], "files": [photo]}))
    line = _one_error_line(
        _run("--out", tmp_path / "o", "--debs", tmp_path / "debs", "--manifest", man)
    )
    assert "notes.png in hfd-test-c 1 is not a readable image" in line


def test_shipped_manifest_is_well_formed():
    m = photo_corpus.load_manifest()  # also runs check_manifest
    files = m["files"]
    ids = [f["id"] for f in files]
    assert len(files) >= 50 and len(set(ids)) == len(ids)
    heldout = set(m["heldout"])
    train = {f["id"] for f in files if f["split"] == "train"}
    assert heldout <= set(ids) and not heldout & train and heldout | train == set(ids)
    assert len(heldout) >= 12 and len(train) >= 45
    for name, pkg in m["packages"].items():
        assert pkg["licence"].strip() and pkg["version"].strip(), name
    for f in files:
        assert len(f["sha256"]) == 64 and int(f["sha256"], 16) >= 0
    # the offline photos keep the split offline_photos gives them
    for f in files:
        if m["packages"][f["package"]].get("source") == "offline_photos":
            assert f["path"] in offline_photos.SPLITS[f["split"]], f["id"]
    assert len({(f["package"], f["path"]) for f in files}) == len(files)
