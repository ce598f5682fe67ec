"""The Winograd route (minicnn.winograd) against the direct route and PyTorch, per VGG-16 convolution.

Forward convolution, 224x224 input, float32, one process. Settled and alternating
(``common.settled_rounds``: a 0.25 s rest before each sample, the order of the sides rotating); medians of
the per-round ratios to PyTorch, with their range. Per layer it also prints where Winograd's time goes (the
input transform, the products, the output transform) and the float32 error of each route against a float64
convolution (relative L2). Layer 1 (3 input channels) never qualifies and is left out.

    python benchmarks/bench_winograd.py [--rounds 5] [--batch 1] [--layers 12]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import ratio_summary, settled_rounds, threads_note, use_native_kernels  # noqa: E402

use_native_kernels()

import numpy as np  # noqa: E402

from minicnn import conv_ops, winograd  # noqa: E402

VGG16_CONVS = [(64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56), (256, 256, 56),
               (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14), (512, 512, 14)]


def l2_error(a, exact):
    return float(np.linalg.norm((a - exact).ravel()) / np.linalg.norm(exact.ravel()))


def parts(x, w, m, samples=3):
    """Seconds of Winograd's input transform, products and output transform (medians of settled samples)."""
    alpha, (N, C, H, W), F = m + 2, x.shape, w.shape[0]
    th, tw = -(-H // m), -(-W // m)
    U = winograd.transformed(w, m)
    out = np.empty((N, F, th * m, tw * m), x.dtype)
    times = {"input": [], "products": [], "output": []}
    for _ in range(samples):
        for step in times:
            time.sleep(0.25)
            start = time.perf_counter()
            if step == "input":
                V = winograd._transform_input(x, m, (th, tw)).reshape(alpha * alpha, N * th * tw, C)
            elif step == "products":
                M = np.matmul(U.reshape(alpha * alpha, F, C), V.transpose(0, 2, 1))
            else:
                winograd._transform_output(M.reshape(alpha, alpha, F, N, th, tw), m, out)
            times[step].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times.values()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=len(VGG16_CONVS))
    args = parser.parse_args()
    try:
        import torch
        import torch.nn.functional as tf
    except ImportError:
        torch = None
    print(threads_note())
    rng = np.random.default_rng(0)
    totals = {"direct": 0.0, "F(2x2)": 0.0, "F(4x4)": 0.0, "torch": 0.0}
    print(f"{'layer':>15} {'direct/torch':>17} {'F2/torch':>17} {'F4/torch':>17}   F4 time: in / mm / out"
          f"   float32 error: direct F2 F4")
    for cin, cout, size in VGG16_CONVS[:args.layers]:
        x = rng.random((args.batch, cin, size, size), dtype=np.float32)
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        def direct():
            with winograd.disabled():
                return conv_ops.conv2d(x, w, (1, 1), (1, 1))
        sides = {"direct": direct}
        sides["F(2x2)"] = lambda: winograd.conv3x3(x, w, m=2)
        sides["F(4x4)"] = lambda: winograd.conv3x3(x, w, m=4)
        if torch is not None:
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            sides["torch"] = lambda: tf.conv2d(tx, tw, padding=1)
        times = settled_rounds(sides, rounds=args.rounds)
        for name in times:
            totals[name] += float(np.median(times[name]))
        reference = times.get("torch", times["direct"])
        cells = [ratio_summary(times[name], reference)[0] for name in ("direct", "F(2x2)", "F(4x4)")]
        t_in, t_mm, t_out = parts(x, w, 4)
        exact = conv_ops.conv2d(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1))
        errors = [l2_error(direct(), exact)] + [l2_error(winograd.conv3x3(x, w, m=m), exact) for m in (2, 4)]
        print(f"{cin:4d}->{cout:4d}@{size:3d} {cells[0]:>17} {cells[1]:>17} {cells[2]:>17}   "
              f"{t_in * 1e3:5.1f} / {t_mm * 1e3:5.1f} / {t_out * 1e3:5.1f} ms   "
              f"{errors[0]:.1e} {errors[1]:.1e} {errors[2]:.1e}", flush=True)
    base = totals["torch"] or totals["direct"]
    print("all layers, sum of medians / " + ("torch" if totals["torch"] else "direct") + ": " +
          ", ".join(f"{name} {t / base:.2f}" for name, t in totals.items() if t))


if __name__ == "__main__":
    main()
