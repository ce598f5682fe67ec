"""VGG-16, float32, 224x224: minicnn vs PyTorch (random weights; speed does not depend on them).

Times, in one process with the same threads: forward, and forward + input
gradient of one logit, at batch 1 and 8 (median of --repeat runs). Then the
peak resident memory of each side for one forward + input gradient at batch 1,
each in a fresh child process so that neither counts the other.

    python benchmarks/bench_vgg16.py [--repeat 5] [--batches 1 8]
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import median_time, peak_rss_mb, threads_note  # noqa: E402

import minicnn.models as models  # noqa: E402


def minicnn_step(model, x, grad):
    logits = model.forward(x)
    if grad:
        dout = np.zeros_like(logits)
        dout[:, 1] = 1
        model.backward(dout)


def torch_model():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from test_vgg16_torch import torch_vgg
    return torch_vgg("vgg16", normalize=False)       # the bare network, like models.vgg16(normalize=False)


def torch_step(net, x, grad):
    import torch
    if not grad:
        with torch.no_grad():
            net(x)
        return
    x = x.detach().requires_grad_(True)
    net(x)[:, 1].sum().backward()


def memory_child(side):
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    if side == "minicnn":
        model = models.vgg16(normalize=False)         # the bare network, like the torch twin
        minicnn_step(model, x, True)
    else:
        import torch
        net = torch_model()
        for p in net.parameters():
            p.requires_grad_(False)       # the attribution path: no weight gradients
        torch_step(net, torch.from_numpy(x), True)
    print(f"{peak_rss_mb():.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--memory-child", choices=["minicnn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    import torch
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    model = models.vgg16(normalize=False)             # the bare network, like the torch twin
    net = torch_model()
    for p in net.parameters():
        p.requires_grad_(False)
    print(f"{'case':>26} {'minicnn':>9} {'torch':>9} {'ratio':>6}")
    for batch in args.batches:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        tx = torch.from_numpy(x)
        for grad, label in [(False, "forward"), (True, "forward + input grad")]:
            repeat = args.repeat if batch == 1 else max(2, args.repeat // 2)
            t_mc = median_time(lambda: minicnn_step(model, x, grad), repeat)
            t_pt = median_time(lambda: torch_step(net, tx, grad), repeat)
            print(f"{f'{label}, batch {batch}':>26} {t_mc:8.3f}s {t_pt:8.3f}s {t_mc / t_pt:6.2f}")
    mem = {}
    for side in ("minicnn", "torch"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", side], capture_output=True, text=True,
                             check=True)
        mem[side] = float(out.stdout.strip().splitlines()[-1])
    print(f"{'peak RSS, batch 1, fwd+grad':>26} {mem['minicnn']:7.0f}MB {mem['torch']:7.0f}MB "
          f"{mem['minicnn'] / mem['torch']:6.2f}")


if __name__ == "__main__":
    main()
