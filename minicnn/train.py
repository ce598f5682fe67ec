"""A short training loop: enough to train the demo model."""
import sys
import time

import numpy as np

from .losses import softmax_cross_entropy


def evaluate_accuracy(model, X, y, batch_size=256):
    """Share of X classified as y, in eval mode. X: (N, C, H, W), y: (N,)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(X), batch_size):
        logits = model.forward(X[start:start + batch_size])
        correct += int((logits.argmax(axis=1) == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(X)


def fit(model, optimizer, X, y, epochs=1, batch_size=64, seed=0, log=sys.stderr, lr_schedule=None):
    """Train ``model`` on (X, y) with softmax cross-entropy; returns the loss per epoch.

    Each epoch shuffles the data with ``np.random.default_rng(seed + epoch)``,
    so the same call gives the same weights. ``lr_schedule(epoch) -> lr``
    optionally sets the learning rate at the start of each epoch.
    Progress goes to ``log`` (None for silence).
    """
    history = []
    model.train()
    try:
        for epoch in range(epochs):
            if lr_schedule is not None:
                optimizer.lr = lr_schedule(epoch)
            order = np.random.default_rng(seed + epoch).permutation(len(X))
            total, start_time = 0.0, time.time()
            for start in range(0, len(X), batch_size):
                idx = order[start:start + batch_size]
                logits = model.forward(X[idx])
                loss, dlogits = softmax_cross_entropy(logits, y[idx])
                model.backward(dlogits, param_grads=True)
                optimizer.step()
                total += loss * len(idx)
                if log is not None:
                    done = min(start + batch_size, len(X))
                    print(f"\repoch {epoch + 1}/{epochs}  {done}/{len(X)}  loss {total / done:.4f}  "
                          f"{time.time() - start_time:.0f}s", end="", file=log, flush=True)
            history.append(total / len(X))
            if log is not None:
                print(file=log)
    finally:
        model.eval()
    return history
