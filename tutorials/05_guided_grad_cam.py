# %% [markdown]
# # 5. Guided Grad-CAM
#
# Grad-CAM says *where* (coarse, class-discriminative); Guided Backprop says
# *what* (fine, pixel-level edges, but hardly class-specific). Their product
# keeps the fine detail only where Grad-CAM points.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from minicnn.data import SHAPE_CLASSES, make_composites
from minicnn.models import shapes_net

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
model = shapes_net(pretrained=True)

# %% [markdown]
# A two-object image, explained once for each object's class.

# %%
image, labels, masks = make_composites(1, seed=6)
x = np.repeat(image, 2, axis=0)
targets = labels[0]
print("objects:", [SHAPE_CLASSES[t] for t in targets])
guided = attr.guided_backprop(model, x, targets)
cam = attr.grad_cam(model, x, targets)
ggc = attr.guided_grad_cam(model, x, targets, mode="bilinear")
print("guided", guided.shape, "cam", cam.shape, "guided grad-cam", ggc.shape)

# %% [markdown]
# Guided Backprop barely changes with the class; Guided Grad-CAM does.

# %%
def share_on(a, mask):
    m = np.abs(a).sum(axis=0)
    return (m * mask).sum() / m.sum()


for k in range(2):
    print(f"explaining {SHAPE_CLASSES[targets[k]]:8s}: guided backprop {share_on(guided[k], masks[0, k]):.0%} "
          f"on that object, guided grad-cam {share_on(ggc[k], masks[0, k]):.0%} (the object covers "
          f"{masks[0, k].mean():.0%} of the image)")
print("the two guided backprop maps correlate at",
      np.corrcoef(np.abs(guided[0]).ravel(), np.abs(guided[1]).ravel())[0, 1].round(3))

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for k in range(2):
    axes[k, 0].imshow(image[0].transpose(1, 2, 0))
    axes[k, 0].set_title(f"explain: {SHAPE_CLASSES[targets[k]]}")
    axes[k, 1].imshow(np.abs(guided[k]).max(axis=0), cmap="gray")
    axes[k, 1].set_title("Guided Backprop")
    axes[k, 2].imshow(attr.upsample(cam[k:k + 1], (64, 64))[0], cmap="jet")
    axes[k, 2].set_title("Grad-CAM")
    axes[k, 3].imshow(np.abs(ggc[k]).max(axis=0), cmap="gray")
    axes[k, 3].set_title("Guided Grad-CAM")
for ax in axes.flat:
    ax.axis("off")
fig.savefig(os.path.join(FIGURES, "05_guided_grad_cam.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "05_guided_grad_cam.png"))


# %% [markdown]
# ## Questions
#
# 1. The two Guided Backprop maps, for two different classes, correlate above
#    0.9. Why is Guided Backprop so little class-specific?
# BEGIN ANSWER
#    Its backward pass rectifies the signal at every ReLU and keeps only units
#    that were active in the forward pass; what survives is shaped mostly by
#    the image (its edges) and the forward activations, which are the same
#    whatever class the pass starts from.
# END ANSWER
# 2. Why multiply Guided Backprop by the upsampled Grad-CAM map rather than
#    add them?
# BEGIN ANSWER
#    The product keeps a pixel only where both are high: the fine detail of
#    Guided Backprop where Grad-CAM's coarse map says the class's evidence is.
#    A sum would keep Guided Backprop's edges everywhere, including on the
#    other object.
# END ANSWER
