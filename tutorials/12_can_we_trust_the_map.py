# %% [markdown]
# # 12. Can we trust the map?
#
# The chapter ends on the disadvantages of pixel attribution:
#
# 1. **nobody can tell whether an explanation is correct**, and the ways to
#    evaluate a method disagree;
# 2. a **constant shift** of the input, which the model ignores, changes
#    some maps;
# 3. pixel attribution is **fragile**: a change of the image that leaves the
#    prediction alone can change the map.
#
# This tutorial puts numbers on each, on the two shipped models. The metrics
# are `attribution.metrics`, which equal Quantus, the library evaluation
# research uses; assignment G has you write one of them (pixel flipping).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import attribution as attr
from attribution import evaluate as ev
from attribution import metrics as M
from attribution.fragility import fragility
from attribution.superpixels import slic
from minicnn.data import make_shapes
from minicnn.models import shapes_net, shapes_resnet

FIGURES = os.environ.get("TUTORIAL_FIGURES", "figures")
os.makedirs(FIGURES, exist_ok=True)
QUICK = os.environ.get("MINICNN_QUICK") == "1"

vgg = shapes_net(pretrained=True)
resnet = shapes_resnet(pretrained=True)
x, labels, masks = make_shapes(8, seed=500)
NAMES = ["vanilla_gradient", "gradient_x_input", "guided_backprop", "grad_cam", "integrated_gradients", "lrp"]
methods = {name: attr.METHODS[name] for name in NAMES}
print(f"{len(x)} images; the objects cover {masks.mean():.0%} of them")

# %% [markdown]
# ## 1. The metrics disagree
#
# Quantus groups its metrics: *localisation* (is the map on the object?),
# *faithfulness* (does removing what the map calls relevant hurt the
# prediction?), *complexity* (is the map concentrated?) and *robustness* (does
# the map stay put under small noise?). One line each, on the same maps.
# A random map is the yardstick: a metric that cannot tell it from a real
# method says little.

# %%
segments = np.stack([slic(image, n_segments=20) for image in x])
maps = {name: ev.to_pixel_map(name, m(vgg, x, labels), x.shape[2:]) for name, m in methods.items()}
maps["random map"] = np.random.default_rng(0).random((len(x),) + x.shape[2:])
table = {}
for name, m in maps.items():
    explain = (ev.pixel_explainer(name, methods[name]) if name in methods
               else lambda model, xs, ys: np.random.default_rng(1).random((len(xs),) + xs.shape[2:]))
    table[name] = ev.standard_metrics(vgg, x, labels, masks, m, segments, explain)
COLUMNS = ["ROC AUC", "relevance mass accuracy", "pixel flipping AUC", "faithfulness estimate", "sparseness",
           "max sensitivity"]
print(f"{'':22s}" + "".join(f"{c[:14]:>15s}" for c in COLUMNS))
for name, row in table.items():
    print(f"{name:22s}" + "".join(f"{row[c]:15.2f}" for c in COLUMNS))

# %% [markdown]
# Read the columns against each other (higher is better except for pixel
# flipping and sensitivity):

# %%
ranks = ev.metric_ranks(table)


def ranking(column):
    return [ranks[name][column] for name in NAMES]


def agreement(c1, c2):
    """Spearman's correlation of two metrics' rankings of the six methods."""
    a, b = np.argsort(np.argsort(ranking(c1))), np.argsort(np.argsort(ranking(c2)))
    return np.corrcoef(a, b)[0, 1]


for c1, c2 in (("ROC AUC", "relevance mass accuracy"), ("ROC AUC", "pixel flipping AUC"),
               ("ROC AUC", "faithfulness estimate"), ("pixel flipping AUC", "faithfulness estimate")):
    print(f"rankings of the six methods, {c1} vs {c2}: Spearman {agreement(c1, c2):+.2f}")
better = [name for name in NAMES if table[name]["pixel flipping AUC"] < table["random map"]["pixel flipping AUC"]]
print(f"pixel flipping: {len(better)} of {len(NAMES)} methods beat the random map ({', '.join(better)})")
print(f"localisation (ROC AUC): the random map scores {table['random map']['ROC AUC']:.2f}, the methods "
      f"{min(table[n]['ROC AUC'] for n in NAMES):.2f} to {max(table[n]['ROC AUC'] for n in NAMES):.2f}")

# %% [markdown]
# Localisation separates most methods from the random map, but not Gradient
# x Input and Integrated Gradients with a black baseline, which sit at
# chance (0.5) here (tutorial 9 shows why); the two localisation metrics
# agree with each other. The two faithfulness metrics do not agree with each
# other: the faithfulness estimate ranks the methods much as localisation
# does, pixel flipping almost the other way round. On this model a few black
# pixels destroy the prediction whatever their order, so in pixel flipping a
# random order does about as well as most maps. A method can be "good" by one
# metric and "bad" by another: which is *correct* is exactly what no metric
# settles. The full table, every method and metric, is `attribution evaluate`
# (README), drawn as ranks:

# %%
fig = ev.metrics_figure(table)
fig.savefig(os.path.join(FIGURES, "12_metrics.png"), dpi=80)
plt.close(fig)
print("figure:", os.path.join(FIGURES, "12_metrics.png"))

# %% [markdown]
# ## 2. A constant shift that the model ignores
#
# Kindermans et al.: shift every input by -1 and add the shift back in the
# first layer's bias. The model is the same function (its logits are equal),
# so a reliable explanation should not change.

# %%
shifted = ev.shifted_model(vgg.to(np.float64), -1.0)
xs = x[:4].astype(np.float64)
print("logits equal after the shift:", bool(np.allclose(vgg.forward(xs), shifted.forward(xs - 1.0))))
change = ev.input_invariance(vgg, xs, labels[:4], {n: methods[n] for n in NAMES})
for name in NAMES:
    print(f"{name:22s} " + ("unchanged" if change[name] < 1e-6 else
                           f"changes: max |difference| = {change[name]:.0%} of the map's largest value"))
vgg = shapes_net(pretrained=True)                      # back to float32

# %% [markdown]
# The gradient, Guided Backprop and Grad-CAM read the model only; Gradient x
# Input and Integrated Gradients multiply by the input (or by input minus a
# black baseline, which does not move with the shift): their map moves by
# more than its own scale although the model did not. LRP moves by about 1%:
# small, but not zero.
#
# ## 3. Fragility
#
# Ghorbani et al.: perturb the image within a tiny budget (here 8/255 per
# pixel, invisible) so that the predicted class stays, and look for the
# perturbation that moves the map most. `attribution.fragility` searches
# random and gradient-sign steps and keeps the worst; it reports the share
# of the top 10% pixels that stay in the top 10% (1: unchanged) and the rank
# correlation with the original map.

# %%
steps, directions = (2, 4) if QUICK else (4, 6)
fragile = {}
for model_name, model in (("shapes_net", vgg), ("shapes_resnet", resnet)):
    for name in ("vanilla_gradient", "guided_backprop", "grad_cam", "lrp"):
        r = fragility(methods[name], model, x[:4], epsilon=8 / 255, steps=steps, directions=directions, seed=0)
        kept = bool((model.forward(x[:4] + r.delta).argmax(axis=1) == model.forward(x[:4]).argmax(axis=1)).all())
        fragile[model_name, name] = r
        print(f"{model_name:13s} {name:18s} top-10% kept {r.top_k.mean():.2f}, rank correlation "
              f"{r.spearman.mean():.2f}, largest change of a pixel {np.abs(r.delta).max() * 255:.0f}/255, "
              f"class kept: {kept}")

# %% [markdown]
# The same budget moves the maps very differently, and never the predicted
# class. The vanilla gradient is the most fragile on both models: it is the
# local slope, and the slope of a ReLU network changes wherever a unit
# switches. Guided Backprop and LRP keep more of their top pixels. Grad-CAM on
# the ResNet is a 2x2 map at `layer4` (tutorial 10): its top 10% is a single
# cell, so per image it is either kept or not.

# %%
worst = fragile["shapes_net", "vanilla_gradient"]
fig, axes = plt.subplots(3, 4, figsize=(10, 7.5))
for i in range(4):
    axes[0, i].imshow(np.clip(x[i] + worst.delta[i], 0, 1).transpose(1, 2, 0))
    axes[0, i].set_title("the perturbed image", fontsize=8)
    axes[1, i].imshow(worst.before[i], cmap="gray")
    axes[1, i].set_title("map before", fontsize=8)
    axes[2, i].imshow(worst.after[i], cmap="gray")
    axes[2, i].set_title(f"map after: top-10% kept {worst.top_k[i]:.2f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("vanilla gradient on shapes_net, before and after an invisible perturbation (8/255)", fontsize=9)
fig.tight_layout()
fig.savefig(os.path.join(FIGURES, "12_fragility.png"), dpi=80)
print("figure:", os.path.join(FIGURES, "12_fragility.png"))

# %% [markdown]
# ## Questions
#
# 1. Pixel flipping barely separates the methods from a random map here. What
#    property of the model makes that so? Would a "blur" baseline help?
# BEGIN ANSWER
#    The prediction collapses after a few black pixels wherever they are: the
#    black patches are themselves far from the images the model was trained
#    on, so every curve falls within its first steps and the area hardly
#    depends on the order. Removing information without that artefact helps:
#    the README's insertion curve, which puts pixels back into a *blurred*
#    copy, separates the methods from a random map (0.90-0.95 against 0.71).
# END ANSWER
# 2. Which of the six methods would you trust after section 2, and why is
#    passing the shift test not enough (hint: Guided Backprop passes it)?
# BEGIN ANSWER
#    The shift rules out Gradient x Input and Integrated Gradients with a
#    black baseline (their maps depend on where zero is) and moves LRP a
#    little; the vanilla gradient, Guided Backprop and Grad-CAM pass. Passing
#    is necessary, not sufficient: Guided Backprop passes, yet its map hardly
#    depends on the model's parameters (tutorial 8) nor on the class
#    (tutorial 5).
# END ANSWER
# 3. The fragility search uses no second derivatives. Why would the gradient
#    of the map's change be hard to compute for the vanilla gradient of a
#    ReLU network?
# BEGIN ANSWER
#    A ReLU network is piecewise linear, so its input gradient is piecewise
#    constant: the derivative of the map with respect to the input is 0
#    almost everywhere and undefined where a unit switches. A gradient search
#    gets no signal; Ghorbani et al. replace the ReLUs by softplus to attack
#    it, this search tries directions instead.
# END ANSWER
# 4. Write `pixel_flipping` in `tutorials/assignments/g_pixel_flipping.py`
#    and grade it: `python -m attribution.grade pixel_flipping
#    tutorials/assignments/g_pixel_flipping.py`.
