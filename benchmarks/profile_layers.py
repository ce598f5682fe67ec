"""Where the time goes, per layer type: minicnn's forward + input gradient against PyTorch's own profile.

minicnn: every layer's forward and backward are timed (a wrapper on each layer object, in this script only),
and the times summed per layer type. PyTorch: ``torch.profiler`` on the same network, its operators' self
CPU time summed into the same types. Float32, random weights, batch 1 by default, the median of settled
rounds (a 0.25 s rest before each). Convolutions are split by kernel size, so the 3x3 ones (Winograd's) and
the glue between them (ReLU, pooling, batch norm, the linear layers) are visible.

    python benchmarks/profile_layers.py [--model vgg16|resnet50] [--batch 1] [--rounds 3]
"""
import argparse
import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import SETTLE, threads_note, use_native_kernels  # noqa: E402

use_native_kernels()

import numpy as np  # noqa: E402

import minicnn as mc  # noqa: E402
import minicnn.models as models  # noqa: E402

# PyTorch operator -> the layer type it belongs to (forward, backward); others go to "other".
TORCH_TYPES = {"aten::mkldnn_convolution": "conv", "aten::convolution_backward": "conv",
               "aten::thnn_conv2d": "conv", "aten::_slow_conv2d_forward": "conv",
               "aten::relu": "ReLU", "aten::clamp_min": "ReLU", "aten::relu_": "ReLU", "aten::clamp_min_": "ReLU",
               "aten::threshold_backward": "ReLU",
               "aten::max_pool2d_with_indices": "MaxPool2d", "aten::max_pool2d_with_indices_backward": "MaxPool2d",
               "aten::native_batch_norm": "BatchNorm2d", "aten::_native_batch_norm_legit_no_training": "BatchNorm2d",
               "aten::native_batch_norm_backward": "BatchNorm2d", "aten::addmm": "Linear", "aten::mm": "Linear",
               "aten::_adaptive_avg_pool2d": "AdaptiveAvgPool2d",
               "aten::_adaptive_avg_pool2d_backward": "AdaptiveAvgPool2d", "aten::add_": "residual sum",
               "aten::add": "residual sum"}


def layer_type(layer):
    if isinstance(layer, mc.Conv2d):
        return f"conv {layer.kernel_size[0]}x{layer.kernel_size[1]}"
    return type(layer).__name__


def minicnn_profile(model, x, rounds):
    """{type: [forward seconds, backward seconds]}, medians over settled rounds of forward + input gradient."""
    totals = collections.defaultdict(lambda: [0.0, 0.0])

    def timed(layer, method, slot):
        original = getattr(layer, method)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[layer_type(layer)][slot] += time.perf_counter() - start
        setattr(layer, method, wrapper)
    for _, layer in model.named_layers():
        timed(layer, "forward", 0)
        timed(layer, "backprop", 1)
    dout = np.zeros((len(x), model.forward(x).shape[1]), x.dtype)
    dout[:, 1] = 1
    runs = []
    for _ in range(rounds + 1):
        totals.clear()
        time.sleep(SETTLE)
        model.forward(x)
        model.backward(dout)
        runs.append({k: tuple(v) for k, v in totals.items()})
    runs = runs[1:]                                                        # the first run warms up
    return {k: [statistics.median(r[k][i] for r in runs) for i in (0, 1)] for k in runs[0]}


def torch_profile(net, x, rounds):
    """{type: seconds} of PyTorch's forward + input gradient, its operators' self CPU time, median of rounds."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    tx = torch.from_numpy(x)
    runs = []
    for _ in range(rounds + 1):
        time.sleep(SETTLE)
        xi = tx.clone().requires_grad_()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = net(xi)
            out[:, 1].sum().backward()
        run = collections.Counter()
        for event in prof.key_averages():
            run[TORCH_TYPES.get(event.key, "other")] += event.self_cpu_time_total / 1e6
        runs.append(run)
    runs = runs[1:]
    return {k: statistics.median(r[k] for r in runs) for k in set().union(*runs)}


def twins(name):
    """(the minicnn model, its PyTorch twin): the networks bench_vgg16.py and bench_resnet50.py time."""
    if name == "vgg16":
        import bench_vgg16
        return models.vgg16(normalize=False), bench_vgg16.torch_model()
    import bench_resnet50
    return bench_resnet50.minicnn_model(), bench_resnet50.torch_model()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vgg16", "resnet50"], default="vgg16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    model, net = twins(args.model)
    for p in net.parameters():
        p.requires_grad_(False)
    x = np.random.default_rng(0).random((args.batch, 3, 224, 224), dtype=np.float32)
    ours = minicnn_profile(model, x, args.rounds)
    theirs = torch_profile(net, x, args.rounds)
    print(f"{args.model}, batch {args.batch}, forward + input gradient, seconds (medians of {args.rounds} rounds)")
    print(f"{'layer type':>20} {'minicnn fwd':>12} {'bwd':>8} {'total':>8}   {'PyTorch type':>18} {'total':>8}")
    for kind, (f, b) in sorted(ours.items(), key=lambda kv: -sum(kv[1])):
        torch_kind = "conv" if kind.startswith("conv") else kind
        shown = f"{theirs.get(torch_kind, 0):8.3f}" if torch_kind in theirs and not kind.startswith("conv") else ""
        print(f"{kind:>20} {f:12.3f} {b:8.3f} {f + b:8.3f}   {torch_kind if shown else '':>18} {shown:>8}")
    conv = sum(f + b for k, (f, b) in ours.items() if k.startswith("conv"))
    print(f"{'all convolutions':>20} {'':>12} {'':>8} {conv:8.3f}   {'conv':>18} {theirs.get('conv', 0):8.3f}")
    print(f"{'everything':>20} {'':>12} {'':>8} {sum(sum(v) for v in ours.values()):8.3f}   {'(all operators)':>18} "
          f"{sum(theirs.values()):8.3f}")
    print(f"PyTorch, other operators: {theirs.get('other', 0):.3f} s")


if __name__ == "__main__":
    main()
