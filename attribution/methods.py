"""Pixel attribution methods: plain functions, NumPy in, NumPy out.

Common contract: ``method(model, x, target=None, ...)`` where

- model: a ``minicnn.Sequential`` classifier, returning logits (N, K);
- x: images (N, C, H, W) in [0, 1], with the model's dtype (every model here
  normalizes inside, so a baseline of zeros is a black image);
- target: an int (the same class for every image), a sequence of N ints, or
  None (each image's predicted class).

The differentiated score is always the target class's logit, before the
softmax (as in Simonyan et al. and Grad-CAM).
"""
import numpy as np

from minicnn.blocks import Residual
from minicnn.layers import Conv2d, ReLU

from .progress import Progress

IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
SMOOTHGRAD_VARIANTS = ("mean", "squared", "var")


# --------------------------------------------------------------------------
# The shared first steps: check the input, run the model, pick the targets
# --------------------------------------------------------------------------

MAX_PIXELS = 2048 * 2048        # per image: a VGG-16 at this size keeps about 30 GB of activations
WORK_BUDGET = 2 * 2 ** 30       # bytes a method may set aside for its own arrays (not the model's activations)


def check_images(x):
    """Raise ValueError unless x is a finite float32 or float64 (N, C, H, W) array of at most MAX_PIXELS
    pixels per image."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a NumPy array of images (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        hint = "; for one image use x[None]" if x.ndim == 3 else ""
        raise ValueError(f"x must have shape (N, C, H, W), got {x.shape}{hint}")
    if x.dtype not in (np.float32, np.float64):
        hint = (": float16's largest number is 65504, and gradients and logits overflow it; use "
                "x.astype(np.float32) and a float32 model") if x.dtype == np.float16 else ""
        raise ValueError(f"x must be float32 or float64 (scaled and normalized images), got {x.dtype}{hint}")
    if x.shape[2] * x.shape[3] > MAX_PIXELS:
        raise ValueError(f"images of {x.shape[2]} x {x.shape[3]} pixels are above the limit of {MAX_PIXELS:,} "
                         f"(2048 x 2048): resize them (ImageNet models take 224 x 224)")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinity; only finite values are accepted")


def check_work(nbytes, what, lower):
    """ValueError when ``what`` would take more than WORK_BUDGET bytes: says the estimate and ``lower``
    (how to bring it down). Called before the arrays are made."""
    if nbytes > WORK_BUDGET:
        raise ValueError(f"{what} would take about {nbytes / 2 ** 30:.1f} GiB (the limit is "
                         f"{WORK_BUDGET / 2 ** 30:.0f} GiB); {lower}")


def check_logits(logits, what):
    """ValueError when the model's output on ``what`` (a baseline, perturbed copies) is not finite."""
    if not np.isfinite(logits).all():
        raise ValueError(f"the model's output on {what} is not finite (it overflowed): the baseline is far "
                         f"outside the range the model takes (images in [0, 1]); use one within it")
    return logits


def check_result(result, method, cause):
    """``result``, or ValueError naming ``method`` and the likely ``cause`` when it holds NaN or infinity:
    no method returns a map that is not a number without saying why."""
    if not np.isfinite(result).all():
        raise ValueError(f"{method} gave NaN or infinity: {cause}")
    return result


def check_positive(value, what, minimum=1):
    """An int >= minimum (a batch size, a number of samples), or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_batch_size(value):
    """None (sized by memory, see ``batch_for``) or an int >= 1, or ValueError."""
    return None if value is None else check_positive(value, "batch_size")


ACTIVATION_BUDGET = 16 * 2 ** 20


def batch_for(model, n_images, batch_size, most=64):
    """The batch size to use: ``batch_size`` if given (an int >= 1), else, for None, as many images as keep
    the model's activations within ACTIVATION_BUDGET bytes, at least one and at most ``most``.

    Every layer's output stays in memory until the backward pass
    (``model.outputs``), so a batch costs its size times what those outputs
    take per image, read off the forward pass just made on ``n_images``
    images. Small batches are also the fast ones, measured per image on
    SmoothGrad: the 64 px shapes_net (1.4 MB per image) is fastest at 4-8
    images (3.4 ms, against 5.0 ms at 64), VGG-16 at 224 px (110 MB per
    image) at one (0.40 s, against 0.43 at 2 and 0.48 at 4): large arrays
    leave the cache, and fresh ones cost page faults on every call.
    """
    if batch_size is not None:
        return check_positive(batch_size, "batch_size")
    kept = {id(out): out for out in getattr(model, "outputs", {}).values()}     # a block's output is its last layer's
    per_image = sum(getattr(out, "nbytes", 0) for out in kept.values()) / max(1, n_images)
    return int(min(most, max(1, ACTIVATION_BUDGET // max(per_image, 1))))


def resolve_targets(target, logits):
    """The target class of each image as an int array (N,), checked against the K logits.

    Also refuses logits that are not finite: inputs so large that the model overflows would otherwise
    give NaN maps (or all-zero ones) with nothing but a warning."""
    if not np.isfinite(logits).all():
        raise ValueError("the model's output is not finite (it overflowed): the input is far outside the range the "
                         "model takes (images in [0, 1]); rescale it")
    N, K = logits.shape
    if target is None:
        return logits.argmax(axis=1)
    targets = np.atleast_1d(np.asarray(target))
    if targets.dtype.kind not in "iu" or targets.ndim != 1:
        raise ValueError(f"target must be an int, a sequence of {N} ints or None, got {target!r}")
    if targets.size == 1:
        targets = np.repeat(targets, N)
    if targets.size != N:
        raise ValueError(f"target has {targets.size} entries for {N} images; give one int or {N} ints")
    if targets.min() < 0 or targets.max() >= K:
        raise ValueError(f"target {targets.tolist()} out of range: the model has {K} classes (0 to {K - 1})")
    return targets


def one_hot(targets, logits):
    """d(logit of each image's target) / d(logits): (N, K), 1 at the target, else 0."""
    dout = np.zeros_like(logits)
    dout[np.arange(len(targets)), targets] = 1
    return dout


def sum_by_image(total, rows, values):
    """total[r] += values[k] for each row k of image r = rows[k] (rows sorted)."""
    for r in np.unique(rows):
        total[r] += values[rows == r].sum(axis=0)


def _gradient(model, x, target, relu_rule):
    check_images(x)
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    return check_result(model.backward(one_hot(targets, logits), relu_rule=relu_rule), f"the {relu_rule} backward pass",
                        "a gradient overflowed in the model's dtype (weights or inputs too large?)")


# --------------------------------------------------------------------------
# Gradient methods: one backward pass each, differing only in the ReLU rule
# --------------------------------------------------------------------------

def vanilla_gradient(model, x, target=None):
    """Vanilla Gradient (Simonyan et al. 2013): d logit / d x, signed, (N, C, H, W).

    The paper displays max over channels of |gradient|; that reduction is in
    ``attribution.visualize``, the raw signed gradient is returned here.
    """
    return _gradient(model, x, target, "gradient")


def gradient_x_input(model, x, target=None):
    """Gradient x Input: x * d logit / d x, (N, C, H, W)."""
    return x * vanilla_gradient(model, x, target)


def deconvnet(model, x, target=None):
    """DeconvNet (Zeiler & Fergus 2014) as a backward pass, (N, C, H, W).

    Every ReLU passes ``g * (g > 0)``; conv, pooling switches and linear
    layers use their ordinary gradient (Springenberg et al.'s formulation).
    """
    return _gradient(model, x, target, "deconvnet")


def guided_backprop(model, x, target=None):
    """Guided Backprop (Springenberg et al. 2015), (N, C, H, W): every ReLU
    passes ``g * (x > 0) * (g > 0)``."""
    return _gradient(model, x, target, "guided")


# --------------------------------------------------------------------------
# Where a CAM looks, and how a coarse map reaches the image (the CAMs themselves: cam_family.py)
# --------------------------------------------------------------------------

def default_cam_layer(model):
    """Where Grad-CAM looks when no layer is named, for any network: the rectified output of the last
    convolution.

    - In a chain of layers, the ReLU right after the last Conv2d (VGG-16:
      ``features.29``; shapes_net: ``features.14``), or the conv itself if no
      ReLU follows.
    - When the last convolution sits inside a residual block, that block's
      output (after its sum and ReLU), named by the largest container it ends:
      ResNet's ``layer4`` (pytorch-grad-cam's ``model.layer4[-1]``, the same array).
    """
    layers = model.named_layers()
    convs = [i for i, (_, layer) in enumerate(layers) if isinstance(layer, Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer; name a layer for Grad-CAM")
    i = convs[-1]
    name = layers[i][0]
    blocks = [b for b in _ancestors(name) if isinstance(model[b], Residual)]
    if blocks:
        return _largest_ending_with(model, blocks[0])
    if i + 1 < len(layers) and isinstance(layers[i + 1][1], ReLU):
        return layers[i + 1][0]
    return name


def _ancestors(name):
    """The blocks holding ``name``, outermost first: "layer4.1.conv2" -> ["layer4", "layer4.1"]."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _largest_ending_with(model, name):
    """The outermost container whose last child is (a container ending with) ``name``, below the model."""
    while "." in name:
        parent = name.rpartition(".")[0]
        if list(model[parent].children)[-1] != name.rpartition(".")[2]:
            break
        name = parent
    return name


def cam_layer(model, layer, method):
    """The layer a CAM reads after a forward pass: ``layer``, or ``default_cam_layer`` for None; ValueError
    naming ``method`` and the usable layers unless it has a spatial output (N, K, h, w)."""
    name = default_cam_layer(model) if layer is None else layer
    spatial = [n for n, out in model.outputs.items() if out.ndim == 4]
    if name not in spatial:
        reason = "has no spatial output" if name in model.outputs else "is not a layer of this model"
        raise ValueError(f"{method} layer {name!r} {reason}; usable layers: {', '.join(spatial)}")
    return name


def resize_matrix(n_in, n_out, mode="bilinear", dtype=np.float64):
    """The (n_out, n_in) matrix that resizes one axis like ``F.interpolate``.

    bilinear (align_corners=False): source ``(d + 0.5) * n_in / n_out - 0.5``,
    clamped at 0, between its two neighbours; nearest: source
    ``floor(d * n_in / n_out)``.
    """
    R = np.zeros((n_out, n_in), dtype=dtype)
    scale = n_in / n_out
    for d in range(n_out):
        if mode == "nearest":
            R[d, min(int(np.floor(d * scale)), n_in - 1)] = 1
        elif mode == "bilinear":
            src = max((d + 0.5) * scale - 0.5, 0.0)
            i0 = int(src)
            i1 = min(i0 + 1, n_in - 1)
            frac = src - i0
            R[d, i0] += 1 - frac
            R[d, i1] += frac
        else:
            raise ValueError(f"unknown upsampling mode {mode!r}; use 'bilinear' or 'nearest'")
    return R


def upsample(maps, size, mode="bilinear"):
    """Resize maps (N, h, w) to ``size`` = (H, W): ``R_h @ maps @ R_w.T``."""
    maps = np.asarray(maps)
    H, W = size
    Rh = resize_matrix(maps.shape[-2], H, mode, maps.dtype)
    Rw = resize_matrix(maps.shape[-1], W, mode, maps.dtype)
    return Rh @ maps @ Rw.T


def scale_01(maps):
    """Scale each map (N, ...) to [0, 1] by its own min and max (a constant map becomes 0)."""
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    span = np.where(hi > lo, hi - lo, 1)
    return ((flat - lo[:, None]) / span[:, None]).reshape(maps.shape)


# --------------------------------------------------------------------------
# SmoothGrad: any method, averaged over noisy copies
# --------------------------------------------------------------------------

def smoothgrad(method, model, x, target=None, n_samples=50, noise_level=0.15, stdev=None, batch_size=None,
               seed=None, variant="mean", noise=None, progress=False, **method_kwargs):
    """SmoothGrad (Smilkov et al. 2017) around any method above.

    R(x) = mean over i of method(x + g_i), g_i ~ N(0, sigma^2), where
    sigma = noise_level * (x.max() - x.min()) per image (the paper's and PAIR's
    convention), or the absolute ``stdev`` if given (Captum's convention).

    variant: "mean" (SmoothGrad), "squared" (mean of squares, SmoothGrad^2)
        or "var" (VarGrad: E[a^2] - E[a]^2).
    noise: optional (N, n_samples, C, H, W) array used instead of random
        noise, to compare exactly with another implementation (the noisy
        copies are ``x[:, None] + noise``).
    target: None means each image's predicted class on the clean image, kept
        for all its noisy copies. The noisy copies go through ``method`` in
        batches of ``batch_size`` (None: as many as fit in memory, ``batch_for``).
        Returns the shape ``method`` returns for one image, per image.
    progress: True for a progress line on stderr, or a callable f(done, total) (``attribution.progress``).
    """
    check_images(x)
    if variant not in SMOOTHGRAD_VARIANTS:
        raise ValueError(f"unknown SmoothGrad variant {variant!r}; use one of {SMOOTHGRAD_VARIANTS}")
    check_positive(n_samples, "n_samples")
    check_batch_size(batch_size)
    N = len(x)
    targets = resolve_targets(target, model.forward(x))
    batch_size = batch_for(model, N, batch_size)
    if noise is None:
        if stdev is None:
            stdev = noise_level * (x.reshape(N, -1).max(axis=1) - x.reshape(N, -1).min(axis=1))
        sigma = np.broadcast_to(np.asarray(stdev, dtype=np.float64), (N,))
        rng = np.random.default_rng(seed)
    elif noise.shape != (N, n_samples) + x.shape[1:]:
        raise ValueError(f"noise must have shape {(N, n_samples) + x.shape[1:]}, got {noise.shape}")
    total = total_sq = None
    bar = Progress("SmoothGrad samples", N * n_samples, progress)
    for start in range(0, N * n_samples, batch_size):
        rows = np.arange(start, min(start + batch_size, N * n_samples)) // n_samples   # the image of each copy
        if noise is None:     # drawn batch by batch: the same numbers as one (N, n_samples, ...) draw, less memory
            g = rng.standard_normal((len(rows),) + x.shape[1:]) * sigma[rows, None, None, None]
        else:
            g = noise.reshape((N * n_samples,) + x.shape[1:])[start:start + len(rows)]
        a = method(model, (x[rows] + g).astype(x.dtype), targets[rows], **method_kwargs)
        if total is None:
            total = np.zeros((N,) + a.shape[1:], dtype=np.float64)
            total_sq = np.zeros_like(total)
        sum_by_image(total, rows, a)
        sum_by_image(total_sq, rows, a.astype(np.float64) ** 2)
        bar.update(start + len(rows))
    bar.close()
    mean, mean_sq = total / n_samples, total_sq / n_samples
    result = {"mean": mean, "squared": mean_sq, "var": mean_sq - mean ** 2}[variant]
    return check_result(result.astype(x.dtype), "SmoothGrad", f"the {variant} of the samples' maps overflows "
                        f"{x.dtype}; use float64 images and model")


# --------------------------------------------------------------------------
# Integrated Gradients
# --------------------------------------------------------------------------

def ig_points(steps, method="riemann_trapezoid"):
    """(alphas, weights) of the path integral's quadrature on [0, 1], as Captum defines them.

    riemann_trapezoid: alphas = linspace(0, 1, n), weights 1/n with the first
    and last halved (they sum to (n-1)/n, Captum's choice); riemann_left,
    _right, _middle: n points at the left ends, right ends or middles of n
    equal steps, weights 1/n; gausslegendre: Gauss-Legendre nodes on [0, 1].
    """
    if method not in IG_METHODS:
        raise ValueError(f"unknown integration method {method!r}; use one of {IG_METHODS}")
    if not isinstance(steps, (int, np.integer)) or steps < (2 if method == "riemann_trapezoid" else 1):
        raise ValueError(f"steps must be an int >= {2 if method == 'riemann_trapezoid' else 1}, got {steps!r}")
    n = int(steps)
    if method == "gausslegendre":
        check_work(3 * 8 * n * n, f"Gauss-Legendre with {n} steps (its nodes come from an {n} x {n} matrix)",
                   "use at most about 9000 steps, or a Riemann method")
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1), 0.5 * weights
    weights = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        weights[0] = weights[-1] = 0.5 / n
        return np.linspace(0, 1, n), weights
    alphas = {"riemann_left": np.linspace(0, 1 - 1 / n, n), "riemann_right": np.linspace(1 / n, 1, n),
              "riemann_middle": np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)}[method]
    return alphas, weights


def integrated_gradients(model, x, target=None, baseline=None, steps=50, method="riemann_trapezoid",
                         batch_size=None, return_delta=False, progress=False):
    """Integrated Gradients (Sundararajan et al. 2017).

    IG(x) = (x - x') * sum_j w_j * dF(x' + a_j (x - x'))/dx with the
    quadrature of ``ig_points`` (Captum's), F the target logit, x' the
    baseline (zeros by default: a black image, since every model here takes
    images in [0, 1] and normalizes inside). The path points of all images
    go through the model in batches of ``batch_size`` (None: as many as fit
    in memory, ``batch_for``).

    Returns the attributions (N, C, H, W); with ``return_delta=True`` (as
    Captum's ``return_convergence_delta``), ``(attributions, delta)`` where
    delta (N,), the completeness error, is sum(attributions) - (F(x) - F(x')).
    progress: True for a progress line on stderr, or a callable f(done, total).
    """
    check_images(x)
    check_batch_size(batch_size)
    N = len(x)
    baseline = check_baseline(baseline, x)
    alphas, weights = ig_points(steps, method)
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    end = logits[np.arange(N), targets]
    start = check_logits(model.forward(baseline), "the baseline")[np.arange(N), targets]
    batch_size = batch_for(model, N, batch_size)
    # every (image, alpha) pair is one row, image-major; a batch of rows is built when it is needed
    n_rows, alphas, difference = N * len(alphas), alphas.astype(x.dtype), x - baseline
    total = np.zeros_like(x, dtype=np.float64)
    bar = Progress("Integrated Gradients path points", n_rows, progress)
    for s in range(0, n_rows, batch_size):
        rows = np.arange(s, min(s + batch_size, n_rows))
        image, step = rows // len(alphas), rows % len(alphas)
        path = baseline[image] + alphas[step, None, None, None] * difference[image]
        grads = vanilla_gradient(model, path, targets[image])
        sum_by_image(total, image, grads * weights[step, None, None, None])
        bar.update(s + len(rows))
    bar.close()
    attributions = check_result((difference * total).astype(x.dtype), "Integrated Gradients",
                                "a gradient overflowed on the path from the baseline to the image")
    if not return_delta:
        return attributions
    delta = attributions.reshape(N, -1).sum(axis=1, dtype=np.float64) - (end - start)
    return attributions, delta


# --------------------------------------------------------------------------
# DeepLIFT: the fourth ReLU rule
# --------------------------------------------------------------------------

def check_baseline(baseline, x):
    """The baseline as an array of x's shape and dtype (None: zeros, a black image); ValueError if it cannot be."""
    if baseline is None:
        return np.zeros_like(x)
    try:
        baseline = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    except ValueError:
        raise ValueError(f"the baseline must be a number or an array broadcastable to the images {x.shape}, "
                         f"got shape {np.shape(baseline)}") from None
    if not np.isfinite(baseline).all():
        raise ValueError("the baseline contains NaN or infinity")
    return baseline


def deeplift(model, x, target=None, baseline=None, return_delta=False):
    """DeepLIFT with the Rescale rule (Shrikumar et al. 2017), (N, C, H, W).

    Two forward passes, one on the baseline x' (the reference activations)
    and one on x, then one backward pass in which every ReLU passes the
    secant slope ``(relu(x) - relu(x')) / (x - x')`` instead of its gradient
    (``relu_rule="rescale"``) and every max-pool splits each window's change
    between the two argmaxes (``MaxPool2d.rescale_backward``); linear layers
    pass the multipliers like gradients. The result is
    ``(x - x') * multipliers`` (Captum's ``multiply_by_inputs=True``), and it
    sums exactly, up to rounding, to ``F(x) - F(x')`` for the target logit F
    ("summation-to-delta"), max-pooling included.

    baseline: None (zeros: a black image), a number, or an array broadcastable to x.
    return_delta: also return the summation error (N,), sum(attributions) - (F(x) - F(x')).
    """
    check_images(x)
    baseline = check_baseline(baseline, x)
    model.forward(baseline)
    reference = model.caches()                                       # every layer's input on the baseline
    reference_logits = check_logits(model.outputs[model.layer_names()[-1]], "the baseline")
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    multipliers = model.backward(one_hot(targets, logits), relu_rule="rescale", reference=reference)
    attributions = check_result((x - baseline) * multipliers, "DeepLIFT",
                                "a multiplier overflowed (x - baseline too large for the dtype?)")
    if not return_delta:
        return attributions
    rows = np.arange(len(x))
    delta = attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - (
        logits[rows, targets] - reference_logits[rows, targets])
    return attributions, delta


# --------------------------------------------------------------------------
# Occlusion
# --------------------------------------------------------------------------

def occlusion(model, x, target=None, window=8, stride=4, baseline=0.0, batch_size=None, progress=False):
    """Occlusion (Zeiler & Fergus 2014): how much the target logit drops when
    a window of the image is replaced by ``baseline``.

    Windows (h, w) cover all channels and start at 0, s, 2s, ...:
    ``ceil((H - h) / s) + 1`` positions per axis, the last one cut at the edge
    when the stride does not divide (Captum's layout). Each pixel gets the
    mean drop of the windows that cover it. Returns (N, C, H, W), equal
    across channels. The occluded copies go through the model in batches of
    ``batch_size`` (None: as many as fit in memory, ``batch_for``).
    progress: True for a progress line on stderr, or a callable f(done, total).
    """
    check_images(x)
    check_batch_size(batch_size)
    N, C, H, W = x.shape
    wh, ww = (window, window) if np.isscalar(window) else tuple(window)
    sh, sw = (stride, stride) if np.isscalar(stride) else tuple(stride)
    if not (0 < wh <= H and 0 < ww <= W and sh > 0 and sw > 0):
        raise ValueError(f"window {(wh, ww)} must fit the image {(H, W)} and stride {(sh, sw)} be positive")
    baseline = check_baseline(baseline, x)
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    batch_size = batch_for(model, N, batch_size)
    original = logits[np.arange(N), targets]
    starts = [(i, j) for i in range(0, int(np.ceil((H - wh) / sh)) * sh + 1, sh)
              for j in range(0, int(np.ceil((W - ww) / sw)) * sw + 1, sw)]
    total = np.zeros((N, H, W), dtype=np.float64)
    count = np.zeros((H, W), dtype=np.float64)
    for i, j in starts:
        count[i:i + wh, j:j + ww] += 1
    bar = Progress("occluded copies", N * len(starts), progress)
    for n in range(N):
        for b in range(0, len(starts), batch_size):
            chunk = starts[b:b + batch_size]
            batch = np.repeat(x[n:n + 1], len(chunk), axis=0)
            for k, (i, j) in enumerate(chunk):
                batch[k, :, i:i + wh, j:j + ww] = baseline[n, :, i:i + wh, j:j + ww]
            drops = original[n] - check_logits(model.forward(batch), "the occluded copies")[:, targets[n]]
            for drop, (i, j) in zip(drops, chunk):
                total[n, i:i + wh, j:j + ww] += drop
            bar.update(n * len(starts) + b + len(chunk))
    bar.close()
    maps = (total / count).astype(x.dtype)
    return np.repeat(maps[:, None], C, axis=1)



# --------------------------------------------------------------------------
# SHAP from gradients: DeepLIFT-SHAP and GradientSHAP (Captum's estimators)
# --------------------------------------------------------------------------

def check_baselines(baselines, x, seed=0):
    """A set of baselines (B, C, H, W) in x's dtype. None: 8 images of uniform noise in [0, 1] drawn with
    ``seed`` (a spread of references, where one black image would be a single point)."""
    if baselines is None:
        return np.random.default_rng(seed).uniform(0, 1, (8,) + x.shape[1:]).astype(x.dtype)
    baselines = np.asarray(baselines, dtype=x.dtype)
    if baselines.ndim != 4 or baselines.shape[1:] != x.shape[1:] or len(baselines) < 1:
        raise ValueError(f"baselines must be an array of images (B, C, H, W) with (C, H, W) = {x.shape[1:]}, "
                         f"got shape {baselines.shape}")
    if not np.isfinite(baselines).all():
        raise ValueError("the baselines contain NaN or infinity")
    return baselines


def deeplift_shap(model, x, target=None, baselines=None):
    """DeepLIFT-SHAP (Lundberg & Lee 2017; Captum's ``DeepLiftShap``), (N, C, H, W): DeepLIFT (Rescale)
    against each of the B baselines, averaged. Its sum is F(x) minus the mean of the baselines' F, for
    the target logit F ("summation-to-delta" against the mean reference).
    baselines: (B, C, H, W), or None for ``check_baselines``'s default set."""
    check_images(x)
    baselines = check_baselines(baselines, x)
    N, B = len(x), len(baselines)
    targets = resolve_targets(target, model.forward(x))
    pairs = np.repeat(x, B, axis=0)                                  # each image once per baseline ...
    references = np.tile(baselines, (N, 1, 1, 1))                    # ... against every baseline
    a = deeplift(model, pairs, np.repeat(targets, B), baseline=references)
    return a.reshape((N, B) + x.shape[1:]).mean(axis=1).astype(x.dtype)


def gradient_shap(model, x, target=None, baselines=None, n_samples=50, stdevs=0.0, seed=0, batch_size=None,
                  draws=None, progress=False):
    """GradientSHAP (Lundberg & Lee 2017; Captum's ``GradientShap``), (N, C, H, W).

    For each of ``n_samples`` samples per image: a baseline b drawn from ``baselines``, a point
    alpha ~ U(0, 1) on the path, Gaussian noise of std ``stdevs`` on the image (x' = x + noise); the
    gradient at ``alpha x' + (1 - alpha) b`` times ``(x' - b)``; the mean over samples. With one baseline
    and no noise its expectation is Integrated Gradients from that baseline.
    draws: (baseline index (N*n_samples,), alphas (N*n_samples,), noise (N*n_samples, C, H, W) or None) to
        use instead of the seeded draws, image-major, to compare exactly with another implementation.
    """
    check_images(x)
    n_samples = check_positive(n_samples, "n_samples")
    check_batch_size(batch_size)
    if not (np.isfinite(stdevs) and stdevs >= 0):
        raise ValueError(f"stdevs must be a finite number >= 0, got {stdevs!r}")
    baselines = check_baselines(baselines, x)
    N, S = len(x), len(x) * n_samples
    targets = resolve_targets(target, model.forward(x))
    if draws is None:
        rng = np.random.default_rng(seed)
        index, alphas = rng.integers(0, len(baselines), S), rng.uniform(0, 1, S)
        noise = None if stdevs == 0 else rng.standard_normal((S,) + x.shape[1:]) * stdevs
    else:
        index, alphas, noise = draws
    batch_size = batch_for(model, N, batch_size)
    total = np.zeros_like(x, dtype=np.float64)
    bar = Progress("GradientSHAP samples", S, progress)
    for s in range(0, S, batch_size):
        rows = np.arange(s, min(s + batch_size, S))
        image = rows // n_samples
        noisy = x[image] if noise is None else (x[image] + noise[rows]).astype(x.dtype)
        b = baselines[index[rows]]
        a = alphas[rows].astype(x.dtype)[:, None, None, None]
        grads = vanilla_gradient(model, a * noisy + (1 - a) * b, targets[image])
        sum_by_image(total, image, grads * (noisy - b))
        bar.update(rows[-1] + 1)
    bar.close()
    return check_result((total / n_samples).astype(x.dtype), "GradientSHAP",
                        "a gradient overflowed between the baselines and the images")
