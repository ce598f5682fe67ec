"""ImageNet input and output: torchvision's preprocessing (up to [0, 1]; the
model normalizes inside) and the 1000 class names."""
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

# torchvision's normalization, applied by the model's first layer (Normalize), not by preprocess
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_image(image):
    """A PIL image (RGB) from a path, an open file, a PIL image or an (H, W[, C]) array.

    Greyscale, RGBA, palette and 16-bit images are converted to 8-bit RGB
    (16-bit by scaling 0..65535 to 0..255; RGBA by dropping alpha).
    Raises FileNotFoundError, or ValueError for a file that is not an image or
    is larger than PIL's decompression-bomb limit (about 179 million pixels).
    """
    from PIL import Image, UnidentifiedImageError
    if isinstance(image, (str, Path)) or hasattr(image, "read"):     # a path or an open file
        name = str(image) if isinstance(image, (str, Path)) else getattr(image, "name", "the file")
        if isinstance(image, (str, Path)) and not Path(image).is_file():
            raise FileNotFoundError(f"no image file at {image}")
        try:
            with Image.open(image) as img:
                img.load()
                image = img.copy()
        except Image.DecompressionBombError as e:
            raise ValueError(f"{name}: the image is too large ({e})") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"{name}: not an image PIL can read ({e})") from None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
        if arr.dtype.kind == "f":
            arr = np.clip(arr, 0, 1) * 255
        elif arr.dtype == np.uint16:
            arr = arr / 257.0
        image = Image.fromarray(np.round(arr[..., :3] if arr.ndim == 3 else arr).astype(np.uint8))
    if not hasattr(image, "mode"):
        raise TypeError(f"expected a path, a PIL image or an array, got {type(image).__name__}")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float32)             # float32: a large 16-bit image is big enough
        scale = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.round(arr / scale * 255), 0, 255).astype(np.uint8))
    if image.mode == "P":               # palette (maybe with transparency) -> RGBA first, as PIL advises
        image = image.convert("RGBA")
    return image.convert("RGB")


MAX_ASPECT = 16      # preprocess refuses images more than 16 times longer than wide (or wider than tall)


def preprocess(image, size=224, resize=256):
    """torchvision's ImageNet evaluation transform, less the normalization -> float32 (1, 3, size, size) in [0, 1].

    Resize the shorter side to ``resize`` (bilinear), crop the centre
    ``size`` x ``size``, scale to [0, 1]. The mean/std normalization is the
    model's first layer (``vgg16()`` starts with ``Normalize(MEAN, STD)``),
    so the array is the picture itself: show it, perturb it, or take a black
    image as a baseline without converting anything.
    ``preprocess(image, 64, 64)`` gives the shapes model's input.
    """
    from PIL import Image
    img = load_image(image)
    w, h = img.size
    if max(w, h) > MAX_ASPECT * min(w, h):          # resizing the short side would make the long one enormous
        raise ValueError(f"the image is {w}x{h}: an aspect ratio beyond {MAX_ASPECT}:1, which resizing to "
                         f"{resize} on the short side would blow up to {max(w, h) * resize // max(1, min(w, h))} "
                         f"pixels on the long side; crop it first")
    if w <= h:
        new = (resize, int(resize * h / w))
    else:
        new = (int(resize * w / h), resize)
    img = img.resize(new, Image.BILINEAR)
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


@lru_cache(maxsize=1)
def class_names():
    """The 1000 ImageNet class names, in torchvision's order (index 652: "military uniform")."""
    text = resources.files("minicnn").joinpath("assets/imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise RuntimeError(f"the packaged class list has {len(names)} names, expected 1000: reinstall minicnn")
    return names


def decode_predictions(logits, top=5, names=None):
    """For each row of logits (N, K): [(class index, name, probability)] of the ``top`` best classes."""
    from .losses import softmax
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    names = class_names() if names is None else names
    if logits.shape[1] != len(names):
        raise ValueError(f"decode_predictions: {logits.shape[1]} logits but {len(names)} class names")
    probs = softmax(logits)
    result = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:top]
        result.append([(int(i), names[i], float(row[i])) for i in best])
    return result
