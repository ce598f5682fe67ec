"""Optimizers. Each ``step()`` updates the model's parameters in place from
the gradients of the last ``model.backward(dout, param_grads=True)``."""
import numpy as np

from . import winograd


class SGD:
    """Stochastic gradient descent with momentum and weight decay (PyTorch's form):
    ``v = momentum * v + (g + weight_decay * w)``, ``w -= lr * v``."""

    def __init__(self, model, lr=0.01, momentum=0.0, weight_decay=0.0):
        self.model, self.lr, self.momentum, self.weight_decay = model, lr, momentum, weight_decay
        self.velocity = {}

    def step(self):
        for name, w, g in self.model.parameters():
            if g is None:
                raise RuntimeError(f"SGD: no gradient for {name}; call model.backward(dout, param_grads=True) first")
            g = g + self.weight_decay * w if self.weight_decay else g
            if self.momentum:
                v = self.velocity.get(name)
                g = self.velocity[name] = g if v is None else self.momentum * v + g
            w -= (self.lr * g).astype(w.dtype)
            winograd.forget(w)                          # its transformed copy, if any, is out of date


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam``."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.model, self.lr, self.betas, self.eps, self.weight_decay = model, lr, betas, eps, weight_decay
        self.m, self.v, self.t = {}, {}, 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for name, w, g in self.model.parameters():
            if g is None:
                raise RuntimeError(f"Adam: no gradient for {name}; call model.backward(dout, param_grads=True) first")
            g = g + self.weight_decay * w if self.weight_decay else g
            m = self.m[name] = b1 * self.m.get(name, 0) + (1 - b1) * g
            v = self.v[name] = b2 * self.v.get(name, 0) + (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            w -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(w.dtype)
            winograd.forget(w)                          # its transformed copy, if any, is out of date
