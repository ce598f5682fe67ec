# %% [markdown]
# # 4. Grad-CAM, step by step
#
# Grad-CAM (Selvaraju et al. 2017) in eight steps, as Molnar's *Interpretable
# Machine Learning* ("Pixel Attribution") lays out the recipe, with the shape of
# every array printed. `attribution.grad_cam` does steps 1-6 in a few lines;
# here each one is its own cell.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from minicnn.data import SHAPE_CLASSES, make_shapes
from minicnn.models import shapes_net

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
model = shapes_net(pretrained=True)
images, labels, masks = make_shapes(2, seed=5)
layer = attr.default_cam_layer(model)
print("Grad-CAM layer: the rectified output of the last convolution:", layer)

# %% [markdown]
# **1. Forward pass.**

# %%
logits = model.forward(images)
print("images", images.shape, "-> logits", logits.shape)

# %% [markdown]
# **2. The raw class score** $y^c$: the logit, before the softmax.

# %%
targets = logits.argmax(axis=1)
print("explaining", [SHAPE_CLASSES[t] for t in targets], "scores", logits[np.arange(2), targets].round(2))

# %% [markdown]
# **3. Backpropagate to the feature maps** $A^k$ of the chosen layer: $\partial y^c / \partial A^k$.

# %%
dout = np.zeros_like(logits)
dout[np.arange(2), targets] = 1
A = model.outputs[layer]
dA = model.backward(dout, until=layer)
print("A", A.shape, " dy/dA", dA.shape)

# %% [markdown]
# **4. Average-pool the gradients**: one weight $\alpha_k$ per feature map.

# %%
alpha = dA.mean(axis=(2, 3))
print("alpha", alpha.shape, "  largest weights of image 0:", np.sort(alpha[0])[-3:].round(4))

# %% [markdown]
# **5. Weight the feature maps** and sum them.

# %%
weighted = (alpha[:, :, None, None] * A).sum(axis=1)
print("weighted sum", weighted.shape, " range", weighted.min().round(3), "to", weighted.max().round(3))

# %% [markdown]
# **6. ReLU**: keep what speaks for the class.

# %%
cam = np.maximum(weighted, 0)
print("cam", cam.shape, " equals attribution.grad_cam:", np.allclose(cam, attr.grad_cam(model, images, targets)))

# %% [markdown]
# **7. Upsample** to the image size (bilinear, as in the paper) **and scale** to [0, 1].

# %%
heat = attr.scale_01(attr.upsample(cam, images.shape[2:], "bilinear"))
print("heat map", heat.shape, "in", heat.min(), "to", heat.max())

# %% [markdown]
# **8. Overlay** on the image. The mask tells us where the object really is.

# %%
fig, axes = plt.subplots(2, 3, figsize=(9, 6))
for n in range(2):
    axes[n, 0].imshow(images[n].transpose(1, 2, 0))
    axes[n, 1].imshow(cam[n], cmap="jet")
    axes[n, 1].set_title(f"coarse {cam.shape[1]}x{cam.shape[2]}")
    axes[n, 2].imshow(images[n].transpose(1, 2, 0))
    axes[n, 2].imshow(heat[n], cmap="jet", alpha=0.5)
    axes[n, 2].contour(masks[n], levels=[0.5], colors="white", linewidths=1)
    inside = (heat[n] * masks[n]).sum() / heat[n].sum()
    print(f"image {n}: {inside:.0%} of the heat lies on the object ({masks[n].mean():.0%} of the image)")
for ax in axes.flat:
    ax.axis("off")
fig.savefig(os.path.join(FIGURES, "04_grad_cam.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "04_grad_cam.png"))


# %% [markdown]
# ## Questions
#
# 1. Why does Grad-CAM end with a ReLU?
# BEGIN ANSWER
#    Selvaraju et al. keep only the features with a positive influence on the
#    class: the negative part of the weighted sum belongs to evidence against
#    it (often for other classes), which would otherwise mix into the map.
# END ANSWER
# 2. The map is 8x8 and is upsampled to 64x64 for display. What does the
#    upsampling add?
# BEGIN ANSWER
#    Nothing about the model: it interpolates between the 8x8 values. The
#    map's resolution is the layer's; details finer than one cell of the layer
#    cannot be in it (Guided Grad-CAM, tutorial 5, multiplies in a fine map
#    for that).
# END ANSWER
