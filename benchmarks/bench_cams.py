"""Score-CAM and Ablation-CAM (one forward pass per channel) and Grad-CAM++: minicnn vs pytorch-grad-cam 1.5.7.

    python benchmarks/bench_cams.py [--rounds 3] [--size 112] [--layer layer4]

The same ResNet-18 (random weights and batch-norm statistics, float32, one
image) on both sides, at ``--layer``; settled and alternating rounds
(``common.settled_rounds``: a pause of 0.25 s before each timed sample, the
order of the sides rotating), the median of the per-round ratios with their
range. Each side's whole call: ours the map at the layer's resolution,
pytorch-grad-cam's ``cam(input_tensor, targets)`` (its resize and scaling,
a few microseconds, included). Batch sizes: each library's own default
(ours sized by memory, ``batch_for``; ScoreCAM 16, AblationCAM 32).
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault("TQDM_DISABLE", "1")                    # pytorch-grad-cam's progress bars
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from common import ratio_summary, settled_rounds, threads_note, use_native_kernels  # noqa: E402

use_native_kernels()

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--layer", default="layer4")
    args = parser.parse_args()
    import torch
    from torch_resnet import install_torchvision_stub, to_minicnn, torch_resnet
    install_torchvision_stub()
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from attribution import cam_family as cf
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    net = torch_resnet("basic", [2, 2, 2, 2], width=1.0, num_classes=1000, seed=0, dtype=torch.float32)
    model = to_minicnn(net, "basic", [2, 2, 2, 2], 1.0, 1000).to(np.float32)
    x = np.random.default_rng(0).random((1, 3, args.size, args.size)).astype(np.float32)
    tx, target = torch.from_numpy(x), int(model.forward(x).argmax())
    module = net.get_submodule(args.layer)
    cases = [("Grad-CAM++", cf.grad_cam_plus_plus, pgc.GradCAMPlusPlus),
             ("Score-CAM", cf.score_cam, pgc.ScoreCAM), ("Ablation-CAM", cf.ablation_cam, pgc.AblationCAM)]
    channels = model.outputs[args.layer].shape[1]                      # from the forward pass just made
    print(f"ResNet-18 at {args.size}x{args.size}, layer {args.layer} ({channels} channels), batch 1")
    print(f"{'method':>14} {'minicnn':>9} {'grad-cam':>9}  ratio: median (range over {args.rounds} rounds)")
    for title, ours, theirs_class in cases:
        theirs = theirs_class(model=net, target_layers=[module])
        times = settled_rounds({"minicnn": lambda: ours(model, x, target, args.layer),
                                "grad-cam": lambda: theirs(input_tensor=tx, targets=[ClassifierOutputTarget(target)])},
                               args.rounds, warmup=1)
        summary, _ = ratio_summary(times["minicnn"], times["grad-cam"])
        print(f"{title:>14} {statistics.median(times['minicnn']):8.3f}s {statistics.median(times['grad-cam']):8.3f}s"
              f"  {summary}", flush=True)


if __name__ == "__main__":
    main()
