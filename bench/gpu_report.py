"""The GPU suite's figures beside the peers' figures and the targets of issue #17.

Peers: ``../shared/anchors/peer_gpu_figures.md`` (one H100 80GB; the H200 has
the same chip with more memory). Targets: issues #3, #4 and #17. ``figures``
turns the sections' results into rows; ``markdown`` writes the table.
"""

from __future__ import annotations

PEAK_REF_TFLOPS = 798.0  # bf16 matmul 8192^3 on the peers' H100 (PyTorch): "% of peak"
FLAT_RATIO = 1.1  # tiled decode memory is "flat" if the largest side needs <= 1.1x the smallest

# By position in the codec's size list: the GPU plan's 768x512, then 2048x1344.
CODEC = [
    dict(compress=0.08, decompress=0.06, peer_compress=0.374, peer_decompress=0.193),
    dict(compress=0.25, decompress=0.15, peer_compress=1.021, peer_decompress=0.479),
]
COMPRESSAI = "CompressAI ELIC, GPU nets + CPU rANS (H100)"
# 491,520 symbols grouped by 64 scale indices: 4.8 ms encode, 16.0 ms decode.
ENTROPY_PEER = "constriction Categorical per scale index, 2-core host"
TRAIN_PEER = "CompressAI Elic2022Official fp32 (H100)"
UNET_PEERS = {  # diffusers UNet2DModel of the same shape; a plain, untuned Flax NNX U-Net
    "train": dict(images=(85.3, 205.6), tflops=(127, 307), pct=(16, 38)),
    "sample": dict(images=(505, 666.6), tflops=(251, 332), pct=(31, 42)),
}
UNET_TARGET_PCT = {"train": 55.0, "sample": 60.0}
UNITS = dict(images="images/s", tflops="TFLOP/s", pct="%")
DIFFUSERS = {"train": "diffusers", "sample": "diffusers (torch.compile)"}


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _row(
    section,
    name,
    value,
    unit,
    *,
    target=None,
    better=None,
    peer=None,
    peer_value=None,
    trace=None,
    must=False,
    note=None,
):
    if peer_value is not None and peer is not None:
        peer = f"{_fmt(peer_value, unit)} {unit}, {peer}"
    error = value.get("error") if isinstance(value, dict) else None
    if error is not None:
        value = None
    gap = meets = None
    if isinstance(value, bool):
        meets = value if (target is not None or must) else None
    elif value is not None and target is not None and value > 0:
        gap = value / target if better == "lower" else target / value
        meets = gap <= 1.0
    return dict(
        section=section,
        name=name,
        value=value,
        unit=unit,
        target=target,
        better=better,
        peer=peer,
        peer_value=peer_value,
        meets=meets,
        gap=gap,
        trace=trace,
        must=must,
        note=note or error,
    )


def _codec(res):
    rows = []
    for i, (tag, r) in enumerate((_get(res, "latency") or {}).items()):
        t = CODEC[i] if i < len(CODEC) else {}
        for op in ("compress", "decompress"):
            v = r if "error" in r else r.get(f"{op}_s")
            rows.append(
                _row(
                    "codec",
                    f"{op} {tag} (mse)",
                    v,
                    "s",
                    target=t.get(op),
                    better="lower",
                    peer=COMPRESSAI,
                    peer_value=t.get(f"peer_{op}"),
                    trace=f"codec_{op}_{tag}",
                )
            )
            rows.append(_row("codec", f"{op} {tag} compile", r.get(f"{op}_compile_s"), "s"))
    ec = _get(res, "entropy_coding") or {}
    for op, peer in (("encode", 491_520 / 4.8e-3), ("decode", 491_520 / 16.0e-3)):
        v = ec if "error" in ec else ec.get(f"{op}_symbols_per_s")
        rows.append(
            _row("codec", f"entropy {op}", v, "symbols/s", peer=ENTROPY_PEER, peer_value=peer)
        )
    return rows


def _train(res):
    rows = []
    for dtype in ("float32", "bfloat16"):
        r = _get(res, dtype) or {}
        err = r if "error" in r else None
        rows.append(
            _row(
                "train",
                f"stage 1 {dtype} images/s",
                err or r.get("images_per_s"),
                "images/s",
                target=1000.0,
                better="higher",
                peer=TRAIN_PEER,
                peer_value=168.0,
                trace=f"train_autoencoder_{dtype}",
            )
        )
        rows.append(
            _row(
                "train",
                f"stage 1 {dtype} TFLOP/s",
                err or r.get("tflops"),
                "TFLOP/s",
                peer=TRAIN_PEER,
                peer_value=39.0,
            )
        )
    rd = _get(res, "bf16_rd_cost") or {}
    for key, name in (("rel_loss_diff_step0", "step 0"), ("mean_rel_loss_diff", "mean of steps")):
        v = rd.get(key)
        v = None if v is None else 100 * v
        rows.append(_row("train", f"bf16 RD cost, loss {name}", v, "%"))
    return rows


def _unet(res):
    rows = []
    mm = _get(res, "matmul", "tflops")
    rows.append(
        _row(
            "unet",
            "bf16 matmul ceiling",
            mm,
            "TFLOP/s",
            peer="PyTorch 8192^3 (H100)",
            peer_value=PEAK_REF_TFLOPS,
        )
    )
    peak = mm or PEAK_REF_TFLOPS
    for label, r in (_get(res, "configs") or {}).items():
        same = label == "diffusers_equiv"
        err = r if "error" in r else None
        gflop = err or r.get("forward_gflop_per_image")
        peer = "diffusers UNet2DModel" if same else None
        rows.append(
            _row("unet", f"{label} forward GFLOP/image", gflop, "GFLOP", peer=peer,
                 peer_value=497.5 if same else None)
        )  # fmt: skip
        for part in ("train", "sample"):
            tf = err or _get(r, part, "tflops")
            pct = tf if isinstance(tf, dict) or tf is None else 100 * tf / peak
            values = dict(images=err or _get(r, part, "images_per_s"), tflops=tf, pct=pct)
            for key, (a, b) in UNET_PEERS[part].items():
                unit = UNITS[key]
                extra = {}
                if key == "pct":
                    extra = dict(target=UNET_TARGET_PCT[part], better="higher",
                                 trace=f"unet_{part}_{label}")  # fmt: skip
                text = f"{DIFFUSERS[part]} {a}, plain Flax {b}" + ("" if same else " (their shape)")
                name = f"{label} {part} " + ("% of bf16 peak" if key == "pct" else unit)
                row = _row("unet", name, values[key], unit, peer=text, **extra)
                rows.append(dict(row, peer_value=a if same else None))
    return rows


def _decode(res):
    d = _get(res, "decode") or {}
    if "error" in d:
        return [_row("decode", "2048x1344 diffusion decode", d, "s")]
    name = f"{d.get('width')}x{d.get('height')} decode, {d.get('steps')} steps"
    note = None if d.get("complete", True) else f"extrapolated from {d.get('steps_run')} steps"
    return [
        _row("decode", name, d.get("decode_s"), "s", note=note),
        _row("decode", "decode compile", d.get("compile_s"), "s"),
        _row("decode", "decode U-Net tile evaluations/s", d.get("tile_evals_per_s"), "tiles/s"),
    ]


def _memory(res):
    rows, peaks = [], []
    for side, r in (_get(res, "sides") or {}).items():
        v = r.get("peak_bytes") or r.get("peak_rss_bytes") if "error" not in r else None
        what = "device peak" if r.get("peak_bytes") else "host peak RSS (no device stats)"
        rows.append(
            _row("memory", f"tiled decode {side}^2, {what}", r if v is None else v / 2**20, "MiB")
        )
        peaks.append(v)
    ok = [p for p in peaks if p]
    ratio = max(ok) / min(ok) if len(ok) >= 2 and len(ok) == len(peaks) else None
    rows.append(
        _row("memory", "largest / smallest side", ratio, "x", target=FLAT_RATIO, better="lower")
    )
    return rows


def _crossdevice(res):
    s = _get(res, "summary") or {}
    err = res if isinstance(res, dict) and "error" in res else None
    n = s.get("photos")
    return [
        _row(
            "crossdevice",
            "latents identical across devices, both ways (must)",
            err or s.get("latents_identical"),
            "",
            must=True,
        ),
        _row(
            "crossdevice",
            "golden file decodes to its latents here (must)",
            err or _get(res, "golden_file_latents_match"),
            "",
            must=True,
        ),
        _row(
            "crossdevice",
            f"compress gives identical bytes (of {n} photos)",
            err or s.get("bytes_identical"),
            "photos",
        ),
        _row(
            "crossdevice",
            "decoded images, max abs difference",
            err or s.get("image_max_abs_diff"),
            "grey levels",
        ),
    ]


BUILDERS = dict(
    codec=_codec, train=_train, unet=_unet, decode=_decode, memory=_memory, crossdevice=_crossdevice
)


def figures(sections: dict) -> list[dict]:
    rows = []
    for name, build in BUILDERS.items():
        if name in sections:
            res = sections[name].get("result") or {}
            if sections[name].get("error") and name == "crossdevice" and not res:
                res = {"error": sections[name]["error"]}
            rows += build(res)
    return rows


def largest_gap(rows, traced=False):
    """The row furthest from its target (``traced``: among those with a trace label)."""
    cands = [r for r in rows if r["gap"] is not None and (r["trace"] or not traced)]
    return max(cands, key=lambda r: r["gap"], default=None)


def _fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if unit == "symbols/s":
        return f"{v / 1e6:.1f} M"
    if isinstance(v, int):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def markdown(report: dict) -> str:
    d = report["device"]
    lines = [
        f"# GPU suite{' (dry run, CPU, tiny shapes: numbers mean nothing)' * report['dry_run']}",
        "",
        f"- device: {d.get('kind')} ({d.get('platform')}, {d.get('count')} device(s))",
        f"- date: {report['date']}; commit: {report['commit']}; jax {report['jax']}; "
        f"python {report['python']}",
        f"- wall time: {report['wall_s']:.0f} s; exit: {report['exit_code']}",
        "",
        "| section | figure | ours | peer | target | meets |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["figures"]:
        unit = f" {r['unit']}" if r["unit"] else ""
        ours = "error" if r["value"] is None and r["note"] else _fmt(r["value"], r["unit"]) + unit
        if r["note"]:
            ours += f" ({r['note']})"
        peer = r["peer"] or ""
        target = ""
        if r["target"] is not None:
            target = ("<= " if r["better"] == "lower" else ">= ") + _fmt(r["target"]) + unit
        elif r["must"]:
            target = "yes"
        meets = {True: "yes", False: "**no**", None: ""}[r["meets"]]
        lines.append(f"| {r['section']} | {r['name']} | {ours} | {peer} | {target} | {meets} |")
    lines += ["", "| section | status | seconds | budget s | error |", "|---|---|---|---|---|"]
    for name, s in report["sections"].items():
        err = (s.get("error") or "").replace("|", "/")
        lines.append(
            f"| {name} | {s['status']} | {s.get('seconds', 0):.0f} | "
            f"{s.get('budget_s', 0):.0f} | {err} |"
        )
    gap = report.get("largest_gap")
    if gap:
        lines += ["", f"Largest gap: {gap['name']} ({gap['gap']:.2f}x from its target)."]
    if report.get("trace"):
        lines.append(f"Profiler trace: `{report['trace']}` ({report.get('trace_of')}).")
    return "\n".join(lines) + "\n"
