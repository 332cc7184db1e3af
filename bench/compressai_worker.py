"""CompressAI side of ``bench/trainer_vs_compressai.py`` and ``codec_bench.py --vs-compressai``.

Runs in a torch venv. Reads commands on stdin, one JSON object per line,
answers one JSON line each.

Training (``trainer_vs_compressai.py``): ``{"cmd": "init", ...}`` builds
``Elic2022Official(N, M)`` with PyTorch's default initialisation (seeded) and
CompressAI's two optimizers as its example training script sets them up;
``{"cmd": "step", "i": i}`` trains on crop batch ``i`` of the shared uint8
memmap and returns its loss terms and the step's wall time.

Coding (``codec_bench.py --vs-compressai``): ``{"cmd": "codec_init", "N", "M",
"seed", "state_dict", "weights"}`` builds ``Elic2022Official(N, M)`` in eval
mode (seeded default initialisation, or the state dict at ``weights``), runs
``update(force=True)`` and saves its state dict as ``.npz`` at ``state_dict``
for the other side to import; ``{"cmd": "image", "path"}`` loads a uint8
HxWx3 ``.npy``; ``{"cmd": "compress"}`` and ``{"cmd": "decompress", "out"}``
time ``net.compress`` / ``net.decompress`` from the uint8 image to the strings
and back to a uint8 image (edge padding to a multiple of 64 and the crop
included, as ours does), returning wall and process CPU seconds; ``out``
(optional) receives the reconstruction as ``.npy`` after the timing.

Depends only on torch, numpy and compressai (which pins numpy < 2, so it
cannot live in the project's environment).
"""

import time

_T0 = time.perf_counter()

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script in compressai
import compressai  # noqa: E402
from compressai.models import Elic2022Official  # noqa: E402

IMPORT_S = time.perf_counter() - _T0
PAD = 64  # total down-sampling of g_a then h_a, as ours


def _reply(obj):
    print(json.dumps(obj), flush=True)


def _num_bytes(strings) -> int:
    if isinstance(strings, bytes | bytearray):
        return len(strings)
    return sum(_num_bytes(s) for s in strings)


def _load_weights(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    net = Elic2022Official(N=sd["g_a.0.weight"].shape[0], M=sd["g_a.13.weight"].shape[0])
    net.load_state_dict(sd)
    return net


class Coder:
    """Elic2022Official, eval mode, for ``compress`` / ``decompress`` timing."""

    def __init__(self, msg):
        t0 = time.perf_counter()
        torch.manual_seed(msg["seed"])
        if msg.get("weights"):
            self.net = _load_weights(msg["weights"])
        else:
            self.net = Elic2022Official(N=msg["N"], M=msg["M"])
        self.net.eval()
        self.net.update(force=True)
        self.setup_s = time.perf_counter() - t0
        sd = {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        np.savez(msg["state_dict"], **sd)
        self.image = self.out = None

    def info(self):
        n_params = sum(
            p.numel() for n, p in self.net.named_parameters() if not n.endswith(".quantiles")
        )
        return {
            "ok": True, "params": n_params, "torch": torch.__version__,
            "compressai": compressai.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "import_s": IMPORT_S, "setup_s": self.setup_s, "groups": list(self.net.groups),
            "N": int(self.net.g_a[0].weight.shape[0]), "M": sum(self.net.groups),
        }  # fmt: skip

    def compress(self):
        img = self.image
        t0, c0 = time.perf_counter(), time.process_time()
        h, w = img.shape[:2]
        x = np.pad(img, ((0, -h % PAD), (0, -w % PAD), (0, 0)), mode="edge")
        x = torch.from_numpy(x.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
        with torch.no_grad():
            self.out = self.net.compress(x)
        t1, c1 = time.perf_counter(), time.process_time()
        n_bytes = _num_bytes(self.out["strings"])
        return {"seconds": t1 - t0, "cpu_seconds": c1 - c0, "bytes": n_bytes}

    def decompress(self, out_path=None):
        h, w = self.image.shape[:2]
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            x = self.net.decompress(self.out["strings"], self.out["shape"])["x_hat"]
        x = x[0, :, :h, :w].permute(1, 2, 0).numpy()
        x = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
        t1, c1 = time.perf_counter(), time.process_time()
        if out_path:
            np.save(out_path, x)
        return {"seconds": t1 - t0, "cpu_seconds": c1 - c0}


def main():
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    net = opt = aux_opt = crops = coder = None
    lmbda = clip = 0.0
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "init":
            torch.manual_seed(msg["seed"])
            net = Elic2022Official(N=msg["N"], M=msg["M"])
            net.train()
            main_p = [p for n, p in net.named_parameters() if not n.endswith(".quantiles")]
            aux_p = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
            opt = torch.optim.Adam(main_p, lr=msg["lr"])
            aux_opt = torch.optim.Adam(aux_p, lr=1e-3)
            lmbda, clip = msg["lmbda"], msg["clip"]
            crops = np.load(msg["crops"], mmap_mode="r")
            n_params = sum(p.numel() for p in main_p)
            _reply({"ok": True, "params": n_params, "torch": torch.__version__})
        elif msg["cmd"] == "step":
            t0 = time.perf_counter()
            x = torch.from_numpy(np.asarray(crops[msg["i"]], np.float32) / 255.0)
            x = x.permute(0, 3, 1, 2).contiguous()
            out = net(x)
            n, _, h, w = x.shape
            liks = out["likelihoods"]
            bits = {k: torch.log(v).sum() / -math.log(2) for k, v in liks.items()}
            bpp = sum(bits.values()) / (n * h * w)
            mse = F.mse_loss(out["x_hat"], x)
            loss = lmbda * 255**2 * mse + bpp
            opt.zero_grad()
            aux_opt.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            aux = net.aux_loss()
            aux.backward()
            aux_opt.step()
            dt = time.perf_counter() - t0
            res = {
                "loss": loss.item(),
                "bpp": bpp.item(),
                "mse": mse.item(),
                "z_bpp": (bits.get("z", torch.tensor(0.0)) / (n * h * w)).item(),
                "seconds": dt,
            }
            _reply(res)
        elif msg["cmd"] == "codec_init":
            coder = Coder(msg)
            _reply(coder.info())
        elif msg["cmd"] == "image":
            coder.image = np.load(msg["path"])
            _reply({"ok": True, "shape": list(coder.image.shape)})
        elif msg["cmd"] == "compress":
            _reply(coder.compress())
        elif msg["cmd"] == "decompress":
            _reply(coder.decompress(msg.get("out")))
        elif msg["cmd"] == "quit":
            break


if __name__ == "__main__":
    main()
