"""Reference solution of assignment C (kept out of the student files)."""
import numpy as np


def grad_cam(model, x, targets, layer):
    logits = model.forward(x)
    dout = np.zeros_like(logits)
    dout[np.arange(len(x)), targets] = 1
    A = model.outputs[layer]
    dA = model.backward(dout, until=layer)
    alpha = dA.mean(axis=(2, 3))
    return np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)


def smoothgrad(model, x, targets, noise_level, noise):
    flat = x.reshape(len(x), -1)
    sigma = noise_level * (flat.max(axis=1) - flat.min(axis=1))
    total = np.zeros_like(x)
    for s in range(noise.shape[1]):
        logits = model.forward(x + sigma[:, None, None, None] * noise[:, s])
        dout = np.zeros_like(logits)
        dout[np.arange(len(x)), targets] = 1
        total += model.backward(dout)
    return total / noise.shape[1]
