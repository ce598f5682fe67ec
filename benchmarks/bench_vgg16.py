"""VGG-16, float32, 224x224: minicnn vs PyTorch (random weights; speed does not depend on them).

Times, in one process with the same threads, settled and alternating
(``common.settled_rounds``: a sleep of SETTLE = 0.25 s before each sample, the order of the two
sides rotating; medians, and the median of the per-round ratios with their
range): forward, and forward + input gradient of one logit, at batch 1 and 8, per image,
with the share of NumPy's matrix-product peak each case reaches (its floor is
what the products alone would take at that peak). Then peak resident memory,
each side in a fresh child process so that neither counts the other: one
forward + input gradient at batch 1, and, with --smoothgrad-images N,
SmoothGrad-50 on N images at minicnn's default batch size and Captum's
nt_samples_batch_size=10 (its default, all 50 at once, needs ~100 MB per
noisy copy: 40 GB for 8 images). Every case also times minicnn with the Winograd route off
("direct route"), in the same rounds, and measures its memory. Minutes.

    python benchmarks/bench_vgg16.py [--repeat 5] [--batches 1 8] [--smoothgrad-images 8]
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import (child_peak, matmul_peak_gflops, minicnn_step, peak_rss_mb, ratio_summary, route,  # noqa: E402
                    settled_rounds, threads_note, torch_step, use_native_kernels)

use_native_kernels()

import numpy as np  # noqa: E402

import minicnn as mc  # noqa: E402
import minicnn.models as models  # noqa: E402


def forward_flops(model, x):
    """Floating-point operations of one forward pass on x (multiply + add = 2), convolutions and linear layers.
    The input gradient costs the same again (each layer's dx is a product of the same size)."""
    model.forward(x)
    flops = 0
    for name, layer in model.named_layers():
        out = model.outputs[name]
        if isinstance(layer, mc.Conv2d):
            flops += 2 * out.size * layer.params["weight"][0].size
        elif isinstance(layer, mc.Linear):
            flops += 2 * out.size * layer.params["weight"].shape[1]
    return flops


def torch_model():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from test_vgg16_torch import torch_vgg
    return torch_vgg("vgg16", normalize=False)       # the bare network, like models.vgg16(normalize=False)


def memory_child(side, case, n_images):
    """Peak RSS of one case in this fresh process; prints MB."""
    x = np.random.default_rng(0).standard_normal((n_images, 3, 224, 224)).astype(np.float32)
    if side.startswith("minicnn"):                    # minicnn, or minicnn-direct: the Winograd route off
        model = models.vgg16(normalize=False)         # the bare network, like the torch twin
        with route(side == "minicnn-direct"):
            if case == "grad":
                minicnn_step(model, x, True)
            else:
                import attribution as attr
                attr.smoothgrad(attr.vanilla_gradient, model, x, 1, n_samples=50, stdev=0.6, seed=0)
    else:
        import torch
        net = torch_model()
        for p in net.parameters():
            p.requires_grad_(False)       # the attribution path: no weight gradients
        if case == "grad":
            torch_step(net, torch.from_numpy(x), True)
        else:
            import captum.attr as ca
            for m in net.modules():
                if isinstance(m, torch.nn.ReLU):
                    m.inplace = False
            ca.NoiseTunnel(ca.Saliency(net)).attribute(torch.from_numpy(x), nt_type="smoothgrad", nt_samples=50,
                                                       nt_samples_batch_size=10, stdevs=0.6, target=1, abs=False)
    print(f"{peak_rss_mb():.0f}")


def per_image_ratio(model, net, batch, rounds):
    """Per-image time of forward + input gradient at `batch` over batch 1, in rounds that alternate the two
    (on a shared machine, speed drifts by 10-20% over minutes; rounds side by side see the same machine)."""
    import torch
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    steps = {"minicnn": lambda xs: minicnn_step(model, xs, True),
             "torch": lambda xs: torch_step(net, torch.from_numpy(xs), True)}
    for side, step in steps.items():
        ratios = []
        for _ in range(rounds):
            one = settled_rounds({"one": lambda: step(x[:1])}, 3)["one"]
            many = settled_rounds({"many": lambda: step(x)}, 1)["many"]
            ratios.append(many[0] / batch / statistics.median(one))
        spread = " ".join(f"{r:.2f}" for r in ratios)
        print(f"{side}: per image at batch {batch} / batch 1, alternating rounds: median "
              f"{statistics.median(ratios):.2f} (rounds: {spread})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--smoothgrad-images", type=int, default=0,
                        help="also the peak memory of SmoothGrad-50 on this many images (minutes)")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        side, case, n = args.memory_child
        return memory_child(side, case, int(n))
    import torch
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    peak = matmul_peak_gflops()
    model = models.vgg16(normalize=False)             # the bare network, like the torch twin
    net = torch_model()
    for p in net.parameters():
        p.requires_grad_(False)
    flops = forward_flops(model, np.zeros((1, 3, 224, 224), np.float32))
    print(f"NumPy float32 matrix-product peak {peak:.0f} GFLOP/s; VGG-16 forward {flops / 1e9:.1f} GFLOP per image, "
          f"forward + input gradient {2 * flops / 1e9:.1f}")
    print(f"{'case':>30} {'minicnn':>9} {'torch':>9} {'ratio (range)':>17} {'per image':>10} {'of peak':>8} "
          f"{'floor':>7}   direct route (no Winograd): {'time':>7} {'ratio (range)':>17}")
    for batch in args.batches:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        tx = torch.from_numpy(x)
        for grad, label in [(False, "forward"), (True, "forward + input grad")]:
            repeat = args.repeat if batch == 1 else max(2, args.repeat // 2)
            # settled, alternating rounds after two untimed passes each (the steady state of a loop like SmoothGrad's)
            times = settled_rounds({"minicnn": lambda: minicnn_step(model, x, grad),
                                    "direct": lambda: minicnn_step(model, x, grad, direct=True),
                                    "torch": lambda: torch_step(net, tx, grad)}, repeat)
            t_mc, t_pt = statistics.median(times["minicnn"]), statistics.median(times["torch"])
            work = flops * batch * (2 if grad else 1)
            print(f"{f'{label}, batch {batch}':>30} {t_mc:8.3f}s {t_pt:8.3f}s "
                  f"{ratio_summary(times['minicnn'], times['torch'])[0]:>17} "
                  f"{t_mc / batch:9.3f}s {work / t_mc / 1e9 / peak:7.0%} {work / peak / 1e9:6.3f}s   "
                  f"{'':>28} {statistics.median(times['direct']):7.3f}s "
                  f"{ratio_summary(times['direct'], times['torch'])[0]:>17}", flush=True)
    if max(args.batches) > 1:
        per_image_ratio(model, net, max(args.batches), args.repeat)
    cases = [("grad", 1, "peak RSS, batch 1, fwd+grad")]
    if args.smoothgrad_images:
        cases.append(("smoothgrad", args.smoothgrad_images, f"peak RSS, SmoothGrad-50, {args.smoothgrad_images} images"))
    for case, n, label in cases:
        ours, theirs = child_peak(__file__, "minicnn", case, n), child_peak(__file__, "torch", case, n)
        direct = child_peak(__file__, "minicnn-direct", case, n)
        print(f"{label:>30} {ours:7.0f}MB {theirs:7.0f}MB {ours / theirs:6.2f}   direct route {direct:.0f}MB "
              f"{direct / theirs:.2f}", flush=True)


if __name__ == "__main__":
    main()
