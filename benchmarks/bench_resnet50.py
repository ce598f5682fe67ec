"""ResNet-50, float32, 224x224: minicnn vs PyTorch (random weights; speed does not depend on them).

Settled and alternating (``common.settled_rounds``): each sample after a sleep of 0.25 s, the two sides
rotating; the figures are medians of per-round ratios with their spread. Cases: forward + input gradient of
one logit at batch 1 and 8 (weights frozen on the torch side, as attribution needs), and forward alone;
then peak resident memory of one forward + input gradient at batch 1, each side in a fresh child process;
with --smoothgrad-images N, SmoothGrad-50 on N images against Captum's NoiseTunnel (time and memory). Every
case also times minicnn with the Winograd route off ("direct route"), in the same rounds.

    python benchmarks/bench_resnet50.py [--rounds 5] [--batches 1 8] [--smoothgrad-images 1]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import (child_peak, minicnn_step, peak_rss_mb, ratio_summary, route, settled_rounds,  # noqa: E402
                    threads_note, torch_step, use_native_kernels)

use_native_kernels()

import numpy as np  # noqa: E402

import minicnn.models as models  # noqa: E402


def minicnn_model():
    return models.resnet50(normalize=False)             # the bare network, like the torch twin


def torch_model():
    import torch
    from torch_resnet import torch_resnet
    net = torch_resnet("bottleneck", [3, 4, 6, 3], width=1.0, num_classes=1000, dtype=torch.float32)
    for p in net.parameters():
        p.requires_grad_(False)                        # the attribution path: no weight gradients
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False                          # Captum's NoiseTunnel(Saliency) needs it too
    return net


def smoothgrad_minicnn(model, x):
    import attribution as attr
    attr.smoothgrad(attr.vanilla_gradient, model, x, 1, n_samples=50, stdev=0.15, seed=0)


def smoothgrad_captum(net, x):
    import captum.attr as ca
    import torch
    ca.NoiseTunnel(ca.Saliency(net)).attribute(torch.from_numpy(x), nt_type="smoothgrad", nt_samples=50,
                                               nt_samples_batch_size=10, stdevs=0.15, target=1, abs=False)


def memory_child(side, case, n_images):
    """Peak RSS of one case in this fresh process; prints MB."""
    x = np.random.default_rng(0).random((n_images, 3, 224, 224)).astype(np.float32)
    if side.startswith("minicnn"):                    # minicnn, or minicnn-direct: the Winograd route off
        model = minicnn_model()
        with route(side == "minicnn-direct"):
            minicnn_step(model, x, True) if case == "grad" else smoothgrad_minicnn(model, x)
    else:
        import torch
        net = torch_model()
        torch_step(net, torch.from_numpy(x), True) if case == "grad" else smoothgrad_captum(net, x)
    print(f"{peak_rss_mb():.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--smoothgrad-images", type=int, default=0)
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        side, case, n = args.memory_child
        return memory_child(side, case, int(n))
    import torch
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    model, net = minicnn_model(), torch_model()
    print(f"{'case':>32} {'minicnn':>9} {'torch':>9}  ratio: median (spread over {args.rounds} rounds)   "
          f"direct route (no Winograd): time, ratio")
    for batch in args.batches:
        x = np.random.default_rng(0).random((batch, 3, 224, 224)).astype(np.float32)
        tx = torch.from_numpy(x)
        for grad, label in [(True, "forward + input grad"), (False, "forward")]:
            times = settled_rounds({"minicnn": lambda: minicnn_step(model, x, grad),
                                    "direct": lambda: minicnn_step(model, x, grad, direct=True),
                                    "torch": lambda: torch_step(net, tx, grad)}, args.rounds)
            summary, _ = ratio_summary(times["minicnn"], times["torch"])
            print(f"{f'{label}, batch {batch}':>32} {statistics.median(times['minicnn']):8.3f}s "
                  f"{statistics.median(times['torch']):8.3f}s  {summary:<17}   "
                  f"{statistics.median(times['direct']):8.3f}s {ratio_summary(times['direct'], times['torch'])[0]}",
                  flush=True)
    ours, theirs = child_peak(__file__, "minicnn", "grad", 1), child_peak(__file__, "torch", "grad", 1)
    direct = child_peak(__file__, "minicnn-direct", "grad", 1)
    print(f"{'peak RSS, batch 1, fwd+grad':>32} {ours:7.0f}MB {theirs:7.0f}MB  {ours / theirs:.2f}   direct route "
          f"{direct:.0f}MB {direct / theirs:.2f}", flush=True)
    if args.smoothgrad_images:
        x = np.random.default_rng(1).random((args.smoothgrad_images, 3, 224, 224)).astype(np.float32)
        def smoothgrad_direct():
            with route(direct=True):
                smoothgrad_minicnn(model, x)
        times = settled_rounds({"minicnn": lambda: smoothgrad_minicnn(model, x), "direct": smoothgrad_direct,
                                "torch": lambda: smoothgrad_captum(net, x)}, max(2, args.rounds // 2))
        summary, _ = ratio_summary(times["minicnn"], times["torch"])
        n = args.smoothgrad_images
        print(f"{f'SmoothGrad-50, {n} image(s)':>32} {statistics.median(times['minicnn']):8.2f}s "
              f"{statistics.median(times['torch']):8.2f}s  {summary:<17}   {statistics.median(times['direct']):8.2f}s "
              f"{ratio_summary(times['direct'], times['torch'])[0]}", flush=True)
        ours = child_peak(__file__, "minicnn", "smoothgrad", n)
        theirs = child_peak(__file__, "torch", "smoothgrad", n)
        print(f"{'peak RSS, SmoothGrad-50':>32} {ours:7.0f}MB {theirs:7.0f}MB  {ours / theirs:.2f}", flush=True)


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"({time.time() - start:.0f} s)", file=sys.stderr)
