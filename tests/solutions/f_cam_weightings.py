"""Reference solution of assignment F (kept out of the student files)."""
import numpy as np


def layer_cam(A, G):
    return np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)     # positive gradient x activation, per position


def grad_cam_plus_plus(A, G):
    S = A.sum(axis=(2, 3), keepdims=True)                        # each channel's total activation
    a = np.where(G != 0, G ** 2 / (2 * G ** 2 + S * G ** 3 + 1e-6), 0)
    w = (np.maximum(G, 0) * a).sum(axis=(2, 3), keepdims=True)   # one weight per channel
    return np.maximum((w * A).sum(axis=1), 0)
