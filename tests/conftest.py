import numpy as np
import pytest


def _optional(name):
    try:
        return __import__(name)
    except Exception:  # pragma: no cover - depends on the machine
        return None


torch = _optional("torch")
captum = _optional("captum")

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (reference tests need it: "
                                                       "pip install torch)")
needs_captum = pytest.mark.skipif(captum is None or torch is None,
                                  reason="Captum is not installed (reference tests need it: pip install captum)")


def away_from_kinks(rng, shape, gap=0.05):
    """Random float64 values with |v| >= gap and no two values closer than gap/10:
    keeps ReLU inputs off 0 and max-pool windows free of ties."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * (gap / 5)
    values = values[np.abs(values) >= gap] if n > 20 else values + np.sign(values) * gap
    values = rng.permutation(np.resize(values, n) + rng.uniform(0, gap / 20, n))
    return values.reshape(shape)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
