"""Each attribution method on VGG-16 (224x224, float32, batch 1): minicnn vs Captum, same process and threads.

    python benchmarks/bench_attribution.py [--repeat 3] [--samples 50] [--steps 50] [--perturbations 50] [--batch N]

Random weights (speed does not depend on them). Settled and alternating
(``common.settled_rounds``: a sleep of 0.25 s before each sample, the order of
the sides rotating): the short methods over --repeat rounds after two untimed
runs, reported as medians and the median of the per-round ratios with their
range; SmoothGrad, Integrated Gradients, LIME and KernelSHAP once each (they
are long). DeepLIFT, LRP (epsilon, as Captum's LRP), LIME and KernelSHAP
are compared with Captum, LRP epsilon-plus-flat with Zennit (when installed).
LIME and KernelSHAP use the same 49 square segments on both sides.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import (matmul_peak_gflops, ratio_summary, settled_rounds, threads_note,  # noqa: E402
                    use_native_kernels)

use_native_kernels()

import numpy as np  # noqa: E402

import attribution as attr  # noqa: E402
import minicnn.models as models  # noqa: E402


def ridge():
    """Captum's Lime with a ridge surrogate like ours (its default, a Lasso, needs scikit-learn all the same)."""
    from captum._utils.models.linear_model import SkLearnRidge
    return SkLearnRidge(alpha=1.0)


def zennit_epsilon_plus_flat(net, tx, target):
    """A callable running Zennit's EpsilonPlusFlat on net, or None without Zennit (tests/conftest.py's stub
    stands in for torchvision, which Zennit imports for two class names)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    try:
        from conftest import zennit
    except ImportError:
        zennit = None
    if zennit is None:
        return None
    import torch
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    def start(out):                           # relevance starts as the target's logit
        one_hot = torch.zeros_like(out)
        one_hot[:, target] = 1
        return one_hot * out

    def run():
        with Gradient(model=net, composite=EpsilonPlusFlat()) as attributor:
            return attributor(tx.clone().requires_grad_(True), start)[1]
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50, help="SmoothGrad samples")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of SmoothGrad, IG, LIME and KernelSHAP on both sides; by default minicnn's "
                             "own (sized by memory) and Captum's 10")
    parser.add_argument("--perturbations", type=int, default=50, help="LIME / KernelSHAP samples (model evaluations)")
    args = parser.parse_args()
    import captum.attr as ca
    import torch
    from bench_vgg16 import torch_model
    print(f"{threads_note()}; torch {torch.__version__} {torch.get_num_threads()} threads")
    ours_batch, captum_batch = args.batch, args.batch or 10
    model = models.vgg16(normalize=False)       # the bare network, like the torch twin
    from bench_vgg16 import forward_flops
    flops, peak = forward_flops(model, np.zeros((1, 3, 224, 224), np.float32)), matmul_peak_gflops()
    print(f"NumPy float32 matrix-product peak {peak:.0f} GFLOP/s; one VGG-16 forward {flops / 1e9:.1f} GFLOP. "
          f"'of peak': the products' share of minicnn's time (forwards and input gradients counted; blank for LRP, "
          f"whose rules add products of their own)")
    net = torch_model()
    for p in net.parameters():
        p.requires_grad_(False)
    for m in net.modules():                      # Captum's ReLU hooks need non-inplace ReLUs
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    tx = torch.from_numpy(x)
    target = 1
    layer = net.features[29]
    cases = [
        ("vanilla_gradient", lambda: attr.vanilla_gradient(model, x, target),
         lambda: ca.Saliency(net).attribute(tx, target=target, abs=False)),
        ("gradient_x_input", lambda: attr.gradient_x_input(model, x, target),
         lambda: ca.InputXGradient(net).attribute(tx, target=target)),
        ("deconvnet", lambda: attr.deconvnet(model, x, target),
         lambda: ca.Deconvolution(net).attribute(tx, target=target)),
        ("guided_backprop", lambda: attr.guided_backprop(model, x, target),
         lambda: ca.GuidedBackprop(net).attribute(tx, target=target)),
        ("grad_cam", lambda: attr.grad_cam(model, x, target),
         lambda: ca.LayerGradCam(net, layer).attribute(tx, target=target, relu_attributions=True)),
        ("guided_grad_cam", lambda: attr.guided_grad_cam(model, x, target, mode="nearest"),
         lambda: ca.GuidedGradCam(net, layer).attribute(tx, target=target)),
        ("deeplift", lambda: attr.deeplift(model, x, target),
         lambda: ca.DeepLift(net).attribute(tx, baselines=0 * tx, target=target)),
        ("lrp (epsilon)", lambda: attr.lrp(model, x, target, composite="epsilon", epsilon=1e-9),
         lambda: ca.LRP(net).attribute(tx, target=target)),
    ]
    zennit_case = zennit_epsilon_plus_flat(net, tx, target)
    if zennit_case is not None:
        cases.append(("lrp (eps+flat) vs zennit", lambda: attr.lrp(model, x, target), zennit_case))
    # products the size of one forward pass that each method needs (an input gradient costs one more)
    passes = {"vanilla_gradient": 2, "gradient_x_input": 2, "deconvnet": 2, "guided_backprop": 2, "grad_cam": 1,
              "guided_grad_cam": 2, "deeplift": 3, f"smoothgrad ({args.samples} samples)": 1 + 2 * args.samples,
              f"integrated_gradients ({args.steps})": 2 + 2 * args.steps,
              f"lime ({args.perturbations} samples)": 1 + args.perturbations,
              f"kernel_shap ({args.perturbations} samples)": 1 + args.perturbations}

    def row(name, times):
        t_mc, t_ca = float(np.median(times["minicnn"])), float(np.median(times["captum"]))
        share = f"{passes[name] * flops / t_mc / 1e9 / peak:7.0%}" if name in passes else ""
        print(f"{name:>28} {t_mc:8.3f}s {t_ca:8.3f}s {ratio_summary(times['minicnn'], times['captum'])[0]:>17} "
              f"{share}", flush=True)

    print(f"{'method':>28} {'minicnn':>9} {'captum':>9} {'ratio (range)':>17} {'of peak':>7}")
    for name, ours, theirs in cases:
        row(name, settled_rounds({"minicnn": ours, "captum": theirs}, args.repeat))
    long_cases = [
        (f"smoothgrad ({args.samples} samples)",
         lambda: attr.smoothgrad(attr.vanilla_gradient, model, x, target, n_samples=args.samples, stdev=0.15 * 4,
                                 batch_size=ours_batch, seed=0),
         lambda: ca.NoiseTunnel(ca.Saliency(net)).attribute(tx, nt_type="smoothgrad", nt_samples=args.samples,
                                                            nt_samples_batch_size=captum_batch, stdevs=0.15 * 4,
                                                            target=target, abs=False)),
        (f"integrated_gradients ({args.steps})",
         lambda: attr.integrated_gradients(model, x, target, steps=args.steps, method="riemann_trapezoid",
                                           batch_size=ours_batch),
         lambda: ca.IntegratedGradients(net).attribute(tx, target=target, n_steps=args.steps,
                                                       method="riemann_trapezoid",
                                                       internal_batch_size=captum_batch)),
    ]
    segments = (np.arange(224)[:, None] // 32) * 7 + np.arange(224)[None] // 32          # 7 x 7 squares
    mask = torch.from_numpy(np.broadcast_to(segments, (1, 3, 224, 224)).copy())
    n = args.perturbations
    long_cases += [
        (f"lime ({n} samples)",
         lambda: attr.lime(model, x, target, segments=segments, n_samples=n, baseline="black", batch_size=ours_batch),
         lambda: ca.Lime(net, interpretable_model=ridge()).attribute(
             tx, target=target, baselines=0.0, feature_mask=mask, n_samples=n, perturbations_per_eval=captum_batch)),
        (f"kernel_shap ({n} samples)",
         lambda: attr.kernel_shap(model, x, target, segments=segments, n_samples=n, baseline="black",
                                  batch_size=ours_batch),
         lambda: ca.KernelShap(net).attribute(tx, target=target, baselines=0.0, feature_mask=mask, n_samples=n,
                                              perturbations_per_eval=captum_batch)),
    ]
    for name, ours, theirs in long_cases:
        row(name, settled_rounds({"minicnn": ours, "captum": theirs}, rounds=1, warmup=0))


if __name__ == "__main__":
    main()
