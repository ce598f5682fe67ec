"""minicnn Conv2d vs torch.nn.functional.conv2d on VGG-16's convolutions.

224x224 input, batch 1, float32, one process, the same threads for both, settled
and alternating (``common.settled_rounds``: a sleep of SETTLE = 0.25 s before each sample, the order
of the sides rotating; medians of the per-round ratios, with their range).
Prints per layer: forward time, input-gradient time, and minicnn / torch ratios;
then minicnn's matrix products alone ("mm": the same products, in the shapes
``minicnn.conv_ops`` gives them), so the rest of each layer's time (copies in,
tap rows added out) is visible; and the same for the first linear layer.

    python benchmarks/bench_conv.py [--repeat 5] [--batch 1]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import (median_time, ratio_summary, settled_rounds, threads_note,  # noqa: E402
                    use_native_kernels)

use_native_kernels()

import numpy as np  # noqa: E402

import minicnn as mc  # noqa: E402
from minicnn.conv_ops import shifted_pays  # noqa: E402

# (in_channels, out_channels, spatial size) of VGG-16's 13 convolutions at 224x224
VGG16_CONVS = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56),
               (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14),
               (512, 512, 14)]


def product_operands(cin, cout, size, batch, rng):
    """The operands of the one matrix product of the forward pass, and of the input gradient, as
    ``conv_ops`` routes a 3x3, padding-1 convolution: shifted rows (taps (3F, 3C) times rows (3C, P)
    on the padded grid) or im2col (w (F, 9C) times columns (9C, H*W)); the input gradient is the
    transposed shifted convolution or w^T (9C, F) times dout (F, H*W)."""
    grid, pixels = batch * (size + 2) ** 2, batch * size * size

    def pair(rows, inner, cols):
        return rng.random((rows, inner), dtype=np.float32), rng.random((inner, cols), dtype=np.float32)
    forward = pair(3 * cout, 3 * cin, grid) if shifted_pays(cin, 3, 3, size) else pair(cout, 9 * cin, pixels)
    if cout <= cin and shifted_pays(cout, 3, 3, size):
        grad = pair(3 * cin, 3 * cout, grid)
    else:
        w = rng.random((cout, 9 * cin), dtype=np.float32)
        grad = (w.T, rng.random((cout, pixels), dtype=np.float32))    # W^T read in place, as conv_ops does
    return forward, grad


def products_alone(args, rng):
    print(f"{'layer':>16} {'fwd mm':>8} {'dx mm':>8}   (minicnn's matrix products alone)")
    totals = np.zeros(2)
    for cin, cout, size in VGG16_CONVS[:args.layers]:
        t = []
        for a, b in product_operands(cin, cout, size, args.batch, rng):
            out = np.empty((a.shape[0], b.shape[1]), np.float32)
            t.append(median_time(lambda: np.matmul(a, b, out=out), args.repeat))
        totals += t
        print(f"{f'{cin}->{cout}@{size}':>16} {t[0]*1e3:7.1f}ms {t[1]*1e3:7.1f}ms")
    print(f"{'total':>16} {totals[0]*1e3:7.1f}ms {totals[1]*1e3:7.1f}ms")
    w = rng.random((4096, 25088), dtype=np.float32)      # classifier.0: 400 MB of weights, read once each way
    x, g = rng.random((args.batch, 25088), dtype=np.float32), rng.random((args.batch, 4096), dtype=np.float32)
    print(f"{'linear 25088->4096':>18}: forward {median_time(lambda: x @ w.T, args.repeat) * 1e3:.1f}ms, "
          f"input gradient {median_time(lambda: g @ w, args.repeat) * 1e3:.1f}ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=len(VGG16_CONVS), help="only the first N layers")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    print(f"{'layer':>16} {'fwd mc':>8} {'fwd pt':>8} {'ratio (range)':>17} {'dx mc':>8} {'dx pt':>8} "
          f"{'ratio (range)':>17}")
    rng = np.random.default_rng(0)
    totals = {side: np.zeros(args.repeat) for side in ("fwd mc", "fwd pt", "dx mc", "dx pt")}
    for cin, cout, size in VGG16_CONVS[:args.layers]:
        conv = mc.Conv2d(cin, cout, 3, padding=1, rng=0)
        x = rng.standard_normal((args.batch, cin, size, size)).astype(np.float32)
        dout = rng.standard_normal((args.batch, cout, size, size)).astype(np.float32)
        tw, tb = torch.from_numpy(conv.params["weight"]), torch.from_numpy(conv.params["bias"])
        tx, tdout = torch.from_numpy(x), torch.from_numpy(dout)
        conv.forward(x)
        with torch.no_grad():
            t = settled_rounds({"fwd mc": lambda: conv.forward(x),
                                "fwd pt": lambda: F.conv2d(tx, tw, tb, padding=1),
                                "dx mc": lambda: conv.backward(dout),
                                "dx pt": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdout, padding=1)},
                               args.repeat)
        for side in totals:
            totals[side] += t[side]
        print(_row(f"{cin}->{cout}@{size}", t))
    print(_row("total", totals))
    products_alone(args, rng)


def _row(label, t):
    """One table row from {side: [seconds per round]}: median times, median ratio (range)."""
    med = {side: float(np.median(v)) for side, v in t.items()}
    return (f"{label:>16} {med['fwd mc']*1e3:7.1f}ms {med['fwd pt']*1e3:7.1f}ms "
            f"{ratio_summary(t['fwd mc'], t['fwd pt'])[0]:>17} {med['dx mc']*1e3:7.1f}ms {med['dx pt']*1e3:7.1f}ms "
            f"{ratio_summary(t['dx mc'], t['dx pt'])[0]:>17}")


if __name__ == "__main__":
    main()
