"""``hific-diffusion``: compress images to .hfd files, decompress, inspect.

    hific-diffusion compress IN OUT.hfd [--quality 1|2|3 | --model BUNDLE] [--for corrdiff,hfdplus]
    hific-diffusion decompress IN.hfd OUT.png
        [--decoder mse|diffusion|flow|corrdiff|hfdplus|cdc|hific] [--steps N] [--seed S]
        [--noise-level X] [--tile T] [--overlap O] [--gamma-scale G]
    hific-diffusion info IN.hfd

The quality is chosen at compress time (``hific_diffusion.installed``): a
file names its model, and decompress finds the installed one that wrote it.
A CDC model (``--model`` a CDC bundle) is its own family: its files name the
``cdc`` decoder, and an HFD model refuses them (and the reverse) in one line.

IN may be a file, a directory or a glob; with more than one input OUT is a
directory (created) and each output is named after its input. Every user
error (``hific_diffusion.errors``: bad bitstream, bad image, bad bundle,
missing file, bad argument) prints one ``error: ...`` line on stderr and exits
with status 2.

Before any slow work (loading the model, coding) the arguments are checked,
no output may be one of the inputs (or two inputs share an output), and
every output must be writable. Outputs are written atomically
(``hific_diffusion.atomic``): an interrupted run leaves the previous file or
none, never a partial one.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import warnings
from collections.abc import Collection
from pathlib import Path

from hific_diffusion import atomic, errors, images, installed
from hific_diffusion.cache import enable_compilation_cache
from hific_diffusion.coding import bitstream
from hific_diffusion.errors import HfdError


class CliError(HfdError):
    """A usage problem reported as one line."""


def expand_inputs(spec: str, exts: Collection[str] | None) -> tuple[list[Path], bool]:
    """File, directory or glob -> (sorted files, whether it names many)."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir() if f.is_file() and (not exts or f.suffix.lower() in exts)
        )
        if not files:
            raise CliError(f"no input files in directory {spec}")
        return files, True
    if p.exists():
        return [p], False
    if glob.has_magic(spec):
        files = sorted(Path(f) for f in glob.glob(spec) if os.path.isfile(f))
        if not files:
            raise CliError(f"no files match {spec}")
        return files, True
    raise CliError(f"no such file: {spec}")


def _outputs(inputs: list[Path], many: bool, out: str, suffix: str) -> list[Path]:
    if not many:
        return [Path(out)]
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise CliError(f"several inputs need OUT to be a directory, but {out} is a file")
    d.mkdir(parents=True, exist_ok=True)
    return [d / (f.stem + suffix) for f in inputs]


def _check_outputs(inputs: list[Path], outs: list[Path]) -> None:
    """Refuses, before any work, an output that is one of the inputs (by name,
    link or inode), two inputs that would write the same output, and an
    output that cannot be written."""

    def key(p: Path):
        try:
            st = p.stat()
            return (st.st_dev, st.st_ino)
        except OSError:
            return None

    input_keys = {key(p) for p in inputs} - {None}
    input_paths = {os.path.realpath(p) for p in inputs}
    writers: dict[str, Path] = {}
    for src, dst in zip(inputs, outs, strict=True):
        real = os.path.realpath(dst)
        if real in input_paths or (key(dst) is not None and key(dst) in input_keys):
            raise CliError(f"output {dst} is also an input; refusing to overwrite it")
        if real in writers:
            raise CliError(f"inputs {writers[real]} and {src} would both write {dst}")
        writers[real] = src
        try:
            atomic.check_writable(dst)
        except OSError as e:
            raise CliError(f"cannot write {dst}: {e.strerror or e}") from None


def _check_range(name: str, value, lo, hi=None) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and value >= lo and (hi is None or value <= hi)
    if not ok:
        want = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise CliError(f"{name} must be {want}, got {value}")


def _one_line_warnings(default):
    """``warnings.showwarning`` that prints the project's ImageWarning as one line."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, images.ImageWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _load_codec(model: str | None, quality: int | None = None):
    from hific_diffusion.bundle import BundleError
    from hific_diffusion.pipeline import Codec

    try:
        return Codec.load(model, quality=quality)
    except BundleError as e:
        if model is None:
            raise BundleError(f"{e}; pass --model BUNDLE") from None
        raise


class _CodecForFile:
    """``--model`` if given, else the installed model that wrote each file
    (``Codec.load_for``, by the header's fingerprint; one load per model)."""

    def __init__(self, model: str | None):
        self.model, self.loaded = model, {}

    def __call__(self, data: bytes):
        from hific_diffusion.pipeline import Codec

        key = None if self.model is not None else bitstream.unpack(data)[0].fingerprint
        if key not in self.loaded:
            self.loaded[key] = _load_codec(self.model) if key is None else Codec.load_for(data)
        return self.loaded[key]


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", file=sys.stderr)


def _run_many(pairs, many, desc, fn, progress=True) -> int:
    """Runs ``fn`` per (input, output); with many inputs a failure is
    reported per file and the rest still run (exit status 2 at the end)."""
    status = 0
    for src, dst in _progress(pairs, many and progress, desc):
        try:
            fn(src, dst)
        except errors.USER_ERRORS as e:
            if not many:
                raise
            status = errors.report(e, f"{src}: ")
    return status


def _decoder_list(text: str) -> tuple[str, ...]:
    """``--for a,b`` -> ("a", "b"), each a known decoder name."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise CliError("--for needs decoder names, e.g. --for corrdiff,hfdplus")
    for n in names:
        if n not in bitstream.DECODERS:
            raise CliError(
                f"--for: unknown decoder {n!r}; choose from {', '.join(bitstream.DECODERS)}"
            )
    return names


def cmd_compress(args) -> int:
    from hific_diffusion.pipeline import MAX_STEPS_HINT

    _check_range("--steps", args.steps, 0, MAX_STEPS_HINT)
    if args.quality is not None and args.model is not None:
        raise errors.UsageError("give --model or --quality, not both")
    for_ = _decoder_list(args.for_) if args.for_ is not None else ()
    inputs, many = expand_inputs(args.input, images.IMAGE_SUFFIXES)
    outs = _outputs(inputs, many, args.output, ".hfd")
    _check_outputs(inputs, outs)
    # A bad image is reported before the slow model load.
    first = None if many else images.load(inputs[0])
    codec = _load_codec(args.model, args.quality)
    # A decoder the model lacks is reported before any image is coded.
    from hific_diffusion import decoders

    if args.decoder is None:  # the model's own: mse (HFD), cdc (CDC)
        args.decoder = codec.default_decoder
    decoders.side_kinds(codec, for_, args.decoder)
    if bitstream.family_of(args.decoder) != codec.family:
        raise CliError(f"--decoder {args.decoder}: not a decoder of this model")

    def one(src, dst):
        x = first if first is not None else images.load(src)
        data = codec.compress(
            x, decoder=args.decoder, steps=args.steps, seed=args.seed, decoders=for_
        )
        atomic.write_bytes(dst, data)
        if not many:
            print(f"{dst}: {len(data)} bytes, {bitstream.real_bpp(data):.4f} bpp")

    return _run_many(list(zip(inputs, outs, strict=True)), many, "compress", one)


def cmd_decompress(args) -> int:
    _check_range("--steps", args.steps, 1)
    _check_range("--seed", args.seed, 0, 2**32 - 1)
    _check_range("--noise-level", args.noise_level, 0.0, 1.0)
    _check_range("--tile", args.tile, 0)
    _check_range("--overlap", args.overlap, 0)
    _check_range("--gamma-scale", args.gamma_scale, 0.0, 1.0)
    if args.gamma_scale is not None and args.decoder not in (None, "corrdiff"):
        raise CliError("--gamma-scale applies to --decoder corrdiff only")
    inputs, many = expand_inputs(args.input, {".hfd"})
    outs = _outputs(inputs, many, args.output, ".png")
    _check_outputs(inputs, outs)
    from hific_diffusion.pipeline import read_file

    codec_for = _CodecForFile(args.model)
    if not many:  # a bad bitstream, or a model not installed, before the slow work
        codec_for(read_file(inputs[0]))

    def one(src, dst):
        data = read_file(src)
        img = codec_for(data).decompress(
            data,
            decoder=args.decoder,
            steps=args.steps,
            seed=args.seed,
            noise_level=args.noise_level,
            tile=args.tile,
            overlap=args.overlap,
            progress=args.progress and not many,
            gamma_scale=args.gamma_scale,
        )
        images.save(dst, img)

    return _run_many(list(zip(inputs, outs, strict=True)), many, "decompress", one)


def cmd_info(args) -> int:
    from hific_diffusion.pipeline import read_file

    inputs, many = expand_inputs(args.input, {".hfd"})

    def one(src, _):
        data = read_file(src)
        h, sections = bitstream.unpack(data)
        side = ", ".join(f"{s.kind} v{s.version} {len(s.payload)} bytes" for s in h.side)
        print(
            f"{src}: {h.width}x{h.height} pixels, {len(data)} bytes, "
            f"{bitstream.real_bpp(data, h.height, h.width):.4f} bpp (real), format v{h.version}, "
            f"decoder={h.decoder}, steps={h.steps or 'default'}, seed={h.seed}, "
            f"model={h.fingerprint.hex()}, sections={[len(s) for s in sections]}, "
            f"side information: {side or 'none'}"
        )

    return _run_many([(f, None) for f in inputs], many, "info", one, progress=False)


def build_parser() -> argparse.ArgumentParser:
    parser = errors.ArgumentParser(
        prog="hific-diffusion",
        description="Learned image compression with generative decoders (HFD, arXiv 2305.18231).",
    )
    parser.add_argument("--model", dest="global_model", help="inference bundle directory")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model",
        help="inference bundle directory (default: compress: the bundled model of --quality; "
        "decompress: the installed model that wrote the file)",
    )

    c = sub.add_parser("compress", parents=[common], help="image(s) -> .hfd")
    c.add_argument("input", help="image file, directory or glob")
    c.add_argument("output", help="OUT.hfd, or a directory for several inputs")
    c.add_argument(
        "--decoder",
        default=None,
        choices=bitstream.DECODERS,
        help="default decoder stored in the file (a hint; corrdiff and hfdplus add "
        "their side information; default: the model's, mse or cdc)",
    )
    c.add_argument(
        "--for",
        dest="for_",
        metavar="DECODERS",
        help="comma-separated decoders to write side information for: corrdiff (16 bits a "
        "sampler step; compressing runs the diffusion sampler), hfdplus (an energy map)",
    )
    c.add_argument("--steps", type=int, default=0, help="sampler steps hint (0: model default)")
    c.add_argument("--seed", type=int, default=0, help="sampler seed stored in the file")
    c.add_argument(
        "--quality",
        type=int,
        choices=installed.QUALITIES,
        default=None,
        help=f"bundled model, low to high rate (default {installed.DEFAULT_QUALITY})",
    )
    c.set_defaults(fn=cmd_compress)

    d = sub.add_parser("decompress", parents=[common], help=".hfd -> image(s)")
    d.add_argument("input", help=".hfd file, directory or glob")
    d.add_argument("output", help="OUT.png, or a directory for several inputs")
    d.add_argument(
        "--decoder",
        choices=bitstream.DECODERS,
        default=None,
        help="default: the one stored in the file",
    )
    d.add_argument("--steps", type=int, default=None)
    d.add_argument("--seed", type=int, default=None, help="default: the seed stored in the file")
    d.add_argument("--noise-level", type=float, default=None)
    d.add_argument("--tile", type=int, default=None)
    d.add_argument("--overlap", type=int, default=None)
    d.add_argument(
        "--gamma-scale",
        type=float,
        default=None,
        help="corrdiff: scale of the transmitted factors in [0, 1] (0: as diffusion, "
        "default 1: as fitted)",
    )
    d.add_argument("--progress", action="store_true", help="show sampler progress")
    d.set_defaults(fn=cmd_decompress)

    i = sub.add_parser("info", help="print an .hfd header and its real bpp")
    i.add_argument("input", help=".hfd file, directory or glob")
    i.set_defaults(fn=cmd_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "model", None) is None:
        args.model = args.global_model
    enable_compilation_cache()
    default_show = warnings.showwarning
    warnings.showwarning = _one_line_warnings(default_show)
    try:
        return args.fn(args)
    except errors.USER_ERRORS as e:
        return errors.report(e)
    except KeyboardInterrupt:
        return errors.interrupted()
    finally:
        warnings.showwarning = default_show


if __name__ == "__main__":
    sys.exit(main())
