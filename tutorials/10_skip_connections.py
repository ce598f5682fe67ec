# %% [markdown]
# # 10. Skip connections
#
# A ResNet (He et al. 2016) is a chain of *residual blocks*: each computes
# `out = relu(body(x) + shortcut(x))`, where the shortcut is the identity (or
# a 1x1 convolution when the shape changes). Two things are new for the
# backward pass, and so for every attribution method:
#
# - a **sum**: `body(x) + shortcut(x)`;
# - a **fork**: x feeds both branches.
#
# This tutorial works out what the gradient does at each, runs Grad-CAM on a
# ResNet beside the VGG-style net, shows why LRP needs its own rule at the sum,
# and folds a batch norm into a convolution on numbers.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
import minicnn as mc
from attribution.lrp import canonize, composite_rules, split_sum
from minicnn.data import SHAPE_CLASSES, make_shapes
from minicnn.models import shapes_net, shapes_resnet

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)

# %% [markdown]
# ## The block's forward and backward, side by side
#
# `minicnn.Residual` is the equation. Its forward is a few lines. Its
# backward goes back through the ReLU after the sum, hands that gradient to
# both branches (LRP's rule gives each its share instead), and adds what comes
# back: the last line (assignment E asks you for it).

# %%
print(inspect.getsource(mc.Residual.forward))
print(inspect.getsource(mc.Residual.backprop))

# %% [markdown]
# ## The sum and the fork, on numbers
#
# The smallest block: the body is a 1x1 convolution of weight 2, the shortcut
# the identity, so `out = relu(2x + x)`.
#
# - **At the sum** `s = a + b`: ds/da = ds/db = 1, so the gradient arriving at
#   s goes, unchanged, to *both* summands. A sum copies the gradient.
# - **At the fork**: x was used twice, so its gradient is the *sum* of what
#   comes back along the two paths (the multivariate chain rule).
#
# Where x > 0 the block's slope is 2 (body) + 1 (shortcut) = 3.

# %%
conv = mc.Conv2d(1, 1, 1, bias=False, dtype=np.float64)
conv.params["weight"][:] = 2.0
block = mc.Residual({"conv": conv}, after={"relu": mc.ReLU()})
x = np.array([[[[1.0, -2.0], [0.5, 3.0]]]])
out = block.forward(x)
g = block.backward(np.ones_like(out))
print("x      ", x[0, 0].tolist())
print("out    ", out[0, 0].tolist(), "  = relu(2x + x)")
print("dout/dx", g[0, 0].tolist(), "  = 2 (body) + 1 (shortcut) where x > 0")
numeric = mc.numeric_vjp(block.forward, x, np.ones_like(out))
print(f"numeric gradient agrees: {np.allclose(g, numeric)}")

# %% [markdown]
# The identity path is why deep ResNets train: however small the body's
# gradient, the shortcut hands the gradient on with slope 1. On a whole
# network, the gradient arriving at a block's input is the body's share plus
# the shortcut's. Below, for each block of the small ResNet trained on the
# shapes (`shapes_resnet`: torchvision's layout, one block per stage, a
# quarter of the width), the size of the two shares.

# %%
resnet = shapes_resnet(pretrained=True)
vgg = shapes_net(pretrained=True)
quick = os.environ.get("MINICNN_QUICK") == "1"
images, labels, masks = make_shapes(8 if quick else 24, seed=11)
logits = resnet.forward(images)
print(f"shapes_resnet: {resnet.num_parameters():,} parameters, accuracy on these images "
      f"{(logits.argmax(axis=1) == labels).mean():.0%}")
dout = np.zeros_like(logits)
dout[np.arange(len(images)), labels] = 1
for stage in ("layer1", "layer2", "layer3", "layer4"):
    b = resnet[stage + ".0"]
    g_out = resnet.backward(dout, until=stage + ".0")                 # the gradient at the block's output
    g_sum = b.chain_back(b.after, g_out, mc.BackwardContext())        # back through the ReLU after the sum
    through_body = b.chain_back(b.body, g_sum, mc.BackwardContext())
    through_shortcut = b.chain_back(b.shortcut, g_sum, mc.BackwardContext())
    print(f"{stage}.0  |gradient| via body {np.abs(through_body).mean():.2e}, via shortcut "
          f"{np.abs(through_shortcut).mean():.2e} ({'downsample' if b.shortcut else 'identity'})")

# %% [markdown]
# ## Grad-CAM on a ResNet, beside the VGG-style net
#
# Grad-CAM looks by default at the rectified output of the last convolution
# (`attribution.default_cam_layer` says how it is chosen for any network). In
# a ResNet that is the output of the last block, `layer4`, the layer
# pytorch-grad-cam's README uses. But a ResNet's stem and stages divide the
# image by 32: on these 64x64 images `layer4` is a 2x2 map, `layer3` 4x4,
# where the VGG-style net's last convolution is still 8x8. Below, the share of
# each map's heat on the object, beside the share of the image the object
# covers (what a map that knew nothing would score).

# %%
print("default Grad-CAM layer: shapes_net", attr.default_cam_layer(vgg), "| shapes_resnet",
      attr.default_cam_layer(resnet))
maps = {"shapes_net features.14": attr.grad_cam(vgg, images, labels),
        "shapes_resnet layer3": attr.grad_cam(resnet, images, labels, layer="layer3"),
        "shapes_resnet layer4": attr.grad_cam(resnet, images, labels)}
area = masks.reshape(len(images), -1).mean()
for name, cam in maps.items():
    up = attr.upsample(cam, images.shape[2:])
    on = (up * masks).sum(axis=(1, 2)) / np.maximum(up.sum(axis=(1, 2)), 1e-12)
    print(f"{name:24s} map {cam.shape[1]}x{cam.shape[2]}: {100 * on.mean():.0f}% of the heat on the object "
          f"(the object covers {100 * area:.0f}% of the image)")

# %% [markdown]
# The 2x2 map of `layer4` can hardly do better than chance here: each of its
# four cells covers a quarter of the image. One stage earlier, the 4x4 map of
# `layer3` localizes; the VGG-style net, with its 8x8 map, does best. On
# ImageNet-sized inputs (224x224) `layer4` is 7x7, which is why it is the
# usual choice there. The layer is a choice that decides what the map can
# show.

# %%
show = 3
fig, axes = plt.subplots(show, 1 + len(maps), figsize=(3 * (1 + len(maps)), 3 * show))
for i in range(show):
    axes[i, 0].imshow(images[i].transpose(1, 2, 0))
    axes[i, 0].contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
    axes[i, 0].set_title(f"{SHAPE_CLASSES[labels[i]]} (mask outlined)")
    for j, (name, cam) in enumerate(maps.items()):
        axes[i, j + 1].imshow(images[i].transpose(1, 2, 0))
        axes[i, j + 1].imshow(attr.scale_01(attr.upsample(cam[i:i + 1], images.shape[2:]))[0], cmap="jet",
                              alpha=0.5, vmin=0, vmax=1)
        axes[i, j + 1].set_title(name, fontsize=9)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig(f"{FIGURES}/10_grad_cam_resnet.png", dpi=80)

# %% [markdown]
# ## LRP must split relevance at a sum
#
# LRP passes *relevance*, which should be conserved: what a layer receives, it
# hands on. A sum copies the gradient to both summands; if relevance were
# copied the same way, every block would double it. Zennit's ResNet canonizer
# instead gives the sum its own rule: each summand gets the share it
# contributed, `R_a = a R / (a + b)` (`attribution.lrp.split_sum`).
#
# Below, LRP with the `epsilon_plus_flat` composite on the batch-norm-folded
# ResNet, and the total relevance arriving at the output of each stage (and
# of the stem, `maxpool`) divided by the logit: split at the sums, copied,
# and the ratio of the two.

# %%
folded = canonize(resnet)                    # batch norm folded into the convs (next section)
rules = composite_rules(folded, "epsilon_plus_flat")
x1, t1 = images[:4], labels[:4]
logit = folded.forward(x1)[np.arange(4), t1]
start = np.zeros((4, 6))
start[np.arange(4), t1] = logit


def copy_to_both(R, summands):
    return R, R


for stage in ("layer4", "layer3", "layer2", "layer1", "maxpool"):
    split = folded.backward(start, rules=rules, sum_rule=split_sum, until=stage).reshape(4, -1).sum(axis=1)
    copied = folded.backward(start, rules=rules, sum_rule=copy_to_both, until=stage).reshape(4, -1).sum(axis=1)
    print(f"relevance at {stage:8s} / logit: split {np.mean(split / logit):5.2f}, copied {np.mean(copied / logit):5.2f}"
          f", copied / split {np.mean(copied / split):5.1f}")

# %% [markdown]
# Split, the total shrinks a little at each layer (the biases, where batch
# norm's shift now lives, and the stabilizers take a part) but never grows.
# Copied, it is the split total times about 2, 4, 8 and 16 after one, two,
# three and four blocks: each sum doubles it. An input relevance sixteen
# times too large no longer adds up to the network's output, and nothing in
# the map itself shows it.

# %% [markdown]
# ## Batch norm folded into a convolution, on numbers
#
# In eval mode a batch norm is an affine map per channel,
# `y = x * scale + shift` with `scale = gamma / sqrt(var + eps)` and
# `shift = beta - mean * scale`. After a convolution that is one convolution:
# `W' = W * scale`, `b' = b * scale + shift`. LRP's rules then see the shift
# as the conv's bias (which is why Zennit folds before applying rules).

# %%
rng = np.random.default_rng(0)
conv = mc.Conv2d(2, 2, 3, padding=1, bias=False, dtype=np.float64, rng=rng)
bn = mc.BatchNorm2d(2, dtype=np.float64)
bn.params["weight"], bn.params["bias"] = np.array([1.5, 0.5]), np.array([0.2, -1.0])
bn.buffers["running_mean"], bn.buffers["running_var"] = np.array([0.3, -0.4]), np.array([2.0, 0.25])
pair = mc.Sequential(conv, bn)
scale, shift = bn.affine()
print("scale", scale.round(4), "shift", shift.round(4))
one = canonize(pair)
print(one)
print("folded weight[0, 0] = weight[0, 0] * scale[0]:",
      np.allclose(one[0].params["weight"][0, 0], conv.params["weight"][0, 0] * scale[0]))
print("folded bias:", one[0].params["bias"].round(4))
xs = rng.standard_normal((1, 2, 4, 4))
print(f"max difference of the outputs: {np.abs(one.forward(xs) - pair.forward(xs)).max():.1e}")

# %% [markdown]
# ## DeepLIFT through the blocks
#
# DeepLIFT's multipliers pass a sum like gradients (a sum is linear), and its
# summation-to-delta holds through every block and the overlapping stem
# max-pool:

# %%
grey = np.full_like(images[:4], 0.5)
deep, delta = attr.deeplift(resnet, images[:4], labels[:4], baseline=grey, return_delta=True)
print("DeepLIFT summation error on the ResNet:", np.abs(delta).max())

# %% [markdown]
# ## Exercises
#
# 1. In the worked example, make the body's weight -2, so that the block
#    computes `relu(-2x + x) = relu(-x)`. Predict `out` and the gradient at
#    each of the four pixels before you run it: which path does the ReLU
#    after the sum now close, and does the shortcut still carry anything?
# BEGIN ANSWER
#    Where x > 0 the sum is -x < 0: the ReLU after the sum closes both paths
#    and the gradient is 0. Where x < 0 the output is -x and the gradient is
#    -2 (body) + 1 (shortcut) = -1: the shortcut still carries its +1. For x =
#    [[1, -2], [0.5, 3]]: out = [[0, 2], [0, 0]] and the gradient [[0, -1],
#    [0, 0]].
# END ANSWER
# 2. Write `residual_backward` in `tutorials/assignments/e_residual.py` and
#    grade it (`python -m attribution.grade residual ...`).
# 3. Compute Grad-CAM of `shapes_resnet` at `layer2` (8x8) and at
#    `layer1.0.relu2`. Is a finer map always better? Compare the heat on the
#    object, and look at the maps.
# BEGIN ANSWER
#    Not always. Tutorial 11 prints Grad-CAM's share on the objects at
#    `layer2` (8x8) above what this tutorial prints for `layer3` and `layer4`
#    (a test keeps the two tutorials so); but the earlier a layer, the more
#    its channels respond to edges and texture over the whole image rather
#    than to the class. Measure the share on the object, and look at the map,
#    before trusting a finer one.
# END ANSWER
