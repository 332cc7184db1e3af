"""Experiment configs by name.

``--config=NAME`` resolves to ``configs/NAME.py`` in the source tree,
``--config=path/to/file.py`` loads that file, ``--config=NAME:arg`` passes
``arg`` to the file's ``get_config(arg)``, and ``--config.a.b=value`` overrides
any field (ml_collections config flags). Entry points call :func:`run_app`,
which rewrites the name to a path before absl parses the flags, so every
entry point accepts the same spellings from any working directory.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections

from hific_diffusion import errors

# Each section's defaults live beside the code that reads it (plain
# ml_collections, no model code); this module only assembles them.
from hific_diffusion.autoencoder.defaults import model_config
from hific_diffusion.cdc.defaults import cdc_config
from hific_diffusion.diffusion.defaults import diffusion_config
from hific_diffusion.errors import HfdError
from hific_diffusion.evaluation.defaults import eval_config
from hific_diffusion.gan.defaults import gan_config
from hific_diffusion.train.defaults import data_config, train_config

# The configs live beside the package in the source tree (the README installs
# the project in editable mode). HFD_CONFIG_DIR points elsewhere if needed.
_DEFAULT_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(HfdError, ValueError):
    """A config name, path or override that cannot be used."""


def config_dir() -> Path:
    return Path(os.environ.get("HFD_CONFIG_DIR", _DEFAULT_DIR))


def available() -> list[str]:
    """Names accepted by ``--config=NAME``."""
    d = config_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))


def resolve(spec: str) -> str:
    """Map ``NAME[:arg]`` or ``PATH[:arg]`` to ``/abs/path.py[:arg]``."""
    name, sep, arg = spec.partition(":")
    if name.endswith(".py") or os.sep in name:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"config file not found: {name}")
    else:
        path = config_dir() / f"{name}.py"
        if not path.is_file():
            names = ", ".join(available()) or "(none found in " + str(config_dir()) + ")"
            raise ConfigError(f"unknown config {name!r}; available: {names}")
    return f"{path}{sep}{arg}"


def load(spec: str, overrides: Sequence[str] | dict | None = None) -> ml_collections.ConfigDict:
    """Load a config in Python: ``load("elic_mse:0.25", ["train.steps=10"])``."""
    path, _, arg = resolve(spec).partition(":")
    module_spec = importlib.util.spec_from_file_location(f"_hfd_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    items = overrides.items() if isinstance(overrides, dict) else _split(overrides or ())
    for key, value in items:
        apply_override(config, key, value)
    return config


def _split(overrides: Sequence[str]):
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"override must be key=value, got {item!r}")
        yield key, value


def apply_override(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Set ``config.a.b`` from ``"a.b"``; strings are parsed like the command line."""
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if p not in node:
            raise ConfigError(f"no config field {key!r}")
        node = node[p]
    if leaf not in node:
        raise ConfigError(f"no config field {key!r}")
    if isinstance(value, str):
        value = _parse_like(node[leaf], value)
    node[leaf] = value


def _parse_like(current, text: str):
    if isinstance(current, str) or current is None and not text[:1].isdigit():
        return text
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"expected a boolean, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"cannot parse {text!r}") from e
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    return value


def _flag_values(argv: Sequence[str], flag: str):
    """``(index, prefix, value)`` of each ``--flag VALUE`` / ``--flag=VALUE`` in argv."""
    for i, item in enumerate(argv):
        if item == f"--{flag}" and i + 1 < len(argv):
            yield i + 1, "", argv[i + 1]
        elif item.startswith(f"--{flag}="):
            yield i, f"--{flag}=", item.split("=", 1)[1]


def resolve_argv(argv: Sequence[str], flag: str = "config") -> list[str]:
    """Rewrite ``--config NAME`` / ``--config=NAME`` to a path absl can load."""
    out = list(argv)
    for i, prefix, value in _flag_values(argv, flag):
        out[i] = prefix + resolve(value)
    return out


def run_app(main: Callable[[Sequence[str]], None], interrupted_hint: str = "") -> None:
    """``absl.app.run`` with config names resolved; every user error
    (``errors.USER_ERRORS``, bad flags included) is one ``error:`` line and exit
    status 2, Ctrl-C one ``error: interrupted[; HINT]`` line and status 130,
    anything else keeps its traceback (``hific_diffusion.errors``)."""
    from absl import app

    try:
        sys.argv = resolve_argv(sys.argv)
        # Build the config once here: an argument its get_config rejects
        # (``hfd:0.33``) is then one line, not absl's traceback.
        for _, _, spec in _flag_values(sys.argv, "config"):
            load(spec)
        app.run(main, flags_parser=_parse_flags)
    except errors.USER_ERRORS as e:
        sys.exit(errors.report(e))
    except KeyboardInterrupt:
        sys.exit(errors.interrupted(interrupted_hint))
    except SystemExit as e:
        # absl exits 1 after printing --help; asking for help is not a failure.
        if e.code == 1 and any(a in ("--help", "-h", "--helpfull", "-?") for a in sys.argv[1:]):
            sys.exit(0)
        raise


def _parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with its errors (and ml_collections', which reach
    it unwrapped) turned into one-line UsageError / ConfigError."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:  # a bad value, an unknown or missing flag
        raise errors.UsageError(str(e)) from None
    except (AttributeError, KeyError) as e:
        if not _raised_in(e, os.path.join("config_flags", "config_path.py")):
            raise
        cause = e
        while isinstance(cause, BaseException) and cause.args:  # AttributeError(KeyError(msg))
            cause = cause.args[0]
        name, _, hint = str(cause).partition("\n")
        msg = f"--config override: no config field {name}{hint and '; '}{hint}"
        raise ConfigError(msg) from None


def _raised_in(e: BaseException, path_suffix: str) -> bool:
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(path_suffix):
            return True
        tb = tb.tb_next
    return False


def base_config() -> ml_collections.ConfigDict:
    """Every field any entry point reads, with defaults; config files edit it.

    Each section's defaults live beside the code that reads them.
    """
    config = ml_collections.ConfigDict()
    config.name = "base"
    config.seed = 0
    # Which model the trainer fits: "autoencoder" (stage 1), "diffusion" or
    # "flow" (stage 2, autoencoder frozen), "hfdplus", "hific" (the GAN decoder),
    # "cdc" (CDC, one stage).
    config.task = "autoencoder"
    config.model = model_config()
    config.diffusion = diffusion_config()
    config.cdc = cdc_config()
    config.gan = gan_config()
    config.train = train_config()
    config.data = data_config()
    config.eval = eval_config()
    return config


# The decoders an evaluation protocol compares (``eval.decoders``).
ALL_DECODERS = ("mse", "diffusion", "flow")


def eval_protocol(dataset: str, *, fid_patch: int = 256) -> ml_collections.ConfigDict:
    """An evaluation protocol's config (``configs/clic20.py`` ...): the base
    config evaluating every decoder on ``dataset``; ``fid_patch`` 256 is
    HiFiC's FID/256 over 256x256 patches, 0 is FID over whole images."""
    config = base_config()
    config.name = dataset
    config.eval.dataset = dataset
    config.eval.decoders = ALL_DECODERS
    config.eval.fid_patch = fid_patch
    return config


def fill_defaults(node: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict):
    """``node`` with every field it lacks taken from ``defaults`` (recursively),
    in place. Configs saved before a field existed (checkpoints, bundles) are
    read through this, so the code reads every field directly and a default
    lives only in its section's ``defaults.py``. Each field was added with the
    behaviour before it as its default; the one exception, ``model.init``,
    only decides how a fresh run initialises, never how saved weights load."""
    for key, default in defaults.items():
        if key not in node:
            node[key] = (
                default.copy_and_resolve_references()
                if isinstance(default, ml_collections.ConfigDict)
                else default
            )
        elif isinstance(default, ml_collections.ConfigDict) and isinstance(
            node[key], ml_collections.ConfigDict
        ):
            fill_defaults(node[key], default)
    return node


def _kind_ok(default, value) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple | list):
        if not isinstance(value, tuple | list):
            return False
        return not default or all(_kind_ok(default[0], v) for v in value)
    return True


def type_problem(node, defaults: ml_collections.ConfigDict, where: str) -> str | None:
    """The first field of ``node`` whose type differs from its default's, as a
    sentence (``"model.M is 'x', expected an integer"``), or None.

    ``node`` must be a ConfigDict; fields the defaults lack, and fields
    ``node`` lacks, are not judged (older configs miss newer fields). Nested
    sections are checked recursively.
    """
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    if not isinstance(node, ml_collections.ConfigDict):
        return f"{where} is {_show(node)}, expected a section (a JSON object)"
    for key, default in defaults.items():
        if key not in node:
            continue
        value = node[key]
        if isinstance(default, ml_collections.ConfigDict):
            problem = type_problem(value, default, f"{where}.{key}")
            if problem:
                return problem
        elif not _kind_ok(default, value):
            if isinstance(default, tuple | list) and default:
                want = f"a list of {plural.get(type(default[0]), 'values')}"
            elif isinstance(default, tuple | list):
                want = "a list"
            else:
                want = names.get(type(default), type(default).__name__)
            return f"{where}.{key} is {_show(value)}, expected {want}"
    return None


def _show(value) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
