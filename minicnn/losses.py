"""Softmax cross-entropy, the loss that trains a classifier."""
import numpy as np


def softmax(logits):
    """logits: (N, K) -> probabilities (N, K), computed stably (max subtracted)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels.

    logits: (N, K), labels: (N,) ints in [0, K).
    Returns (loss: float, dlogits: (N, K)), where
    ``dlogits = (softmax(logits) - onehot(labels)) / N``.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"softmax_cross_entropy: expected logits (N, K) and labels (N,), "
                         f"got {logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu" or labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"softmax_cross_entropy: labels must be integers in [0, {logits.shape[1]})")
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(N), labels].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(N), labels] -= 1
    return float(loss), dlogits / N
