"""minicnn Conv2d vs torch.nn.functional.conv2d on VGG-16's convolutions.

224x224 input, batch 1, float32, one process, the same threads for both.
Prints per layer: forward time, input-gradient time, and minicnn / torch ratios.

    python benchmarks/bench_conv.py [--repeat 5] [--batch 1]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import median_time, threads_note, use_native_kernels  # noqa: E402

use_native_kernels()

import numpy as np  # noqa: E402

import minicnn as mc  # noqa: E402

# (in_channels, out_channels, spatial size) of VGG-16's 13 convolutions at 224x224
VGG16_CONVS = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56),
               (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 14), (512, 512, 14),
               (512, 512, 14)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=len(VGG16_CONVS), help="only the first N layers")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    print(f"{'layer':>16} {'fwd mc':>8} {'fwd pt':>8} {'ratio':>6} {'dx mc':>8} {'dx pt':>8} {'ratio':>6}")
    rng = np.random.default_rng(0)
    totals = np.zeros(4)
    for cin, cout, size in VGG16_CONVS[:args.layers]:
        conv = mc.Conv2d(cin, cout, 3, padding=1, rng=0)
        x = rng.standard_normal((args.batch, cin, size, size)).astype(np.float32)
        dout = rng.standard_normal((args.batch, cout, size, size)).astype(np.float32)
        tw, tb = torch.from_numpy(conv.params["weight"]), torch.from_numpy(conv.params["bias"])
        tx, tdout = torch.from_numpy(x), torch.from_numpy(dout)
        conv.forward(x)
        with torch.no_grad():
            t = [median_time(lambda: conv.forward(x), args.repeat),
                 median_time(lambda: F.conv2d(tx, tw, tb, padding=1), args.repeat),
                 median_time(lambda: conv.backward(dout), args.repeat),
                 median_time(lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdout, padding=1), args.repeat)]
        totals += t
        print(f"{f'{cin}->{cout}@{size}':>16} {t[0]*1e3:7.1f}ms {t[1]*1e3:7.1f}ms {t[0]/t[1]:6.2f} "
              f"{t[2]*1e3:7.1f}ms {t[3]*1e3:7.1f}ms {t[2]/t[3]:6.2f}")
    print(f"{'total':>16} {totals[0]*1e3:7.1f}ms {totals[1]*1e3:7.1f}ms {totals[0]/totals[1]:6.2f} "
          f"{totals[2]*1e3:7.1f}ms {totals[3]*1e3:7.1f}ms {totals[2]/totals[3]:6.2f}")


if __name__ == "__main__":
    main()
