# %% [markdown]
# # 8. The disadvantages: can we trust these maps?
#
# Two experiments from the literature, run on the demo model.
#
# 1. **Model parameter randomization** (Adebayo et al. 2018): destroy the
#    model layer by layer, from the logits down. An explanation *of the model*
#    must change. Guided Backprop is known to change least (Adebayo et al.):
#    it recovers the image's edges more than the model's reasoning.
# 2. **Input invariance** (Kindermans et al. 2017): shift every input by a
#    constant and compensate in the first layer's bias. The new model computes
#    exactly the same function of the content; a reliable explanation should
#    not change either.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from attribution import evaluate as ev
from minicnn.data import make_shapes
from minicnn.models import shapes_net

QUICK = os.environ.get("MINICNN_QUICK") == "1"
FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
model = shapes_net(pretrained=True)
x, labels, masks = make_shapes(4 if QUICK else 8, seed=9)
targets = labels

# %% [markdown]
# ## 1. Cascading randomization

# %%
methods = {"vanilla_gradient": attr.vanilla_gradient, "guided_backprop": attr.guided_backprop,
           "grad_cam": attr.grad_cam, "gradient_x_input": attr.gradient_x_input}
steps, curves = ev.parameter_randomization(model, x, targets, methods)
print("randomized, from the logits down:", steps)
for name, c in curves.items():
    print(f"{name:18s} Spearman with the trained model's map: " + " ".join(f"{v:.2f}" for v in c["spearman"]))

# %%
fig, ax = plt.subplots(figsize=(8, 4))
for name, c in curves.items():
    ax.plot(range(1, len(steps) + 1), c["spearman"], marker="o", label=name)
ax.set_xticks(range(1, len(steps) + 1))
ax.set_xticklabels(steps, rotation=45, ha="right", fontsize=8)
ax.set_ylabel("Spearman rank correlation")
ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(FIGURES, "08_randomization.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "08_randomization.png"))

# %% [markdown]
# Guided Backprop stays closest to the trained model's map the longest: the
# least sensitive to what the model learned, Adebayo et al.'s finding. It
# does not stay unchanged, though: its correlation falls steadily as layers
# are randomized (the printed row), less than the others'. In the paper, on
# large ImageNet networks, it hardly moves; this model is small.
# Grad-CAM's curve is not monotone: it can drop when only the last layer is
# random and rise again when the next one is. Each step is *one* random draw,
# and that draw decides the signs of Grad-CAM's weights alpha_k, so which
# feature maps survive its ReLU; on an 8x8 map that swings the rank
# correlation. Averaging over several draws (Adebayo et al. do) smooths it.

# %% [markdown]
# ## 2. A constant shift of the input

# %%
x64 = x.astype(np.float64)
model64 = shapes_net(pretrained=True).to(np.float64)
shifted = ev.shifted_model(model64, -1.0)
print("logits equal after the shift:", np.abs(model64.forward(x64) - shifted.forward(x64 - 1.0)).max() < 1e-10)
changes = ev.input_invariance(model64, x64, targets, {
    "vanilla_gradient": attr.vanilla_gradient, "gradient_x_input": attr.gradient_x_input,
    "guided_backprop": attr.guided_backprop, "grad_cam": attr.grad_cam,
    "integrated_gradients (zero baseline)": lambda m, xx, t: attr.integrated_gradients(m, xx, t, steps=16)})
for name, change in changes.items():
    print(f"{name:38s} " + ("unchanged" if change < 1e-6 else
                           f"changes by {change:.0%} of its scale (max |difference| / max |map|)"))

# %%
gxi = attr.gradient_x_input(model64, x64[:1], targets[:1])[0].sum(0)
gxi_shifted = attr.gradient_x_input(shifted, x64[:1] - 1.0, targets[:1])[0].sum(0)
difference = gxi_shifted - gxi
limit = max(np.abs(gxi).max(), np.abs(gxi_shifted).max(), np.abs(difference).max())   # one scale, white at 0
print(f"image 0: the largest |difference| is {np.abs(difference).max() / np.abs(gxi).max():.0%} of the "
      f"largest |Gradient x Input|")
fig, axes = plt.subplots(1, 4, figsize=(13, 3))
axes[0].imshow(x[0].transpose(1, 2, 0))
axes[0].set_title("image")
axes[1].imshow(gxi, cmap="bwr", vmin=-limit, vmax=limit)
axes[1].set_title("Gradient x Input")
axes[2].imshow(gxi_shifted, cmap="bwr", vmin=-limit, vmax=limit)
axes[2].set_title("... of the shifted model")
shown = axes[3].imshow(difference, cmap="bwr", vmin=-limit, vmax=limit)
axes[3].set_title("the difference (same scale)")
fig.colorbar(shown, ax=axes[1:], shrink=0.8, label="red +, blue -")
for ax in axes:
    ax.axis("off")
fig.savefig(os.path.join(FIGURES, "08_input_shift.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "08_input_shift.png"))


# %% [markdown]
# ## Questions
#
# 1. What does the randomization test check, and what would a method that
#    passes it look like?
# BEGIN ANSWER
#    An explanation of the model should depend on the model's parameters: as
#    the layers are randomized from the top, its correlation with the trained
#    model's map should fall towards 0. A method whose curve stays high
#    explains the image more than the model.
# END ANSWER
# 2. Why does Gradient x Input change under the constant shift while the
#    gradient does not?
# BEGIN ANSWER
#    The shifted model computes the same function of the content, so its
#    gradient with respect to the shifted input is the same; but the input
#    itself moved by -1, and Gradient x Input multiplies the gradient by it.
# END ANSWER
