# %% [markdown]
# # 11. The CAM family
#
# Grad-CAM (tutorial 4) has many relatives: Grad-CAM++, XGrad-CAM, HiResCAM,
# LayerCAM, Eigen-CAM, Score-CAM, Ablation-CAM, ... pytorch-grad-cam ships a
# dozen. They all start the same way:
#
# 1. one forward pass, keeping the activations `A` (N, K, h, w) of a layer;
# 2. (for the gradient CAMs) one backward pass that stops at that layer,
#    giving `G`, the gradient of the target logit with respect to `A`;
# 3. **a few lines that turn (A, G) into a map** (N, h, w);
# 4. a ReLU.
#
# Only step 3 differs. This tutorial prints that step for each member, runs
# all of them on the same images and layer, and asks where and why they
# disagree. Assignment F has you write two of them.

# %%
import inspect
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from attribution import cam_family as cf
from minicnn.data import SHAPE_CLASSES, make_shapes
from minicnn.models import shapes_net, shapes_resnet

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)

vgg = shapes_net(pretrained=True)
resnet = shapes_resnet(pretrained=True)
images, labels, masks = make_shapes(8, seed=11)
print("classes:", [SHAPE_CLASSES[c] for c in labels])
print("VGG-style net predicts them all:", bool((vgg.forward(images).argmax(axis=1) == labels).all()),
      " ResNet:", bool((resnet.forward(images).argmax(axis=1) == labels).all()))
print(f"the objects cover {masks.mean():.0%} of the images: the chance level for 'heat on the object'")

# %% [markdown]
# ## Steps 1, 2 and 4: the mechanism
#
# `cf.cam(model, x, target, layer, weighting)` is every gradient CAM. It asks
# `activations_and_gradients` for A and G, then applies the ReLU to whatever
# the weighting returns:

# %%
print(inspect.getsource(cf.activations_and_gradients).split('"""')[-1])
print(inspect.getsource(cf._weighted).split('"""')[-1])

# %% [markdown]
# ## Step 3: the line that differs
#
# Each weighting is a function `(A, G) -> (N, h, w)`. Here is the line that
# makes each one (the last line of its source):

# %%
GRADIENT_CAMS = ["grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "grad_cam_elementwise", "layer_cam",
                 "eigen_cam", "eigen_grad_cam"]


def last_line(function):
    """The last line of code of a function (not a comment)."""
    code = [line.strip() for line in inspect.getsource(function).splitlines() if not line.strip().startswith("#")]
    return code[-1]


def lines(function, *starts):
    """The lines of ``function``'s source that start with one of ``starts``."""
    return [line.strip() for line in inspect.getsource(function).splitlines() if line.strip().startswith(starts)]


for name in GRADIENT_CAMS:
    print(f"{name:22s} {last_line(cf.WEIGHTINGS[name])}")
print(f"{'':22s} where Grad-CAM++'s {(lines(cf.grad_cam_plus_plus_map, 'a = G') or ['a: yours (assignment F)'])[0]}")
print(f"{'':22s} and first_component: {'; '.join(lines(cf.first_component, 'vt =', 'p ='))}")

# %% [markdown]
# Reading them side by side:
#
# - **Grad-CAM** averages G over the positions: one weight per channel.
# - **Grad-CAM++** also gives one weight per channel, but sums only the
#   *positive* gradients, each scaled by `a = G^2 / (2 G^2 + sum(A) G^3)`.
# - **XGrad-CAM** averages G weighted by where the channel is active.
# - **HiResCAM** does not average at all: `G * A` position by position.
# - **Grad-CAM element-wise** and **LayerCAM** also keep every position, but
#   drop negative evidence before summing over the channels (`relu(G * A)`,
#   `relu(G) * A`).
# - **Eigen-CAM** ignores G and the class: the first principal component of
#   the activations. EigenGrad-CAM does the same on `G * A`.
#
# Two more weigh each channel by *forward passes* instead of a gradient:
# **Score-CAM** masks the image with each upsampled channel and scores the
# masked copy; **Ablation-CAM** sets each channel to zero and measures how
# much the target logit drops.

# %%
print("score_cam:   ", "\n              ".join(lines(cf.score_cam, "masked =", "scores[n", "weights =")))
print("ablation_cam:", "\n              ".join(lines(cf.ablation_cam, "stand_in.out[", "ablated_scores[n", "weights =")))

# %% [markdown]
# ## All of them, on the same images and layer
#
# First the VGG-style net's last convolution, then a ResNet's `layer2` (its
# second stage of residual blocks). For each method: the share of the
# upsampled map's heat that lies on the object, and how closely its map
# follows Grad-CAM's (the mean correlation over the images). Score-CAM is the
# registry's version, which scores the masked copies by probability (see
# below).

# %%
METHODS = GRADIENT_CAMS + ["score_cam", "ablation_cam"]


def run(model, layer, name):
    if name == "score_cam":
        return cf.score_cam(model, images, labels, layer, score="probability")
    return getattr(cf, name)(model, images, labels, layer)


def on_object(maps):
    up = attr.upsample(maps, images.shape[2:], "bilinear")
    return np.mean([(u * m).sum() / u.sum() for u, m in zip(up, masks)])


def correlation(a, b):
    return np.mean([np.corrcoef(u.ravel(), v.ravel())[0, 1] for u, v in zip(a, b)])


results = {}
for label, model, layer in (("VGG features.14", vgg, "features.14"), ("ResNet layer2", resnet, "layer2")):
    maps = {name: run(model, layer, name) for name in METHODS}
    results[label] = maps
    print(f"{label}: maps {maps['grad_cam'].shape[1]}x{maps['grad_cam'].shape[2]}")
    for name in METHODS:
        print(f"  {name:22s} {on_object(maps[name]):4.0%} of the heat on the object, "
              f"correlation with Grad-CAM {correlation(maps[name], maps['grad_cam']):5.2f}")

# %% [markdown]
# Every map is scaled to [0, 1] on its own in the figure (as pytorch-grad-cam
# shows them): compare where the heat is, not how bright it is. The white
# line is the object's outline.

# %%
TITLES = {"grad_cam": "Grad-CAM", "grad_cam_plus_plus": "Grad-CAM++", "xgrad_cam": "XGrad-CAM",
          "hires_cam": "HiResCAM", "grad_cam_elementwise": "element-wise", "layer_cam": "LayerCAM",
          "eigen_cam": "Eigen-CAM", "eigen_grad_cam": "EigenGrad-CAM", "score_cam": "Score-CAM",
          "ablation_cam": "Ablation-CAM"}
n = 0
fig, axes = plt.subplots(2, len(METHODS) + 1, figsize=(2 * (len(METHODS) + 1), 4.4))
for row, (label, maps) in enumerate(results.items()):
    axes[row, 0].imshow(images[n].transpose(1, 2, 0))
    axes[row, 0].set_title(label, fontsize=8)
    for col, name in enumerate(METHODS, start=1):
        heat = attr.scale_01(attr.upsample(maps[name][n:n + 1], images.shape[2:], "bilinear"))[0]
        axes[row, col].imshow(images[n].transpose(1, 2, 0))
        axes[row, col].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[row, col].contour(masks[n], levels=[0.5], colors="white", linewidths=0.8)
        axes[row, col].set_title(TITLES[name], fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(FIGURES, "11_cam_family.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "11_cam_family.png"))

# %% [markdown]
# On the VGG-style net the gradient CAMs are nearly the same map. On the
# ResNet's `layer2` they are not. The rest of this tutorial takes the
# differences apart.
#
# ## Where the gradient is flat, the averaging changes nothing
#
# A ResNet's `layer4` feeds a global average pool and then the classifier,
# so the target logit is `sum_k w_k mean(A_k)` plus a bias: its gradient
# `G_k = w_k / (h w)` is the same at every position. Averaging a constant
# changes nothing, so Grad-CAM, HiResCAM and XGrad-CAM give the *same* map
# there (Draelos & Carin's observation, and the original CAM of Zhou et al.).

# %%
A4, G4, *_ = cf.activations_and_gradients(resnet, images, labels, "layer4")
print("layer4: G constant over the positions:", bool(np.allclose(G4, G4.mean(axis=(2, 3), keepdims=True))))
base = cf.grad_cam(resnet, images, labels, "layer4")
for name in ("hires_cam", "xgrad_cam"):
    other = getattr(cf, name)(resnet, images, labels, "layer4")
    print(f"layer4: {name} vs grad_cam, max relative difference {np.abs(other - base).max() / base.max():.1e}")

# %% [markdown]
# ## Negative gradients
#
# Inside the network the gradient changes sign from position to position.
# Grad-CAM's average lets positive and negative evidence cancel before the
# channel is weighted; HiResCAM keeps the sign position by position; LayerCAM
# and element-wise Grad-CAM throw negative evidence away. When about half of
# the gradient is negative, these are different maps:

# %%
for label, model, layer in (("VGG features.14", vgg, "features.14"), ("ResNet layer2", resnet, "layer2")):
    A, G, *_ = cf.activations_and_gradients(model, images, labels, layer)
    alpha = G.mean(axis=(2, 3))
    print(f"{label}: {(G < 0).mean():.0%} of the gradient entries are negative, "
          f"{(alpha < 0).mean():.0%} of Grad-CAM's channel weights")

# %% [markdown]
# ## The Grad-CAM++ weights
#
# Grad-CAM++ sums `relu(G) * a` over the positions: a channel whose gradient
# is negative everywhere gets weight 0, where Grad-CAM gives it a negative
# weight that *subtracts* its activation from the map. Where the gradient is
# flat (`layer4`, G = g at every position), the weight is
# `h w g / (2 + sum(A) g)` for g > 0 (and a 1e-6 in the denominator): when
# `sum(A) g` is small it is just `h w / 2` times Grad-CAM's weight, so
# Grad-CAM++ there is Grad-CAM without the negative channels.

# %%
w_pp = (np.maximum(G4, 0) * np.where(G4 != 0, G4 ** 2 / (2 * G4 ** 2 + A4.sum(axis=(2, 3), keepdims=True) * G4 ** 3
                                                       + 1e-6), 0)).sum(axis=(2, 3))
w_gc = G4.mean(axis=(2, 3))
print(f"layer4: Grad-CAM weights < 0: {(w_gc < 0).mean():.0%} of the channels; Grad-CAM++ gives all of them 0: "
      f"{bool((w_pp[w_gc < 0] == 0).all())}")
positive = w_gc > 0
print(f"layer4: sum(A) g over the positive channels, median {np.median((A4.sum(axis=(2, 3)) * w_gc)[positive]):.2f}")
ranks = np.mean([np.corrcoef(np.argsort(np.argsort(w_gc[n][positive[n]])),
                             np.argsort(np.argsort(w_pp[n][positive[n]])))[0, 1] for n in range(len(images))])
print(f"layer4: rank correlation of the two weights over the positive channels {ranks:.3f}")
pp4 = cf.grad_cam_plus_plus(resnet, images, labels, "layer4")
positive_only = cf.cam(resnet, images, labels, "layer4", lambda A, G: np.einsum(
    "nk,nkhw->nhw", np.maximum(G.mean(axis=(2, 3)), 0), A))
print(f"layer4: Grad-CAM++ vs Grad-CAM without its negative channels: correlation "
      f"{correlation(pp4, positive_only):.3f}, vs Grad-CAM: {correlation(pp4, base):.3f}")

# %% [markdown]
# ## Score-CAM: which score?
#
# Score-CAM masks the image with each channel and asks the model about the
# masked copy. The masked copies are mostly black, and a model may have
# never seen such images: ours calls a black image a circle, with a logit far
# beyond any it gives a real picture.

# %%
black = vgg.forward(np.zeros_like(images[:1]))[0]
real = vgg.forward(images).max(axis=1)
print(f"black image: {SHAPE_CLASSES[black.argmax()]} at logit {black.max():.0f}; "
      f"the real images' top logits: {real.min():.0f} to {real.max():.0f}")
for score in ("logit", "probability"):
    maps = cf.score_cam(vgg, images, labels, "features.14", score=score)
    print(f"Score-CAM scored by {score:11s}: {on_object(maps):4.0%} of the heat on the object")

# %% [markdown]
# Scored by the logit (pytorch-grad-cam's default), the channels that black
# out most of the image win the softmax over channels, and the map lights up
# the background. The paper scores by the target's *probability*, which is
# bounded: that is the version in `attribution.METHODS`.
#
# ## Eigen-CAM does not look at the class
#
# Eigen-CAM often puts the most heat on the object (see the table), but it
# reads no gradient and no target: it shows what the layer responds to most,
# whatever you ask about. Grad-CAM changes with the class.

# %%
other = (labels + 1) % len(SHAPE_CLASSES)
same = np.array_equal(cf.eigen_cam(vgg, images, labels, "features.14"), cf.eigen_cam(vgg, images, other, "features.14"))
print("Eigen-CAM for the true class and for another class: identical:", same)
a, b = cf.grad_cam(vgg, images, labels, "features.14"), cf.grad_cam(vgg, images, other, "features.14")
print(f"Grad-CAM for the true class and for another class: correlation {correlation(a, b):.2f}")

# %% [markdown]
# A principal component has no sign of its own: `first_component` picks the
# one whose map correlates positively with the channel sum (for
# EigenGrad-CAM, with HiResCAM's map). That is a convention, and where the
# first component is about something else it can point the wrong way. The
# EigenGrad-CAM panel of the ResNet in the figure lights the background:

# %%
A2, G2, *_ = cf.activations_and_gradients(resnet, images[:1], labels[:1], "layer2")
p = cf.first_component(G2 * A2)
for sign in (1, -1):
    print(f"EigenGrad-CAM, ResNet layer2, image 0, sign {sign:+d}: {on_object(np.maximum(sign * p, 0)):.0%} of the "
          f"heat on the object (the sum it follows: {correlation(sign * p, (G2 * A2).sum(axis=1)):+.2f})")

# %% [markdown]
# ## The cost
#
# A gradient CAM costs one forward pass and a backward pass that stops at the
# layer. Score-CAM and Ablation-CAM run the network once per channel and
# image. Counting the images that pass the network's first layer and its
# last:

# %%
def count_images(model, method):
    """(images through the first layer, images through the last layer, seconds) while ``method`` runs."""
    names = [name for name, layer in model.named_layers()]
    seen = {names[0]: 0, names[-1]: 0}
    layers = {name: model[name] for name in seen}
    for name, layer in layers.items():
        def counted(x, forward=layer.forward, name=name):
            seen[name] += len(x)
            return forward(x)
        layer.forward = counted                             # an instance attribute: this model only
    try:
        start = time.perf_counter()
        method()
        elapsed = time.perf_counter() - start
    finally:
        for layer in layers.values():
            del layer.forward
    return seen[names[0]], seen[names[-1]], elapsed


for name in ("grad_cam", "layer_cam", "score_cam", "ablation_cam"):
    first, last, seconds = count_images(vgg, lambda: run(vgg, "features.14", name))
    print(f"{name:13s} images through the first layer {first:4d}, through the last {last:4d}, for "
          f"{len(images)} images ({seconds * 1e3:.0f} ms here)")
print("channels at features.14:", cf.activations_and_gradients(vgg, images[:1], None, "features.14", False)[0].shape[1])

# %% [markdown]
# Score-CAM: 8 images x 64 channels of masked copies through the whole
# network, plus the first pass. Ablation-CAM ablates a channel *at* the
# layer, so the layers before it would compute the same activations for
# every copy: here it runs them once and sends the 512 ablated copies through
# the rest of the network only (`cf.rest_of`; pytorch-grad-cam runs the whole
# network each time). On a ResNet-50's last stage (2048 channels) either is
# 2048 passes per image.
#
# ## A weighting of your own
#
# Any function `(A, G) -> (N, h, w)` is one more member. Here: the positive
# part of Grad-CAM's weights (a channel with negative evidence is left out,
# rather than subtracted).

# %%
def positive_grad_cam_map(A, G):
    return np.einsum("nk,nkhw->nhw", np.maximum(G.mean(axis=(2, 3)), 0), A)


mine = cf.cam(resnet, images, labels, "layer2", positive_grad_cam_map)
print(f"positive Grad-CAM on ResNet layer2: {on_object(mine):.0%} of the heat on the object, correlation with "
      f"Grad-CAM {correlation(mine, results['ResNet layer2']['grad_cam']):.2f}")

# %% [markdown]
# Leaving the negative channels out moves heat *off* the object here
# (compare Grad-CAM's share in the table above): much of what Grad-CAM
# subtracts lies off the object.
#
# And any CAM gets a guided version (Guided Backprop times the upsampled map,
# as Guided Grad-CAM): `cf.guided(cf.layer_cam, model, x)`.
#
# ## Questions
#
# 1. Why are Grad-CAM, HiResCAM and XGrad-CAM equal at `layer4` but not at
#    `layer2`? Which layer of the VGG-style net would make them equal?
# BEGIN ANSWER
#    After `layer4` come a *global* average pool and a linear layer, so the
#    gradient at `layer4` is the same at every position: averaging it changes
#    nothing, and XGrad-CAM's sum(G A) / sum(A) is that constant too. Before
#    `layer2`'s output reaches the pool it passes later convolutions and
#    ReLUs, and the gradient varies from position to position. No layer of
#    the VGG-style net does it: its average pool keeps a 4x4 grid and the
#    classifier has a weight for each cell, so the gradient varies across the
#    grid (at `features.14` it is constant only inside each 2x2 block the pool
#    merges).
# END ANSWER
# 2. A channel has a negative Grad-CAM weight. What does it do to the
#    Grad-CAM map, and to the Grad-CAM++ map?
# BEGIN ANSWER
#    In Grad-CAM it is subtracted: where that channel is active the weighted
#    sum is lowered, possibly below 0, where the ReLU cuts it. Grad-CAM++
#    weighs a channel by relu(G) only, so a channel whose gradient is negative
#    everywhere gets weight 0 (the tutorial checks it at `layer4`): Grad-CAM++
#    never subtracts a channel.
# END ANSWER
# 3. Eigen-CAM puts the most heat on the object here. Why is that not
#    evidence that it explains the model's decision? (Hint: run it for a
#    class the model did not predict.)
# BEGIN ANSWER
#    It reads no gradient and no target: its map is the same for every class
#    (printed above). It shows where the layer's activations vary most, which
#    on these one-object images is the object, whatever the model decides. On
#    two-object images (`attribution evaluate`) its class sensitivity is 0.50,
#    chance.
# END ANSWER
# 4. Score-CAM with logits lights up the background on this model. What
#    property of the model causes it, and would it on a model trained with
#    black images labelled "nothing"?
# BEGIN ANSWER
#    The masked copies are mostly black, and this model calls a black image a
#    circle with a logit (175) above any real image's; the softmax over the
#    channels then gives the weight to the channels that black out most of the
#    image, those active off the object. A model that had learned black
#    images as "nothing" would give them low logits for every shape, so the
#    masked copies would score by what they keep; the effect should vanish (a
#    question to test, not a measured fact here).
# END ANSWER
#
# Then write `layer_cam` and `grad_cam_plus_plus` in
# `tutorials/assignments/f_cam_weightings.py` and grade them:
#
#     python -m attribution.grade cam_weightings tutorials/assignments/f_cam_weightings.py
