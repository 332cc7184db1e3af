"""CompressAI side of ``bench/trainer_vs_compressai.py`` (runs in a torch venv).

Reads commands on stdin, one JSON object per line, answers one JSON line each:
``{"cmd": "init", ...}`` builds ``Elic2022Official(N, M)`` with PyTorch's
default initialisation (seeded) and CompressAI's two optimizers as its
example training script sets them up; ``{"cmd": "step", "i": i}`` trains on
crop batch ``i`` of the shared uint8 memmap and returns its loss terms and
the step's wall time. Depends only on torch, numpy and compressai (which pins
numpy < 2, so it cannot live in the project's environment).
"""

import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from compressai.models import Elic2022Official


def main():
    torch.set_num_threads(1)
    net = opt = aux_opt = crops = None
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
            print(
                json.dumps({"ok": True, "params": n_params, "torch": torch.__version__}), flush=True
            )
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
            print(json.dumps(res), flush=True)
        elif msg["cmd"] == "quit":
            break


if __name__ == "__main__":
    main()
