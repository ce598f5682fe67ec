# %% [markdown]
# # 7. VGG-16 on a photo
#
# The real thing: torchvision's VGG-16 weights, converted to NumPy, explaining
# a photo of Grace Hopper (it ships with matplotlib). Getting the weights once,
# on a machine with internet:
#
#     python -m minicnn download vgg16
#
# which fetches `vgg16-397923af.pth` (528 MB), checks its SHA-256 and converts
# it to `~/.cache/minicnn/vgg16-397923af.npz`. If the weights are not there,
# this tutorial says so and goes on with random weights. That is a lesson in
# itself (Adebayo et al. 2018, "Sanity checks for saliency maps"): look at
# what the methods draw for a network that has learned nothing. Guided
# Backprop still draws Grace Hopper's face and uniform, because its rule
# mostly reconstructs the image's edges; a map that looks right need not
# explain the model.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cbook

import attribution as attr
from attribution.visualize import max_abs
from minicnn.hub import pretrained
from minicnn.imagenet import decode_predictions, preprocess
from minicnn.models import vgg16

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)

# %%
try:
    model = pretrained("vgg16")
    print("loaded torchvision's ImageNet weights from the cache")
    trained = True
except FileNotFoundError as e:
    print(e)
    print("-> continuing with RANDOM weights: whatever a map shows now, the network did not learn it")
    model = vgg16()
    trained = False
print(f"{model.num_parameters():,} parameters")

# %% [markdown]
# ImageNet preprocessing, as torchvision does it: shorter side to 256,
# centre crop 224, scale to [0, 1]. The normalization with the ImageNet mean
# and std is the model's first layer (`model["normalize"]`), so `x` stays the
# picture itself: a gradient with respect to `x` is a gradient with respect to
# the pixels.

# %%
with cbook.get_sample_data("grace_hopper.jpg") as f:
    x = preprocess(f)
print("input", x.shape, x.dtype, "range", x.min().round(2), "to", x.max().round(2))

# %%
start = time.perf_counter()
logits = model.forward(x)
print(f"forward: {time.perf_counter() - start:.2f} s")
for index, name, p in decode_predictions(logits, top=5)[0]:
    print(f"  {index:4d} {name:30s} {p:.1%}")
target = int(logits.argmax())

# %% [markdown]
# Vanilla Gradient, Guided Backprop and Grad-CAM at `features.29` (14x14).

# %%
start = time.perf_counter()
vanilla = attr.vanilla_gradient(model, x, target)
guided = attr.guided_backprop(model, x, target)
cam = attr.grad_cam(model, x, target)
print(f"three maps in {time.perf_counter() - start:.2f} s; grad-cam {cam.shape}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3.5))
image = x[0].transpose(1, 2, 0)                 # (H, W, 3) in [0, 1]: the model normalizes inside
axes[0].imshow(image)
axes[0].set_title(decode_predictions(logits, 1)[0][0][1] + ("" if trained else " (random weights)"))
axes[1].imshow(max_abs(vanilla)[0], cmap="gray", vmax=np.percentile(max_abs(vanilla), 99))
axes[1].set_title("Vanilla Gradient")
axes[2].imshow(max_abs(guided)[0], cmap="gray", vmax=np.percentile(max_abs(guided), 99))
axes[2].set_title("Guided Backprop")
axes[3].imshow(image)
axes[3].imshow(attr.scale_01(attr.upsample(cam, (224, 224)))[0], cmap="jet", alpha=0.5)
axes[3].set_title("Grad-CAM")
for ax in axes:
    ax.axis("off")
fig.savefig(os.path.join(FIGURES, "07_vgg16.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "07_vgg16.png"))

# %% [markdown]
# How much of each map is simply the photo's edges? The correlation of each
# map with the edge strength of the image (a Sobel filter; 0 would be no
# relation, 1 a map that is the edge image). With random weights the network
# has learned nothing, yet Guided Backprop's map still correlates with the
# edges more than the vanilla gradient's does: part of what it shows is the
# image, not the model.

# %%
from scipy import ndimage  # noqa: E402

grey = image.mean(axis=2)
edges = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
edge_corr = {name: float(np.corrcoef(max_abs(a)[0].ravel(), edges.ravel())[0, 1])
             for name, a in (("Vanilla Gradient", vanilla), ("Guided Backprop", guided))}
for name, c in edge_corr.items():
    print(f"{name:17s} correlation with the photo's edges: {c:.2f}" + ("" if trained else " (random weights)"))


# %% [markdown]
# ## Questions
#
# 1. With random weights, Guided Backprop still shows the photo's edges. What
#    does this say about maps that look right?
# BEGIN ANSWER
#    A map can look plausible without reflecting what the model learned: part
#    of it is the input passed back through the network's structure (Adebayo
#    et al.'s sanity checks). A visual check cannot tell the two apart; the
#    randomization test (tutorial 8) can.
# END ANSWER
# 2. Why is a model with random weights enough for this lesson?
# BEGIN ANSWER
#    The point is what a method shows when the model has learned nothing:
#    whatever structure remains in the map comes from the image and the
#    architecture, not from training.
# END ANSWER
