"""The recipe that trains the shipped demo model: ``python -m minicnn train shapes``.

Fixed seeds throughout (data, initialisation, shuffling, dropout), so running
it again reproduces the shipped weights up to floating-point differences of
the machine's BLAS.
"""
import sys
import time
from importlib import resources
from pathlib import Path

from .data import make_shapes
from .models import SHAPES_WEIGHTS, shapes_net
from .optim import Adam
from .train import evaluate_accuracy, fit
from .files import atomic_save_npz

RECIPE = dict(n_train=10000, epochs=6, batch_size=32, lr=1e-3, n_val=600)


def train_shapes(output=None, epochs=None, n_train=None, seed=0, log=sys.stderr):
    """Train shapes_net on generated shapes; write the weights atomically; return the held-out accuracy."""
    epochs = RECIPE["epochs"] if epochs is None else epochs
    n_train = RECIPE["n_train"] if n_train is None else n_train
    if output is None:
        output = Path(str(resources.files("minicnn").joinpath(SHAPES_WEIGHTS)))
    output = Path(output)
    if output.suffix != ".npz" or not output.parent.is_dir():
        raise ValueError(f"the output must be a .npz file in an existing folder, got {output}")
    start = time.time()
    print(f"generating {n_train} training images (seed {seed})", file=log)
    X, y, _ = make_shapes(n_train, seed=seed)
    Xv, yv, _ = make_shapes(RECIPE["n_val"], seed=seed + 10_000)      # held out: another seed
    model = shapes_net(seed=seed)
    lr = RECIPE["lr"]
    optimizer = Adam(model, lr=lr)

    def schedule(epoch):                      # constant, then a step down for the last two epochs
        return lr if epoch < epochs - 2 else lr / 5

    fit(model, optimizer, X, y, epochs=epochs, batch_size=RECIPE["batch_size"], seed=seed, log=log,
        lr_schedule=schedule)
    accuracy = evaluate_accuracy(model, Xv, yv)
    print(f"held-out accuracy {accuracy:.2%} on {len(yv)} images; {time.time() - start:.0f}s", file=log)
    atomic_save_npz(output, model.state_dict())
    print(f"wrote {output}", file=log)
    return accuracy
