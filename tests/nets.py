"""Small test networks (no PyTorch needed)."""
import numpy as np

import minicnn as mc


def small_vgg(num_classes=5, dtype=np.float64, seed=0, in_size=16):
    """A small VGG-like net: conv blocks, overlapping and plain max-pools, a Linear/ReLU/Dropout head."""
    r = np.random.default_rng(seed)
    features = mc.Sequential(
        mc.Conv2d(3, 6, 3, padding=1, rng=r), mc.ReLU(), mc.Conv2d(6, 6, 3, padding=1, rng=r), mc.ReLU(),
        mc.MaxPool2d(2),
        mc.Conv2d(6, 8, 3, padding=1, rng=r), mc.ReLU(), mc.MaxPool2d(3, 2, 1),
        mc.Conv2d(8, 8, 3, stride=1, padding=1, rng=r), mc.ReLU())
    side = in_size // 4
    model = mc.Sequential({
        "features": features,
        "avgpool": mc.AdaptiveAvgPool2d(side),
        "flatten": mc.Flatten(),
        "classifier": mc.Sequential(mc.Linear(8 * side * side, 16, rng=r), mc.ReLU(), mc.Dropout(0.5),
                                    mc.Linear(16, num_classes, rng=r)),
    })
    return model.to(dtype)
