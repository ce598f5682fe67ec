"""Model builders: the VGG and ResNet families laid out exactly as torchvision
names them, and the small VGG-style demo net that ships with the package.

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
from .blocks import Residual
from .layers import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Normalize, ReLU
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


# --------------------------------------------------------------------------
# ResNet (He et al. 2016), torchvision's layout ("v1.5": the stride is on the 3x3 conv of a bottleneck)
# --------------------------------------------------------------------------

RESNET_LAYERS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]),
                 "resnet50": ("bottleneck", [3, 4, 6, 3]), "resnet101": ("bottleneck", [3, 4, 23, 3]),
                 "resnet152": ("bottleneck", [3, 8, 36, 3])}
EXPANSION = {"basic": 1, "bottleneck": 4}          # a block's output channels over its planes


def basic_block(inplanes, planes, stride=1, make=None):
    """torchvision's BasicBlock: ``out = relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``.

    conv1 (3x3) carries the stride; the shortcut is the identity, or, when the
    stride or the channels change, ``downsample`` = 1x1 conv with the stride + BN.
    torchvision applies one ReLU module twice; here each use is its own ReLU
    (relu1, relu2), which changes no weight name.
    """
    conv, bn = make
    body = {"conv1": conv(inplanes, planes, 3, stride, 1), "bn1": bn(planes), "relu1": ReLU(),
            "conv2": conv(planes, planes, 3, 1, 1), "bn2": bn(planes)}
    return Residual(body, _downsample(inplanes, planes, stride, make), {"relu2": ReLU()})


def bottleneck(inplanes, planes, stride=1, make=None):
    """torchvision's Bottleneck: 1x1 conv to ``planes``, 3x3 conv with the stride, 1x1 conv to
    ``4 * planes``, each with batch norm, then ``out = relu3(body + shortcut(x))``."""
    conv, bn = make
    width = planes * EXPANSION["bottleneck"]
    body = {"conv1": conv(inplanes, planes, 1, 1, 0), "bn1": bn(planes), "relu1": ReLU(),
            "conv2": conv(planes, planes, 3, stride, 1), "bn2": bn(planes), "relu2": ReLU(),
            "conv3": conv(planes, width, 1, 1, 0), "bn3": bn(width)}
    return Residual(body, _downsample(inplanes, width, stride, make), {"relu3": ReLU()})


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck}


def _downsample(inplanes, outplanes, stride, make):
    """The shortcut: identity ({}) unless the block changes the stride or the channels."""
    if stride == 1 and inplanes == outplanes:
        return {}
    conv, bn = make
    return {"downsample": Sequential(conv(inplanes, outplanes, 1, stride, 0), bn(outplanes))}


def resnet(block, layers, num_classes=1000, weights=None, normalize=True, width=1.0, dtype=np.float32, seed=0,
           init=None):
    """A ResNet in torchvision's layout, so that a torchvision state dict loads by name.

    block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50/101/152).
    layers: blocks per stage, e.g. [3, 4, 6, 3].
    Stem: ``conv1`` 7x7 stride 2 (no bias, like every conv here), ``bn1``,
    ``relu``, ``maxpool`` 3x3 stride 2 padding 1; stages ``layer1`` ..
    ``layer4`` (64, 128, 256, 512 planes times ``width``, stride 1, 2, 2, 2);
    ``avgpool`` to 1x1, ``flatten``, ``fc``.
    normalize: start with ``Normalize(ImageNet mean, std)`` (images in [0, 1]).
    width: scales the channels (1.0 is the real network; small widths make quick test models).
    weights: a path (``.npz`` or ``.pth``) to load, or None for random weights
        (torchvision's initialisation: He-normal convs with fan_out, batch
        norm 1 and 0, PyTorch's default for ``fc``), seeded by ``seed``.
    The model is in eval mode: batch norm uses its running statistics.
    """
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError("model constructors load files only; for torchvision's ImageNet weights use "
                         "minicnn.hub.pretrained('resnet50') (after: python -m minicnn download resnet50)")
    if block not in BLOCKS:
        raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if len(layers) != 4 or min(layers) < 1:
        raise ValueError(f"layers must be four block counts >= 1, e.g. [2, 2, 2, 2]; got {layers!r}")
    rng = np.random.default_rng(seed)
    init = weights is None if init is None else init

    def conv(cin, cout, k, stride, padding):
        c = Conv2d(cin, cout, k, stride, padding, bias=False, dtype=dtype, init=False)
        if init:                                             # kaiming_normal_(mode="fan_out", nonlinearity="relu")
            c.params["weight"] = (rng.standard_normal(c.params["weight"].shape)
                                  * np.sqrt(2.0 / (cout * k * k))).astype(dtype)
        return c

    def bn(c):
        return BatchNorm2d(c, dtype=dtype)

    def planes_of(p):
        return max(1, int(round(p * width)))

    inplanes = planes_of(64)
    stem = {"conv1": conv(3, inplanes, 7, 2, 3), "bn1": bn(inplanes), "relu": ReLU(),
            "maxpool": MaxPool2d(3, 2, 1)}
    stages = {}
    for i, (count, planes, stride) in enumerate(zip(layers, (64, 128, 256, 512), (1, 2, 2, 2))):
        planes = planes_of(planes)
        blocks = []
        for b in range(count):
            blocks.append(BLOCKS[block](inplanes, planes, stride if b == 0 else 1, (conv, bn)))
            inplanes = planes * EXPANSION[block]
        stages[f"layer{i + 1}"] = Sequential(*blocks)
    head = {"normalize": Normalize(IMAGENET_MEAN, IMAGENET_STD)} if normalize else {}
    model = Sequential({**head, **stem, **stages, "avgpool": AdaptiveAvgPool2d(1), "flatten": Flatten(),
                        "fc": Linear(inplanes, num_classes, dtype=dtype, rng=rng, init=init)})
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def resnet18(num_classes=1000, weights=None, **kwargs):
    """ResNet-18: basic blocks [2, 2, 2, 2], 11,689,512 parameters."""
    return resnet("basic", [2, 2, 2, 2], num_classes, weights, **kwargs)


def resnet34(num_classes=1000, weights=None, **kwargs):
    """ResNet-34: basic blocks [3, 4, 6, 3], 21,797,672 parameters."""
    return resnet("basic", [3, 4, 6, 3], num_classes, weights, **kwargs)


def resnet50(num_classes=1000, weights=None, **kwargs):
    """ResNet-50: bottlenecks [3, 4, 6, 3], 25,557,032 parameters."""
    return resnet("bottleneck", [3, 4, 6, 3], num_classes, weights, **kwargs)


def resnet101(num_classes=1000, weights=None, **kwargs):
    """ResNet-101: bottlenecks [3, 4, 23, 3]."""
    return resnet("bottleneck", [3, 4, 23, 3], num_classes, weights, **kwargs)


def resnet152(num_classes=1000, weights=None, **kwargs):
    """ResNet-152: bottlenecks [3, 8, 36, 3]."""
    return resnet("bottleneck", [3, 8, 36, 3], num_classes, weights, **kwargs)


ARCHITECTURES.update({"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
                      "resnet152": resnet152})


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
        _load_shipped(model, SHAPES_WEIGHTS, "shapes")
        model.to(dtype)
    return model.eval()


ARCHITECTURES["shapes_net"] = shapes_net


SHAPES_RESNET_WEIGHTS = "assets/shapes_resnet.npz"


def shapes_resnet(pretrained=False, num_classes=6, dtype=np.float32, seed=0, init=None):
    """A small ResNet for the 64x64 shapes, beside ``shapes_net`` (the "Skip connections" tutorial).

    torchvision's ResNet layout with one basic block per stage at a quarter of
    the width (16, 32, 64, 128 channels), normalizing with the shapes' mean and
    std. The stem and the four stages divide the image by 32: ``layer4`` (the
    default Grad-CAM layer) is 2x2 at 64x64, ``layer3`` 4x4, ``layer2`` 8x8.
    pretrained: load the weights shipped with the package (trained by
    ``python -m minicnn train shapes_resnet``).
    """
    init = not pretrained if init is None else init
    body = resnet("basic", [1, 1, 1, 1], num_classes, normalize=False, width=0.25, dtype=dtype, seed=seed, init=init)
    model = Sequential({"normalize": Normalize(SHAPES_MEAN, SHAPES_STD), **body.children})
    if pretrained:
        _load_shipped(model, SHAPES_RESNET_WEIGHTS, "shapes_resnet")
        model.to(dtype)
    return model.eval()


def _load_shipped(model, asset, recipe):
    from importlib import resources
    with resources.as_file(resources.files("minicnn").joinpath(asset)) as path:
        if not path.exists():
            raise FileNotFoundError(f"the shipped weights {path} are missing; run: python -m minicnn train {recipe} -o shipped")
        load_weights(model, path)


ARCHITECTURES["shapes_resnet"] = shapes_resnet

# --------------------------------------------------------------------------
# Which architecture a state dict is, from its keys and shapes
# --------------------------------------------------------------------------

def identify(state):
    """(name, builder, kwargs) of the architecture that ``state`` ({key: array}) is, read from its keys
    and shapes, such that ``builder(**kwargs, init=False).load_state_dict(state)`` fits; ValueError saying
    what was found when nothing fits.

    shapes_net: its exact keys and shapes. VGG: the configuration is read off
    the indices of ``features.N.weight`` (a conv and its ReLU take two
    indices, a max-pool one). ResNet: the blocks per stage from
    ``layerS.B.*``, bottleneck when ``layer1.0.conv3`` exists, the width from
    ``conv1``. The number of classes comes from the last layer.
    """
    shape = {k: tuple(np.shape(v)) for k, v in state.items()}
    small = shapes_net(init=False).state_dict()
    if shape == {k: v.shape for k, v in small.items()}:
        return "shapes_net", shapes_net, {}
    if shape == {k: v.shape for k, v in shapes_resnet(init=False).state_dict().items()}:
        return "shapes_resnet", shapes_resnet, {}
    try:
        if "layer1.0.conv1.weight" in shape and "fc.weight" in shape:
            return _identify_resnet(shape)
        if "features.0.weight" in shape and "classifier.6.weight" in shape:
            return _identify_vgg(shape)
    except (KeyError, IndexError, ValueError) as e:        # a key the layout needs is missing, or mis-shaped
        raise ValueError(f"the weights look like a ResNet or a VGG but do not fit either ({type(e).__name__}: "
                         f"{e!s:.100})") from None
    raise ValueError(f"the weights fit no known architecture (shapes_net, VGG, ResNet): their first keys are "
                     f"{', '.join(list(shape)[:4])}")


def _identify_resnet(shape):
    block = "bottleneck" if "layer1.0.conv3.weight" in shape else "basic"
    layers = [len({k.split(".")[1] for k in shape if k.startswith(f"layer{s}.")}) for s in range(1, 5)]
    width = shape["conv1.weight"][0] / 64
    kwargs = {"block": block, "layers": layers, "num_classes": shape["fc.weight"][0]}
    if width != 1:
        kwargs["width"] = width
    name = next((n for n, (b, l) in RESNET_LAYERS.items() if (b, l) == (block, layers) and width == 1),
                f"resnet ({block} blocks {layers}, width {width:g})")
    return name, resnet, kwargs


def _identify_vgg(shape):
    convs = sorted(int(k.split(".")[1]) for k in shape if k.startswith("features.") and k.endswith(".weight"))
    config, i = [], 0
    while convs and i <= convs[-1]:
        if i in convs:
            config.append(shape[f"features.{i}.weight"][0])
            i += 2
        else:
            config.append("M")
            i += 1
    config.append("M")
    kwargs = {"num_classes": shape["classifier.6.weight"][0], "hidden": shape["classifier.0.weight"][0]}
    name = next((n for n, c in VGG_CONFIGS.items() if c == config), None)
    if name is None:
        return f"vgg ({config})", vgg, {"config": config, **kwargs}
    return name, vgg, {"config": name, **kwargs}
