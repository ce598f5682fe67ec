# %% [markdown]
# # 2. The three ReLU rules
#
# Vanilla Gradient, DeconvNet and Guided Backprop run the same backward pass.
# They differ in one place: what a ReLU lets through on the way back.
#
# | method | ReLU backward | indicator |
# |---|---|---|
# | Vanilla Gradient | `g * (x > 0)` | forward activation |
# | DeconvNet | `g * (g > 0)` | backward signal |
# | Guided Backprop | `g * (x > 0) * (g > 0)` | both |

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import minicnn as mc
from minicnn.data import make_shapes
from minicnn.models import shapes_net

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)

# %% [markdown]
# ## The textbook's 2x2 example
# From Molnar, *Interpretable Machine Learning*, chapter "Pixel Attribution
# (Saliency Maps)": the same gradient arriving at a 2x2 ReLU layer, passed on
# by each rule.

# %%
x = np.array([[1.0, 0.0], [-1.0, -10.0]])      # the forward activation X_n
g = np.array([[0.4, 1.1], [-0.5, -0.1]])       # the gradient arriving from above
relu = mc.ReLU()
relu.forward(x)
for rule in ("gradient", "deconvnet", "guided"):    # the fourth, DeepLIFT's "rescale", needs a baseline: tutorial 9
    # + 0.0 turns the -0.0 of (negative number) * False into a plain 0.0 for printing
    print(f"{rule:10s}", (relu.backward(g, rule=rule) + 0.0).tolist())
print("expected:  gradient [[0.4, 0], [0, 0]], deconvnet [[0.4, 1.1], [0, 0]], guided [[0.4, 0], [0, 0]]")
print("note x = 0 at the top right: the strict x > 0 stops its 1.1 under the gradient rule")

# %% [markdown]
# ## On a real layer
# Run an image through the demo model, take the gradient of the predicted
# logit arriving at the first ReLU (`features.1`), and apply the three rules
# to it. How much of the signal does each rule let through?

# %%
model = shapes_net(pretrained=True)
images, labels, _ = make_shapes(1, seed=3)
logits = model.forward(images)
dout = np.zeros_like(logits)
dout[0, logits.argmax()] = 1
g_layer = model.backward(dout, until="features.1")          # gradient at the ReLU's output
relu_layer = model["features.1"]                            # its cache holds its forward input
passed = {rule: relu_layer.backward(g_layer, rule=rule) for rule in ("gradient", "deconvnet", "guided")}
for rule, a in passed.items():
    print(f"{rule:10s} passes {np.mean(a != 0):.1%} of the units (the gradient arriving is non-zero at "
          f"{np.mean(g_layer != 0):.1%})")

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3))
axes[0].imshow(images[0].transpose(1, 2, 0))
axes[0].set_title("image", fontsize=9)
top = max(np.abs(a[0]).sum(axis=0).max() for a in passed.values())       # one scale: compare the panels
for ax, (rule, a) in zip(axes[1:], passed.items()):
    shown = ax.imshow(np.abs(a[0]).sum(axis=0), cmap="gray", vmin=0, vmax=top)
    ax.set_title(f"after the ReLU: {rule}", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.colorbar(shown, ax=axes[1:], shrink=0.8, label="|gradient|, summed over the 16 channels")
fig.savefig(os.path.join(FIGURES, "02_relu_rules.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "02_relu_rules.png"))


# %% [markdown]
# ## Questions
#
# 1. Why can Guided Backprop never pass more units than the Vanilla Gradient
#    or DeconvNet rule?
# BEGIN ANSWER
#    It passes a unit only where both of their conditions hold (x > 0 and dout
#    > 0), so the units it passes are a subset of each rule's; the printed
#    shares show it passing the fewest.
# END ANSWER
# 2. DeconvNet's ReLU rule never looks at x. Does its map then not depend on
#    the forward pass at all?
# BEGIN ANSWER
#    It still does, through the max-pools: they send the backward signal to
#    the positions that won in the forward pass, which depend on the image.
#    Only the ReLUs ignore the forward activations under DeconvNet's rule.
# END ANSWER
