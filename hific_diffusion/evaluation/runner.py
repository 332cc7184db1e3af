"""``run(config, ...)``: the evaluation protocol of HFD Sec. 5 on one dataset.

Per image: real compression to bytes through ``pipeline.Codec`` (real bpp =
bytes * 8 / pixels, header included; the likelihood estimate beside it),
decoding with every decoder in ``config.eval.decoders``, PSNR / MS-SSIM /
LPIPS on the uint8 results, classical baselines at the MSE decoder's real
bpp, and Inception features of the FID/256 patches (HiFiC protocol) or of the
whole image (``fid_patch=0``, COCO-30k). Per dataset: FID and KID per decoder
against the originals' features.

Outputs in ``out``: ``per_image.jsonl`` (appended one image at a time; the
resume log), ``per_image.csv``, ``summary.json``, ``rd.png``, ``rate_fid.png``,
``features/<decoder>/<image>.npy`` and, if asked (``save_reconstructions``),
``bitstreams/<image>.hfd`` and ``reconstructions/<decoder>/<image>.png``.
A rerun skips every image whose rows are all in the log.

Spreading over devices: with several JAX processes (multi-host, after
``jax.distributed.initialize()``), process k evaluates images k, k+n, ... and
writes ``per_image.p<k>.jsonl``; process 0 merges them into the reports after
a barrier. Within a process the Codec's own jitted code uses its devices.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hific_diffusion import atomic, metrics
from hific_diffusion.coding import bitstream
from hific_diffusion.decoders import GAN, MODEL, NEEDS, SIDE_CHANNELS
from hific_diffusion.errors import HfdError
from hific_diffusion.evaluation import baselines, datasets, report
from hific_diffusion.metrics import fid, texture

ORIGINAL = "original"  # feature-set name of the uncompressed images


class EvalError(HfdError, ValueError):
    """An evaluation request that cannot be served (no model, unknown decoder, ...)."""


# ---------------------------------------------------------------------- model
def load_codec(config, bundle=None, workdir=None):
    """The Codec to evaluate: a bundle, a training workdir, a random init or the default bundle."""
    from hific_diffusion.pipeline import Codec

    if bundle and workdir:
        raise EvalError("pass either --bundle or --workdir, not both")
    if bundle:
        return Codec.from_bundle(bundle)
    if workdir:
        return Codec.from_checkpoint(workdir)
    if config.eval.random_init:
        return random_codec(config)
    return Codec.load()  # the default model (a one-line error if none is installed)


def random_codec(config):
    """A randomly initialised model of the config's shape (plumbing tests; numbers meaningless)."""
    from flax import nnx

    from hific_diffusion.autoencoder.elic import ELIC
    from hific_diffusion.pipeline import Codec

    rngs = nnx.Rngs(config.get("seed", 0))
    gens = {}
    for dec in config.eval.decoders:
        name = MODEL.get(dec)
        if name in GAN and name not in gens:
            from hific_diffusion.gan.models import Generator

            gens[name] = (config.gan, Generator(config.gan, rngs=rngs))
        elif name is not None and name not in gens:
            from hific_diffusion.diffusion.unet import UNet

            section = config.diffusion.copy_and_resolve_references()
            section.unet.side_channels = SIDE_CHANNELS[name]
            gens[name] = (section, UNet(section.unet, rngs=rngs))
    return Codec(config, ELIC(config.model, rngs=rngs), decoders=gens)


# ---------------------------------------------------------------- resume log
def read_log(path: Path) -> dict[tuple[str, str], dict]:
    """Rows by (image, decoder); a torn last line (interrupted write) is ignored."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[(r["image"], r["decoder"])] = r
    return rows


# Eval settings that do not change any per-image number: a run may resume
# with other values (e.g. a larger max_images extends it).
RESUME_FREE = ("max_images", "save_reconstructions", "data_dir", "kid_subset_size", "kid_subsets")


def run_identity(codec, ecfg) -> dict:
    """What the per-image rows of a run depend on: the model and the eval settings."""
    settings = {k: v for k, v in ecfg.to_dict().items() if k not in RESUME_FREE}
    return json.loads(json.dumps({"model": codec.model_digest(), "eval": settings}, default=str))


def check_resume(path: Path, identity: dict, write: bool) -> None:
    """Refuses to add to a run made with another model or other settings.

    ``path`` (``out/run.json``) is written on the first run; later runs must
    match it, else their rows would mix with the old ones.
    """
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise EvalError(f"{path} is not valid JSON; pass a new --out or delete it") from None
        if old != identity:
            what = "model"
            if isinstance(old, dict) and old.get("model") == identity["model"]:
                old_eval = old.get("eval", {})
                keys = sorted(k for k, v in identity["eval"].items() if old_eval.get(k) != v)
                what = f"eval settings ({', '.join(keys)})"
            raise EvalError(
                f"{path.parent} holds results of another {what}; pass a new --out or delete it"
            )
    elif write:
        atomic.write_text(path, json.dumps(identity, indent=1, sort_keys=True) + "\n")


def _append(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a line torn by an interruption: never extend it
                text = "\n" + text
    with open(path, "a") as f:  # one write per image: an image's rows land together
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------ per image
class _Features:
    """Inception features of FID patches, one .npy per (set, image)."""

    def __init__(self, extractor, out: Path, patch: int):
        self.extractor, self.root, self.patch = extractor, out / "features", patch

    def path(self, which: str, name: str) -> Path:
        return self.root / which / f"{name}.npy"

    def save(self, which: str, name: str, image: np.ndarray) -> None:
        if self.extractor is None:
            return
        batch = fid.patches(image, self.patch) if self.patch else image[None]
        target = self.path(which, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        feats = self.extractor(batch).astype(np.float32)
        with atomic.atomic_write(target) as f:
            np.save(f, feats)

    def load(self, which: str, names: list[str]) -> np.ndarray | None:
        parts = [self.path(which, n) for n in names]
        parts = [np.load(p) for p in parts if p.is_file()]
        return np.concatenate(parts).astype(np.float64) if parts else None


def _quality(row, image, recon, lpips):
    row["psnr"] = metrics.psnr(image, recon)
    row["ms_ssim"] = metrics.ms_ssim(image, recon)
    row["lpips"] = lpips(image, recon) if min(image.shape[:2]) >= 32 else None
    # Fine detail relative to the original (1 = as much; noise > 1, blur < 1).
    ratio = texture.texture_ratio(image, recon) if min(image.shape[:2]) >= 3 else None
    row["texture"] = ratio if ratio is not None and np.isfinite(ratio) else None
    return row


def _compress(codec, image, ecfg, out, name, decoder=None):
    """(file, seconds) of ``image`` for ``decoder`` (None: no side information,
    the file mse, diffusion and flow decode); saved if asked."""
    t0 = time.perf_counter()
    if decoder is None:
        data = codec.compress(image, seed=int(ecfg.seed))
    else:  # its own file: the latents plus its side information (real bpp counts it)
        # both run the diffusion sampler; corrdiff's encoder runs it at these steps
        steps = int(ecfg.diffusion_steps)
        data = codec.compress(image, seed=int(ecfg.seed), steps=steps, decoders=(decoder,))
    seconds = time.perf_counter() - t0
    if ecfg.save_reconstructions:  # the real file the bpp is measured on
        path = out / "bitstreams" / (f"{decoder}/" if decoder else "") / f"{name}.hfd"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    return data, seconds


def evaluate_image(codec, name, image, *, decoders, baseline_names, lpips, features, ecfg, out):
    """All rows of one image: one per decoder, one per available baseline.

    Decoders that need side information (corrdiff, hfdplus) each decode their
    own file, and their rows carry its bytes and real bpp; the classical
    baselines are matched to the plain file's (the MSE decoder's) bpp."""
    h, w = image.shape[:2]
    base = {"image": name, "height": h, "width": w}
    plain, t_plain = _compress(codec, image, ecfg, out, name)
    bpp = bitstream.real_bpp(plain, h, w)
    bpp_est = float(codec.estimate_bpp(image))
    features.save(ORIGINAL, name, image)
    rows = []
    for dec in decoders:
        data, t_enc = (
            _compress(codec, image, ecfg, out, name, dec) if dec in NEEDS else (plain, t_plain)
        )
        steps = {"diffusion": ecfg.diffusion_steps, "flow": ecfg.flow_steps,
                 "hfdplus": ecfg.diffusion_steps}.get(dec, 0)  # fmt: skip
        # corrdiff replays the sampler its encoder ran (steps in the file, the model's noise level)
        # (hific runs no sampler)
        sampled = dec not in ("corrdiff", *GAN)
        level = float(ecfg.noise_level) if ecfg.noise_level >= 0 and sampled else None
        t1 = time.perf_counter()
        recon = codec.decompress(
            data, decoder=dec, steps=int(steps) or None, seed=int(ecfg.seed), noise_level=level,
        )  # fmt: skip
        seconds = t_enc + time.perf_counter() - t1
        row = base | {"decoder": dec, "bytes": len(data), "bpp": bitstream.real_bpp(data, h, w),
                      "bpp_est": bpp_est}  # fmt: skip
        rows.append(_quality(row | {"seconds": seconds}, image, recon, lpips))
        features.save(dec, name, recon)
        _save_recon(ecfg, out, dec, name, recon)
    for b in baseline_names:
        t1 = time.perf_counter()
        r = baselines.at_bpp(b, image, bpp)
        row = base | {"decoder": b, "bytes": len(r.data), "bpp": r.bpp, "bpp_est": None}
        row |= {"quality": r.quality, "matched": r.matched, "seconds": time.perf_counter() - t1}
        rows.append(_quality(row, image, r.image, lpips))
        features.save(b, name, r.image)
        _save_recon(ecfg, out, b, name, r.image)
    return rows


def _save_recon(ecfg, out, decoder, name, image):
    if ecfg.save_reconstructions:
        from hific_diffusion import images

        path = out / "reconstructions" / decoder / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        images.save(path, image)


# ------------------------------------------------------------------------ run
def run(config, bundle=None, workdir=None, data_dir=None, out=None, *, codec=None) -> dict:
    """Evaluate and write the reports; returns the summary dict. ``codec`` overrides loading."""
    import jax

    ecfg = config.eval
    out = Path(out or f"eval_{str(config.name).replace(':', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    codec = codec if codec is not None else load_codec(config, bundle, workdir)
    decoders = list(ecfg.decoders)
    unknown = [d for d in decoders if d not in codec.decoders]
    if unknown:
        raise EvalError(f"model has no {unknown} decoder(s); it has {list(codec.decoders)}")
    base_ok, base_missing = baselines.available(ecfg.baselines)
    for b, why in base_missing.items():
        warnings.warn(f"baseline {b} skipped: needs {why}", stacklevel=2)
    items = datasets.resolve(ecfg, data_dir)

    k, n = jax.process_index(), jax.process_count()
    check_resume(out / "run.json", run_identity(codec, ecfg), write=k == 0)
    log = out / ("per_image.jsonl" if n == 1 else f"per_image.p{k}.jsonl")
    done = read_log(log)
    expected = decoders + base_ok
    pending = [it for it in items[k::n] if not all((it[0], d) in done for d in expected)]
    skipped = len(items[k::n]) - len(pending)
    if skipped:
        print(f"resuming: {skipped} image(s) already evaluated in {log}")

    from hific_diffusion.metrics.lpips import LPIPS

    lpips = LPIPS(ecfg.lpips_net)
    extractor = fid.try_features(ecfg.fid_weights or None)
    features = _Features(extractor, out, int(ecfg.fid_patch))
    progress = tqdm(datasets.iterate(pending), total=len(pending), unit="img",
                    desc=f"eval {ecfg.dataset}", disable=k != 0)  # fmt: skip
    for name, image in progress:
        rows = evaluate_image(
            codec, name, image, decoders=decoders, baseline_names=base_ok, lpips=lpips,
            features=features, ecfg=ecfg, out=out,
        )  # fmt: skip
        _append(log, rows)

    if n > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("hfd_eval_done")
        if k != 0:
            return {}
    logs = (
        [out / "per_image.jsonl"] if n == 1 else [out / f"per_image.p{i}.jsonl" for i in range(n)]
    )
    rows = {}
    for p in logs:
        rows |= read_log(p)
    return finish(config, out, items, list(rows.values()), expected, features, base_missing)


def finish(config, out, items, rows, expected, features, base_missing) -> dict:
    """FID/KID per decoder, then CSV, summary JSON, plots and the printed table."""
    ecfg = config.eval
    order = {name: i for i, (name, _) in enumerate(items)}
    rows = sorted(
        (r for r in rows if r["image"] in order), key=lambda r: (order[r["image"]], r["decoder"])
    )
    per_decoder = report.summarize(rows, expected)
    names = [name for name, _ in items]
    note = ""
    for m in per_decoder.values():
        m["fid"] = m["kid"] = None
    if features.extractor is None:
        note = "FID/KID skipped: no Inception weights"
    else:
        ref = features.load(ORIGINAL, names)
        for dec, m in per_decoder.items():
            got = features.load(dec, names)
            if ref is None or got is None or min(len(ref), len(got)) < 2:
                note = "FID/KID need at least 2 patches per set"
                continue
            m["fid"] = fid.fid_from_features(ref, got)
            m["kid"], m["kid_std"] = fid.kid(
                ref, got, subsets=int(ecfg.kid_subsets), subset_size=int(ecfg.kid_subset_size)
            )
            m["fid_samples"] = int(len(got))
    summary = {
        "config": str(config.name),
        "dataset": ecfg.dataset,
        "images": len(items),
        "fid_protocol": f"FID/{ecfg.fid_patch} (HiFiC patches)" if ecfg.fid_patch else "full image",
        "fid_weights": features.extractor.source if features.extractor else None,
        "fid_note": note or None,
        "baselines_skipped": base_missing,
        "decoders": per_decoder,
    }
    report.write_csv(rows, out / "per_image.csv")
    report.write_json(rows, out / "per_image.json")
    report.write_json(summary, out / "summary.json")
    report.plot_rd(per_decoder, ecfg.dataset, out / "rd.png")
    report.plot_rate_fid(per_decoder, ecfg.dataset, out / "rate_fid.png", note)
    print(report.table(per_decoder))
    print(f"wrote {out}/summary.json, per_image.csv, per_image.json, rd.png, rate_fid.png")
    return summary
