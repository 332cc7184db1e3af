"""The error rule (hific_diffusion/errors.py): every exception class the package
defines is a user error (HfdError), and every entry point reports a user error
as one ``error:`` line with exit status 2, never a traceback."""

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import hific_diffusion
from hific_diffusion.errors import HfdError

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def _is_entry_point(name: str) -> bool:
    """Modules that define absl flags: two of them cannot share one process."""
    return "DEFINE_" in Path(importlib.util.find_spec(name).origin).read_text()


def error_classes(name: str) -> dict[str, bool]:
    """Exception classes (not warnings) defined in ``name`` -> whether each is an HfdError."""
    module = importlib.import_module(name)
    return {
        f"{name}.{c.__name__}": issubclass(c, HfdError)
        for c in vars(module).values()
        if inspect.isclass(c)
        and c.__module__ == name
        and issubclass(c, BaseException)
        and not issubclass(c, Warning)
    }


def test_every_exception_class_in_the_package_is_a_user_error():
    found = {}
    for m in pkgutil.walk_packages(hific_diffusion.__path__, "hific_diffusion."):
        if not _is_entry_point(m.name):
            found.update(error_classes(m.name))
            continue
        # In a fresh process (absl flags are global); this file is importable there.
        code = f"import json, test_errors as t; print(json.dumps(t.error_classes({m.name!r})))"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, timeout=300,
            env=dict(ENV, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}"),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        found.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "hific_diffusion.export.ExportError" in found  # entry points are walked too
    assert len(found) >= 29, sorted(found)  # the walk saw the package's error classes
    assert not [k for k, ok in found.items() if not ok], "not HfdError subclasses"


def test_user_errors_keep_their_builtin_base():
    from hific_diffusion.coding.bitstream import BitstreamError
    from hific_diffusion.train.trainer import TrainingError

    assert issubclass(BitstreamError, ValueError) and issubclass(TrainingError, RuntimeError)


def _run(module, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True, text=True, env=ENV, cwd=cwd or ROOT, timeout=600,
    )  # fmt: skip


def assert_one_error_line(proc, fragment):
    """Exit 2, no traceback, one ``error:`` line; other lines may only be warnings."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    assert all(ln.startswith("warning: ") for ln in lines if ln not in errors), proc.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        # bad flags and configs: absl / ml_collections errors, made one line
        (["--config=tiny", "--config.train.steps=abc"], "--config.train.steps=abc"),
        (["--config=tiny", "--config.eval.decoderz=1"], "no config field 'decoderz'"),
        (["--config=tiny", "--nosuchflag"], "nosuchflag"),
        (["--config=tiny", "extra"], "unexpected arguments"),
        (["--config=tiny", "--bundle={tmp}", "--workdir={tmp}"], "not both"),
        # missing inputs
        (["--config=tiny", "--bundle={tmp}/no_bundle"], "no model bundle"),
        (["--config=tiny", "--workdir={tmp}"], "not a training workdir"),
        (["--config=kodak", "--data_dir={tmp}/no_data"], "no directory"),
    ],
)
def test_eval_user_errors_are_one_line_exit_2(tmp_path, args, fragment):
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_error_line(_run("hific_diffusion.eval", *args, f"--out={tmp_path}/out"), fragment)


def test_eval_config_file_errors_are_one_line_exit_2(tmp_path):
    proc = _run("hific_diffusion.eval", f"--config={tmp_path}/nope.py", f"--out={tmp_path}/o")
    assert_one_error_line(proc, "config file not found")
    rejecting = tmp_path / "rejecting.py"
    rejecting.write_text(
        "from hific_diffusion.configs import ConfigError\n"
        "def get_config(arg=''):\n    raise ConfigError(f'unknown rate {arg}')\n"
    )
    proc = _run("hific_diffusion.eval", f"--config={rejecting}:0.33", f"--out={tmp_path}/o")
    assert_one_error_line(proc, "unknown rate 0.33")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--config=tiny", "--workdir={tmp}/w", "--config.train.steps=abc"], "steps=abc"),
        (["--config=tiny", "--workdir={tmp}/w", "--config.train.nosuch=1"], "'nosuch'"),
        (["--config=tiny"], "--workdir"),
        (["--config=tiny", "--workdir={tmp}/file/w"], "{tmp}/file"),  # OSError: not a directory
    ],
)
def test_train_user_errors_are_one_line_exit_2(tmp_path, args, fragment):
    (tmp_path / "file").write_text("")
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_error_line(_run("hific_diffusion.train", *args), fragment.format(tmp=tmp_path))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--workdir={tmp}", "--out={tmp}/b", "--which=bad"], "--which=bad"),
        (["--workdir={tmp}", "--out={tmp}/b"], "not a training workdir"),
        (["--workdir={tmp}", "--out={tmp}/b", "extra"], "unexpected arguments"),
    ],
)
def test_export_user_errors_are_one_line_exit_2(tmp_path, args, fragment):
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_error_line(_run("hific_diffusion.export", *args), fragment)


@pytest.mark.parametrize(
    "module, args, fragment",
    [
        ("hific_diffusion.cli", ["decompress", "a.hfd", "a.png", "--steps", "x"], "invalid int"),
        ("hific_diffusion.cli", ["frobnicate"], "invalid choice"),
        ("hific_diffusion.cli", ["info", "{tmp}/missing.hfd"], "no such file"),
        ("hific_diffusion.data.photo_corpus", ["--max-side", "0"], "--max-side"),
        (
            "hific_diffusion.data.photo_corpus",
            ["--manifest", "{tmp}/no.json", "--out", "{tmp}"],
            "no.json",
        ),
    ],
)
def test_argparse_entry_points_user_errors_are_one_line_exit_2(tmp_path, module, args, fragment):
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_error_line(_run(module, *args, cwd=tmp_path), fragment)


def test_every_entry_point_reports_ctrl_c_as_one_line_exit_130(tmp_path, monkeypatch, capsys):
    """The argparse entry points and the absl ones (``configs.run_app``: eval,
    export, train) end a Ctrl-C alike: one ``error: interrupted`` line, exit
    status 130, no traceback."""
    from hific_diffusion import cli, configs
    from hific_diffusion.data import photo_corpus

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: None)
    monkeypatch.setattr(cli, "cmd_info", interrupt)
    (tmp_path / "a.hfd").write_bytes(b"")
    assert cli.main(["info", str(tmp_path / "a.hfd")]) == 130
    monkeypatch.setattr(photo_corpus, "build", interrupt)
    assert photo_corpus.main(["--out", str(tmp_path / "corpus")]) == 130
    monkeypatch.setattr(sys, "argv", ["prog"])
    with pytest.raises(SystemExit) as e:
        configs.run_app(interrupt, interrupted_hint="rerun the same command to resume")
    assert e.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: interrupted",
        "error: interrupted",
        "error: interrupted; rerun the same command to resume",
    ]
