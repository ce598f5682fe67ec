# %% [markdown]
# # 3. Vanilla Gradient, DeconvNet, Guided Backprop on the demo model
#
# One identical section per method: only the `relu_rule` changes.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from minicnn.data import SHAPE_CLASSES, make_shapes
from minicnn.models import shapes_net

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
model = shapes_net(pretrained=True)
images, labels, masks = make_shapes(3, seed=4)
logits = model.forward(images)
targets = logits.argmax(axis=1)
print("predicted:", [SHAPE_CLASSES[t] for t in targets], " true:", [SHAPE_CLASSES[t] for t in labels])
dout = np.zeros_like(logits)
dout[np.arange(3), targets] = 1          # d(each image's predicted logit) / d(logits)
print(f"the objects cover {masks.mean():.0%} of the images: a map spread evenly would put that share on them")

# %% [markdown]
# ## Vanilla Gradient: `relu_rule="gradient"`

# %%
model.forward(images)
vanilla = model.backward(dout, relu_rule="gradient")
print("vanilla:", vanilla.shape, "share of the map on the object:",
      (np.abs(vanilla).sum(1) * masks).sum() / np.abs(vanilla).sum())

# %% [markdown]
# ## DeconvNet: `relu_rule="deconvnet"`

# %%
model.forward(images)
deconv = model.backward(dout, relu_rule="deconvnet")
print("deconvnet:", deconv.shape, "share of the map on the object:",
      (np.abs(deconv).sum(1) * masks).sum() / np.abs(deconv).sum())

# %% [markdown]
# ## Guided Backprop: `relu_rule="guided"`

# %%
model.forward(images)
guided = model.backward(dout, relu_rule="guided")
print("guided:", guided.shape, "share of the map on the object:",
      (np.abs(guided).sum(1) * masks).sum() / np.abs(guided).sum())

# %% [markdown]
# Display as Simonyan et al.: the max over channels of |gradient|.

# %%
fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
for n in range(3):
    axes[n, 0].imshow(images[n].transpose(1, 2, 0))
    for ax, (name, a) in zip(axes[n, 1:], [("Vanilla", vanilla), ("DeconvNet", deconv), ("Guided", guided)]):
        ax.imshow(np.abs(a[n]).max(axis=0), cmap="gray")
        ax.set_title(name if n == 0 else "")
for ax in axes.flat:
    ax.axis("off")
fig.savefig(os.path.join(FIGURES, "03_gradient_methods.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "03_gradient_methods.png"))


# %% [markdown]
# ## Questions
#
# 1. Guided Backprop puts the largest share of its map on the object here.
#    Does that make it the best explanation of the model?
# BEGIN ANSWER
#    No. Putting heat on the object is localisation, not faithfulness: Guided
#    Backprop barely changes with the class (tutorial 5) and keeps its
#    structure when the model's layers are randomized (tutorial 8); it shows
#    where the image has edges as much as what the model uses.
# END ANSWER
# 2. Why are the maps shown as the largest |gradient| over the colour
#    channels, following Simonyan et al.?
# BEGIN ANSWER
#    The sign of a pixel's gradient says in which direction changing its
#    colour would raise the score, not how much the pixel matters; the
#    magnitude, taken as the largest over the three channels, says how
#    sensitive the score is to that pixel.
# END ANSWER
