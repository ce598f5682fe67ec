"""The recipes that train the shipped models: ``python -m minicnn train shapes`` (the VGG-style demo
model) and ``python -m minicnn train shapes_resnet`` (the small ResNet of the "Skip connections" tutorial).

Fixed seeds throughout (data, initialisation, shuffling, dropout), so running
it again reproduces the shipped weights up to floating-point differences of
the machine's BLAS.
"""
import os
import sys
import time
from importlib import resources
from pathlib import Path

from .data import make_shapes
from .models import SHAPES_RESNET_WEIGHTS, SHAPES_WEIGHTS, shapes_net, shapes_resnet
from .optim import Adam
from .train import evaluate_accuracy, fit
from .files import atomic_save_npz

RECIPE = dict(n_train=10000, epochs=6, batch_size=32, lr=1e-3, n_val=600)
# model -> (builder, shipped file, its recipe: the ResNet, whose stem divides the image by 4 at once, takes longer)
MODELS = {"shapes": (shapes_net, SHAPES_WEIGHTS, RECIPE),
          "shapes_resnet": (shapes_resnet, SHAPES_RESNET_WEIGHTS, dict(RECIPE, epochs=10))}


def train_shapes(output=None, epochs=None, n_train=None, seed=0, log=sys.stderr, model="shapes"):
    """Train ``model`` ("shapes": shapes_net, or "shapes_resnet") on generated shapes; write the weights
    atomically; return the held-out accuracy.

    output: the .npz to write (None: ``MODEL.npz`` in the current folder). The shipped weights are replaced
    only when asked by name, ``output="shipped"``; a path onto them, or onto weights in the download cache, is
    refused, as are fewer than one epoch or training image and a negative seed -- all before any work."""
    from .hub import protected_files
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    build, asset, recipe = MODELS[model]
    epochs = recipe["epochs"] if epochs is None else epochs
    n_train = recipe["n_train"] if n_train is None else n_train
    for name, value, least in (("epochs", epochs, 1), ("n_train", n_train, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    if output == "shipped":
        output = Path(str(resources.files("minicnn").joinpath(asset)))
    else:
        output = Path(f"{model}.npz" if output is None else output)
        for protected in protected_files():
            if output.exists() and protected.exists() and os.path.samefile(output, protected):
                raise ValueError(f"{output} is a weights file ({protected}: shipped or in the download cache); "
                                 f"write elsewhere, or pass -o shipped to replace the shipped weights on purpose")
    if output.suffix != ".npz" or not output.parent.is_dir():
        raise ValueError(f"the output must be a .npz file in an existing folder, got {output}")
    start = time.time()
    print(f"generating {n_train} training images (seed {seed})", file=log)
    X, y, _ = make_shapes(n_train, seed=seed)
    Xv, yv, _ = make_shapes(recipe["n_val"], seed=seed + 10_000)      # held out: another seed
    model = build(seed=seed)
    lr = recipe["lr"]
    optimizer = Adam(model, lr=lr)

    def schedule(epoch):                      # constant, then a step down for the last two epochs
        return lr if epoch < epochs - 2 else lr / 5

    fit(model, optimizer, X, y, epochs=epochs, batch_size=recipe["batch_size"], seed=seed, log=log,
        lr_schedule=schedule)
    accuracy = evaluate_accuracy(model, Xv, yv)
    print(f"held-out accuracy {accuracy:.2%} on {len(yv)} images; {time.time() - start:.0f}s", file=log)
    atomic_save_npz(output, model.state_dict())
    print(f"wrote {output}", file=log)
    return accuracy
