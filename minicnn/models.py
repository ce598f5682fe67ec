"""Model builders: the VGG family laid out exactly as torchvision names it,
and the small VGG-style demo net that ships with the package.

``vgg16()`` gives the names torchvision gives, so a torchvision state dict
loads by name: ``features.0`` ... ``features.30``, ``avgpool``,
``classifier.0`` ... ``classifier.6``. (torchvision flattens inside
``forward``; here that step is a layer of its own, ``flatten``, which has no
parameters and so changes no weight name.)

One input convention for every model here: images in [0, 1], (N, 3, H, W).
Each model normalizes inside, in a first ``normalize`` layer (no parameters,
so no weight name changes), which makes attributions and baselines refer to
the image itself: a zero baseline is a black image for every model.

Pretrained ImageNet weights come from ``minicnn.hub.pretrained("vgg16")``; a
constructor here never looks in the cache or the network.
"""
import numpy as np

from .imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD
from .layers import AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Normalize, ReLU
from .sequential import Sequential
from .weights import load_weights

# Output channels of each 3x3 convolution, "M" for a 2x2 max-pool (Simonyan & Zisserman 2014, table 1).
VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                          # A
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],                 # B
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # D
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],                                                                  # E
}


def vgg(config, num_classes=1000, weights=None, width=1.0, hidden=4096, pool_size=7, dtype=np.float32, seed=0,
        normalize=True, init=None):
    """A VGG network.

    config: a name in VGG_CONFIGS or a list like it.
    normalize: start with ``Normalize(ImageNet mean, std)``, so that the model
        takes images in [0, 1] (``minicnn.imagenet.preprocess`` gives them);
        False gives torchvision's bare network, which takes normalized input.
    width: scales every conv's channels (1.0 is the real network; smaller
        widths give quick test models with the same layout and names).
    hidden: the two hidden Linear layers' size (4096 in VGG).
    weights: a path to load (``.npz`` or ``.pth``), or None for random weights
        (PyTorch's default initialisation, seeded by ``seed``).
    init: draw the random weights (default: only when no ``weights`` are
        given); False leaves zeros for weights that will be loaded.
    The model is in eval mode.
    """
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError("model constructors load files only; for torchvision's ImageNet weights use "
                         "minicnn.hub.pretrained('vgg16') (after: python -m minicnn download vgg16)")
    cfg = VGG_CONFIGS[config] if isinstance(config, str) else list(config)
    rng = np.random.default_rng(seed)
    init = weights is None if init is None else init
    layers, channels = [], 3
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
        else:
            out = max(1, int(round(v * width)))
            layers += [Conv2d(channels, out, 3, padding=1, dtype=dtype, rng=rng, init=init), ReLU()]
            channels = out
    head = {"normalize": Normalize(IMAGENET_MEAN, IMAGENET_STD)} if normalize else {}
    model = Sequential({
        **head,
        "features": Sequential(*layers),
        "avgpool": AdaptiveAvgPool2d(pool_size),
        "flatten": Flatten(),
        "classifier": Sequential(
            Linear(channels * pool_size * pool_size, hidden, dtype=dtype, rng=rng, init=init), ReLU(),
            Dropout(0.5, rng=rng),
            Linear(hidden, hidden, dtype=dtype, rng=rng, init=init), ReLU(), Dropout(0.5, rng=rng),
            Linear(hidden, num_classes, dtype=dtype, rng=rng, init=init)),
    })
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def vgg_init(model, rng):
    """torchvision's VGG initialisation, for training from scratch: conv weights
    He-normal (std sqrt(2 / (F*KH*KW))), linear weights N(0, 0.01), biases 0.
    (PyTorch's default uniform init shrinks the signal at every ReLU layer, and
    a deep plain net then does not start to learn.)"""
    for _, layer in model.named_layers():
        if isinstance(layer, Conv2d):
            w = layer.params["weight"]
            std = np.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
            layer.params["weight"] = (rng.standard_normal(w.shape) * std).astype(w.dtype)
        elif isinstance(layer, Linear):
            w = layer.params["weight"]
            layer.params["weight"] = (rng.standard_normal(w.shape) * 0.01).astype(w.dtype)
        if "bias" in layer.params:
            layer.params["bias"] = np.zeros_like(layer.params["bias"])


def vgg11(num_classes=1000, weights=None, **kwargs):
    """VGG-11 (configuration A)."""
    return vgg("vgg11", num_classes, weights, **kwargs)


def vgg13(num_classes=1000, weights=None, **kwargs):
    """VGG-13 (configuration B)."""
    return vgg("vgg13", num_classes, weights, **kwargs)


def vgg16(num_classes=1000, weights=None, **kwargs):
    """VGG-16 (configuration D): 13 convolutions, 138,357,544 parameters.

    For torchvision's ImageNet weights: ``minicnn.hub.pretrained("vgg16")``.
    """
    return vgg("vgg16", num_classes, weights, **kwargs)


def vgg19(num_classes=1000, weights=None, **kwargs):
    """VGG-19 (configuration E)."""
    return vgg("vgg19", num_classes, weights, **kwargs)


ARCHITECTURES = {"vgg11": vgg11, "vgg13": vgg13, "vgg16": vgg16, "vgg19": vgg19}


SHAPES_WEIGHTS = "assets/shapes_net.npz"
SHAPES_MEAN, SHAPES_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def shapes_net(pretrained=False, num_classes=6, dtype=np.float32, seed=0, init=None):
    """The demo model: a small VGG-style net for 64x64 ``minicnn.data`` shapes.

    It takes images in [0, 1] (its first layer normalizes them), like every model here. The same
    layer kinds as VGG-16: 3x3 conv + ReLU blocks and 2x2 max-pools
    (``features``), an adaptive average pool, and a Linear/ReLU/Dropout
    classifier. Its Grad-CAM layer is ``features.14`` (8x8 at 64x64 input).
    pretrained: load the weights shipped with the package (trained by
    ``python -m minicnn train shapes``).
    init: draw random weights (default: unless pretrained); False leaves zeros.
    """
    rng = np.random.default_rng(seed)
    init = not pretrained if init is None else init

    def conv(cin, cout):
        return Conv2d(cin, cout, 3, padding=1, dtype=dtype, rng=rng, init=init)

    model = Sequential({
        "normalize": Normalize(SHAPES_MEAN, SHAPES_STD),                         # images in [0, 1] come in
        "features": Sequential(
            conv(3, 16), ReLU(), MaxPool2d(2),                                   # 64 -> 32
            conv(16, 32), ReLU(), conv(32, 32), ReLU(), MaxPool2d(2),            # 32 -> 16
            conv(32, 64), ReLU(), conv(64, 64), ReLU(), MaxPool2d(2),            # 16 -> 8
            conv(64, 64), ReLU()),                                 # features.14, the Grad-CAM layer: 8x8
        "avgpool": AdaptiveAvgPool2d(4),
        "flatten": Flatten(),
        "classifier": Sequential(Linear(64 * 4 * 4, 128, dtype=dtype, rng=rng, init=init), ReLU(),
                                 Dropout(0.3, rng=rng), Linear(128, num_classes, dtype=dtype, rng=rng, init=init)),
    })
    if init:
        vgg_init(model, rng)
    if pretrained:
        from importlib import resources
        with resources.as_file(resources.files("minicnn").joinpath(SHAPES_WEIGHTS)) as path:
            if not path.exists():
                raise FileNotFoundError(f"the shipped weights {path} are missing; run: python -m minicnn train shapes")
            load_weights(model, path)
        model.to(dtype)
    return model.eval()


ARCHITECTURES["shapes_net"] = shapes_net
