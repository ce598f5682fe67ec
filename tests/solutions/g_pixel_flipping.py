"""Reference solution of assignment G (kept out of the student files)."""
import numpy as np


def pixel_flipping(model, x, y, a, features_in_step):
    N = len(x)
    order = np.argsort(-np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)   # most relevant first
    current = x.reshape(N, -1).copy()
    black = current.min(axis=1, keepdims=True)                                # each image's own minimum
    curve = []
    for t in range(0, current.shape[1], features_in_step):
        idx = order[:, t:t + features_in_step]
        np.put_along_axis(current, idx, np.broadcast_to(black, idx.shape), axis=1)   # cumulative
        logits = model.forward(current.reshape(x.shape))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        curve.append((e / e.sum(axis=1, keepdims=True))[np.arange(N), y])   # the target's probability
    return np.stack(curve, axis=1)
