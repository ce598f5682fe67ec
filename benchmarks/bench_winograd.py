"""The Winograd route (minicnn.winograd) against the direct route and PyTorch, per 3x3 convolution of VGG-16
and ResNet-50, forward and input gradient.

224x224 input, float32, one process. Settled and alternating (``common.settled_rounds``: a 0.25 s rest
before each sample, the order of the sides rotating); medians of the per-round ratios to PyTorch, with their
range. Per layer and direction it prints the direct route, F(2x2) and F(4x4) against PyTorch, and "default":
the route ``winograd.pays`` chooses, against the direct route (1.00 where it keeps the direct route). For the
forward pass it also prints where F(4x4)'s time goes (the input transform, the products, the output transform),
and for both directions the float32 error of each route against the float64 result (relative L2). VGG-16's
first layer (3 input channels) and the stride-2 convolutions never qualify and are left out.

    python benchmarks/bench_winograd.py [--rounds 5] [--batch 1] [--nets vgg16 resnet50] [--layers 12]
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
RESNET50_CONVS = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)]    # each stage's stride-1 3x3
NETS = {"vgg16": VGG16_CONVS, "resnet50": RESNET50_CONVS}


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


def layer_sides(x, w, dout, direction, torch):
    """{route: fn} for one convolution, forward or input gradient."""
    if direction == "forward":
        default = lambda: conv_ops.conv2d(x, w, (1, 1), (1, 1))
        tiles = lambda m: winograd.conv3x3(x, w, m=m)
    else:
        default = lambda: conv_ops.conv2d_input_grad(dout, w, x.shape, (1, 1), (1, 1))
        tiles = lambda m: winograd.conv3x3_input_grad(dout, w, m=m)

    def direct():
        with winograd.disabled():
            return default()
    sides = {"direct": direct, "F(2x2)": lambda: tiles(2), "F(4x4)": lambda: tiles(4)}
    if winograd.pays(x.shape[1], w.shape[0], (3, 3), (1, 1), (1, 1), *x.shape[2:]):
        sides["default"] = default
    if torch is not None:
        import torch.nn.functional as tf
        tx, tw, td = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dout)
        sides["torch"] = ((lambda: tf.conv2d(tx, tw, padding=1)) if direction == "forward" else
                          (lambda: tf.conv_transpose2d(td, tw, padding=1)))
    return sides


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--layers", type=int, default=len(VGG16_CONVS), help="the first LAYERS of each net")
    parser.add_argument("--directions", nargs="+", default=["forward", "input-grad"],
                        choices=["forward", "input-grad"])
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    print(threads_note())
    rng = np.random.default_rng(0)
    routes = ("direct", "F(2x2)", "F(4x4)")
    totals = {(net, d): {name: 0.0 for name in routes + ("default", "torch")}
              for net in args.nets for d in args.directions}
    print(f"{'layer':>19} {'direction':>10} {'direct/torch':>17} {'F2/torch':>17} {'F4/torch':>17} "
          f"{'default/direct':>17}   F4 time: in / mm / out   float32 error: direct F2 F4")
    for net in args.nets:
        for cin, cout, size in NETS[net][:args.layers]:
            x = rng.random((args.batch, cin, size, size), dtype=np.float32)
            w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
            dout = rng.random((args.batch, cout, size, size), dtype=np.float32)
            for direction in args.directions:
                sides = layer_sides(x, w, dout, direction, torch)
                times = settled_rounds(sides, rounds=args.rounds)
                total = totals[(net, direction)]
                for name in times:
                    total[name] += float(np.median(times[name]))
                if "default" not in times:
                    total["default"] += float(np.median(times["direct"]))
                reference = times.get("torch", times["direct"])
                cells = [ratio_summary(times[name], reference)[0] for name in routes]
                cells.append(ratio_summary(times["default"], times["direct"])[0] if "default" in times else
                             "1.00 (direct)")
                line = (f"{net:>8} {cin:4d}->{cout:4d}@{size:3d} {direction:>10} " +
                        " ".join(f"{c:>17}" for c in cells))
                if direction == "forward":
                    t_in, t_mm, t_out = parts(x, w, 4)
                    line += f"   {t_in * 1e3:5.1f} / {t_mm * 1e3:5.1f} / {t_out * 1e3:5.1f} ms   "
                    exact = conv_ops.conv2d(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1))
                else:
                    line += " " * 30
                    exact = conv_ops.conv2d_input_grad(dout.astype(np.float64), w.astype(np.float64), x.shape,
                                                       (1, 1), (1, 1))
                errors = [l2_error(sides[name](), exact) for name in routes]
                line += f"{errors[0]:.1e} {errors[1]:.1e} {errors[2]:.1e}"
                print(line, flush=True)
    for (net, direction), total in totals.items():
        base = total["torch"] or total["direct"]
        print(f"{net} {direction}, sum of medians / " + ("torch" if total["torch"] else "direct") + ": " +
              ", ".join(f"{name} {t / base:.2f}" for name, t in total.items() if t))
    winograd.forget()


if __name__ == "__main__":
    main()
