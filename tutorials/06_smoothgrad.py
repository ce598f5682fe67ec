# %% [markdown]
# # 6. SmoothGrad: noise level and sample count
#
# Average the gradient over noisy copies of the image:
# $R(x) = \frac{1}{n} \sum_i \nabla (x + g_i)$, $g_i \sim N(0, \sigma^2)$,
# $\sigma$ = noise level x (max - min of the image).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from attribution.visualize import sum_abs_clipped
from minicnn.data import make_shapes
from minicnn.models import shapes_net

QUICK = os.environ.get("MINICNN_QUICK") == "1"
FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
model = shapes_net(pretrained=True)
images, labels, masks = make_shapes(1, seed=8)
target = int(model.forward(images).argmax())

# %% [markdown]
# How noisy is a map? One number: the mean absolute difference between
# neighbouring pixels of the displayed map (lower = smoother), and the share
# of the map on the object.

# %%
def roughness(m):
    return np.abs(np.diff(m, axis=0)).mean() + np.abs(np.diff(m, axis=1)).mean()


levels = [0.0, 0.05, 0.15, 0.3, 0.5]
counts = [1, 10, 50] if not QUICK else [1, 10]
maps = {}
for n in counts:
    for level in levels:
        a = attr.smoothgrad(attr.vanilla_gradient, model, images, target, n_samples=n, noise_level=level, seed=0)
        m = sum_abs_clipped(a)[0]
        maps[n, level] = m
        print(f"n={n:3d} noise={level:.2f}: roughness {roughness(m):.3f}, on the object "
              f"{(m * masks[0]).sum() / m.sum():.0%}")

# %%
fig, axes = plt.subplots(len(counts), len(levels), figsize=(2.2 * len(levels), 2.3 * len(counts)))
for i, n in enumerate(counts):
    for j, level in enumerate(levels):
        axes[i, j].imshow(maps[n, level], cmap="gray")
        axes[i, j].set_title(f"n={n}, noise={level}", fontsize=9)
        axes[i, j].axis("off")
fig.tight_layout()
fig.savefig(os.path.join(FIGURES, "06_smoothgrad.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "06_smoothgrad.png"))
print("noise 0 is the vanilla gradient; 0.1-0.2 is the paper's sweet spot; too much noise washes it out")
