"""The CAM family: one mechanism, many weightings.

Every class activation map starts the same way: one forward pass, the
activations A (N, K, h, w) at a layer and, for the gradient CAMs, the gradient
G of each image's target logit at that layer (one backward pass that stops
there). What differs is a few lines that turn (A, G) into a map (N, h, w):

    grad_cam_map            sum_k mean(G_k) A_k                        Selvaraju et al. 2017
    grad_cam_plus_plus_map  sum_k sum(relu(G_k) a_k) A_k, a = G^2 / (2 G^2 + sum(A_k) G^3)
                                                                       Chattopadhay et al. 2018
    xgrad_cam_map           sum_k sum(G_k A_k / sum(A_k)) A_k           Fu et al. 2020
    hires_cam_map           sum_k G_k A_k  (element-wise, no averaging) Draelos & Carin 2020
    grad_cam_elementwise_map sum_k relu(G_k A_k)                        (pytorch-grad-cam)
    layer_cam_map           sum_k relu(G_k) A_k                         Jiang et al. 2021
    eigen_cam_map           A's first principal component               Muhammad & Yeasin 2020
    eigen_grad_cam_map      the same on G A                             (pytorch-grad-cam)

``cam(model, x, target, layer, weighting)`` runs the passes and applies the
ReLU every CAM ends with; a user's own ``weighting(A, G) -> (N, h, w)`` is
one more variant (``grad_cam`` is ``cam`` with ``grad_cam_map``).
``score_cam`` and ``ablation_cam`` weigh each channel by forward passes
instead (one per channel). All these maps are at the layer's resolution,
like ``grad_cam``, and equal pytorch-grad-cam 1.5.7's before its resize and
min-max scaling. ``fullgrad`` reads no single layer: it adds the input
gradient and the gradient at every bias, at the image's resolution.
"""
import numpy as np

import minicnn as mc
from minicnn.assignments import recorded_pass  # a student release's grad_cam_map calls the student's grad_cam
from minicnn.layers import Layer
from minicnn.losses import softmax

from .methods import (batch_for, cam_layer, check_batch_size, check_images, check_logits, check_result,
                      guided_backprop, one_hot, resize_matrix, resolve_targets, upsample)
from .progress import Progress

# --------------------------------------------------------------------------
# The weightings: (A, G) -> the map before the ReLU, (N, h, w)
# --------------------------------------------------------------------------


def _spatial_sum(v):
    return v.sum(axis=(2, 3), keepdims=True)


def grad_cam_map(A, G):
    """Grad-CAM: each channel weighted by its gradient's mean over (h, w). (Assignment C's ``grad_cam`` on the
    recorded pass gives the same map after ``cam``'s ReLU.)"""
    # BEGIN SOLUTION gradcam_smoothgrad.grad_cam(*recorded_pass(A, G))
    return np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A)
    # END SOLUTION


def grad_cam_plus_plus_map(A, G):
    """Grad-CAM++: positive gradients, each position weighted by a = G^2 / (2 G^2 + sum(A) G^3 + 1e-6)
    (0 where G = 0), summed over (h, w)."""
    # BEGIN SOLUTION cam_weightings.grad_cam_plus_plus(A, G)
    a = G ** 2 / (2 * G ** 2 + _spatial_sum(A) * G ** 3 + 1e-6)
    a = np.where(G != 0, a, 0)
    return np.einsum("nk,nkhw->nhw", (np.maximum(G, 0) * a).sum(axis=(2, 3)), A)
    # END SOLUTION


def xgrad_cam_map(A, G):
    """XGrad-CAM: the gradient weighted by the normalised activation, sum(G A / (sum(A) + 1e-7))."""
    return np.einsum("nk,nkhw->nhw", (G * A / (_spatial_sum(A) + 1e-7)).sum(axis=(2, 3)), A)


def hires_cam_map(A, G):
    """HiResCAM: G times A element-wise, summed over channels (no averaging of the gradient)."""
    return (G * A).sum(axis=1)


def grad_cam_elementwise_map(A, G):
    """Grad-CAM element-wise: relu(G A) summed over channels."""
    return np.maximum(G * A, 0).sum(axis=1)


def layer_cam_map(A, G):
    """LayerCAM: the positive gradient at each position times A, summed over channels."""
    # BEGIN SOLUTION cam_weightings.layer_cam(A, G)
    return (np.maximum(G, 0) * A).sum(axis=1)
    # END SOLUTION


def first_component(V):
    """Each image's projection on the first principal component of its (h*w, K) matrix of channel values,
    centred per channel -> (N, h, w). The SVD's sign is arbitrary; it is fixed so that the projection
    correlates positively with the channel sum of V (where the channels agree is where the map is high)."""
    maps = []
    for v in V:
        M = v.reshape(v.shape[0], -1).T                               # (h*w, K)
        M = M - M.mean(axis=0)
        vt = np.linalg.svd(M, full_matrices=False)[2]
        p = M @ vt[0]
        total = M.sum(axis=1)
        maps.append((p if p @ total >= 0 else -p).reshape(v.shape[1:]))
    return np.stack(maps)


def eigen_cam_map(A, G=None):
    """Eigen-CAM: the first principal component of the activations (gradient-free)."""
    return first_component(A)


def eigen_grad_cam_map(A, G):
    """EigenGrad-CAM: the first principal component of G A."""
    return first_component(G * A)


WEIGHTINGS = {"grad_cam": grad_cam_map, "grad_cam_plus_plus": grad_cam_plus_plus_map, "xgrad_cam": xgrad_cam_map,
              "hires_cam": hires_cam_map, "grad_cam_elementwise": grad_cam_elementwise_map,
              "layer_cam": layer_cam_map, "eigen_cam": eigen_cam_map, "eigen_grad_cam": eigen_grad_cam_map}


# --------------------------------------------------------------------------
# The mechanism
# --------------------------------------------------------------------------

def activations_and_gradients(model, x, target=None, layer=None, gradients=True, method="CAM"):
    """(A, G, targets, layer name, logits): the activations at ``layer`` (None: ``default_cam_layer``) and the
    gradient of each image's target logit there (None when ``gradients`` is False). ``method`` names the
    caller in errors."""
    check_images(x)
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    name = cam_layer(model, layer, method)
    A = model.outputs[name]
    G = model.backward(one_hot(targets, logits), until=name) if gradients else None
    return A, G, targets, name, logits


def cam(model, x, target=None, layer=None, weighting=grad_cam_map):
    """A class activation map (N, h, w) at ``layer``: ``relu(weighting(A, G))``.

    weighting: one of the ``*_map`` functions above (``WEIGHTINGS``), or your own ``(A, G) -> (N, h, w)``.
    """
    return _weighted(model, x, target, layer, weighting)[0]


def _weighted(model, x, target, layer, weighting):
    """``cam``'s map and the (targets, logits) of its forward pass, whose caches the model still holds."""
    method = getattr(weighting, "__name__", "CAM").removesuffix("_map")
    A, G, targets, name, logits = activations_and_gradients(model, x, target, layer,
                                                            weighting is not eigen_cam_map, method)
    maps = check_result(np.maximum(weighting(A, G), 0), method,
                        f"an activation or gradient at {name} overflowed in the model's dtype")
    return maps, targets, logits


def grad_cam(model, x, target=None, layer=None):
    """Grad-CAM (Selvaraju et al. 2017): the coarse map (N, h, w) at ``layer``.

    1. forward; 2. the gradient of the target logit at the layer's output
    A (N, K, h, w); 3. alpha_k = the mean of that gradient over (h, w);
    4. ReLU(sum_k alpha_k A_k). Steps 1, 2 and 4 are every CAM's (``cam``),
    step 3 is Grad-CAM's weighting (``grad_cam_map``). No upsampling or
    scaling here: see ``upsample`` and ``scale_01``. layer: a layer name,
    default ``default_cam_layer(model)``; its output must be spatial (4-D).
    """
    return cam(model, x, target, layer, grad_cam_map)


grad_cam.weighting = grad_cam_map                 # what ``guided`` reads to reuse the CAM's forward pass


def _variant(weighting, doc):
    def method(model, x, target=None, layer=None):
        return cam(model, x, target, layer, weighting)
    method.weighting = weighting
    method.__name__ = weighting.__name__[:-4]
    method.__doc__ = f"{doc} (N, h, w) at ``layer`` (None: ``default_cam_layer``); see ``{weighting.__name__}``."
    return method


grad_cam_plus_plus = _variant(grad_cam_plus_plus_map, "Grad-CAM++ (Chattopadhay et al. 2018)")
xgrad_cam = _variant(xgrad_cam_map, "XGrad-CAM (Fu et al. 2020)")
hires_cam = _variant(hires_cam_map, "HiResCAM (Draelos & Carin 2020)")
grad_cam_elementwise = _variant(grad_cam_elementwise_map, "Grad-CAM element-wise")
layer_cam = _variant(layer_cam_map, "LayerCAM (Jiang et al. 2021)")
eigen_cam = _variant(eigen_cam_map, "Eigen-CAM (Muhammad & Yeasin 2020)")
eigen_grad_cam = _variant(eigen_grad_cam_map, "EigenGrad-CAM")


def guided(cam_method, model, x, target=None, layer=None, mode="bilinear"):
    """Guided Backprop (N, C, H, W) times any CAM's map upsampled to (H, W): Guided Grad-CAM's recipe for
    every member of the family (``guided(grad_cam_plus_plus, model, x)``). For a gradient CAM (a method with
    a ``weighting``) one forward pass serves both backward passes; other methods run their own passes."""
    resize_matrix(1, 1, mode)                 # an unknown mode fails here, before any work
    weighting = getattr(cam_method, "weighting", None)
    if weighting is None:
        maps = cam_method(model, x, target, layer)
        return guided_backprop(model, x, target) * upsample(maps, x.shape[2:], mode)[:, None]
    maps, targets, logits = _weighted(model, x, target, layer, weighting)
    backprop = check_result(model.backward(one_hot(targets, logits), relu_rule="guided"), "the guided backward pass",
                            "a gradient overflowed in the model's dtype")
    return backprop * upsample(maps, x.shape[2:], mode)[:, None]


def guided_grad_cam(model, x, target=None, layer=None, mode="bilinear"):
    """Guided Grad-CAM: Guided Backprop (N, C, H, W) times the Grad-CAM map upsampled to (H, W) with ``mode``
    and broadcast over channels, ``guided(grad_cam, ...)``. The paper upsamples bilinearly; Captum's
    GuidedGradCam uses "nearest". The Grad-CAM map is not scaled to [0, 1] before the product (as in Captum)."""
    return guided(grad_cam, model, x, target, layer, mode)


# --------------------------------------------------------------------------
# Channel scores from forward passes: Score-CAM and Ablation-CAM
# --------------------------------------------------------------------------

def align_corners_matrix(n_in, n_out, dtype=np.float64):
    """The (n_out, n_in) bilinear resize with align_corners=True (``nn.UpsamplingBilinear2d``): the corners
    map onto each other, source ``d * (n_in - 1) / (n_out - 1)``."""
    R = np.zeros((n_out, n_in), dtype=dtype)
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    for d in range(n_out):
        src = d * scale
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        R[d, i0] += 1 - (src - i0)
        R[d, i1] += src - i0
    return R


def _softmax32(scores):
    """Softmax over channels in float32, as the reference computes it (``torch.Tensor(scores)``)."""
    s = scores.astype(np.float32)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


SCORE_CAM_SCORES = ("logit", "probability")


def score_cam(model, x, target=None, layer=None, batch_size=None, progress=False, score="logit"):
    """Score-CAM (Wang et al. 2020), (N, h, w): each channel of A, upsampled to the image (bilinear,
    align_corners=True) and scaled to [0, 1], masks the image; the target's score on each masked copy, a
    softmax over channels (in float32, as pytorch-grad-cam), weighs the channel. One forward pass per
    channel, in batches of ``batch_size`` (None: sized by memory, ``batch_for``).

    score: "logit" (pytorch-grad-cam's ``ClassifierOutputTarget``) or "probability" (the paper: the target's
    softmax probability). Logits of masked copies can be far larger than any on real images (a model that
    calls a black image a circle at logit 175 gives that class's weight to the channels that black out the
    most), and the softmax over channels then hands nearly all the weight to one channel."""
    check_batch_size(batch_size)
    if score not in SCORE_CAM_SCORES:
        raise ValueError(f"score must be one of {SCORE_CAM_SCORES}, got {score!r}")
    A, _, targets, name, _ = activations_and_gradients(model, x, target, layer, False, "Score-CAM")
    A = A.copy()
    N, K = A.shape[:2]
    H, W = x.shape[2:]
    Rh, Rw = align_corners_matrix(A.shape[2], H, A.dtype), align_corners_matrix(A.shape[3], W, A.dtype)
    batch_size = batch_for(model, N, batch_size)
    scores = np.empty((N, K))
    bar = Progress("Score-CAM masked copies", N * K, progress)
    for n in range(N):
        up = Rh @ A[n] @ Rw.T                                               # (K, H, W)
        low = up.min(axis=(1, 2), keepdims=True)
        up = (up - low) / (up.max(axis=(1, 2), keepdims=True) - low + 1e-8)
        for k in range(0, K, batch_size):
            masked = (x[n][None] * up[k:k + batch_size, None]).astype(x.dtype)
            out = check_logits(model.forward(masked), "the masked copies")
            scores[n, k:k + len(masked)] = (softmax(out) if score == "probability" else out)[:, targets[n]]
            bar.update(n * K + k + len(masked))
    bar.close()
    weights = _softmax32(scores)
    return check_result(np.maximum(np.einsum("nk,nkhw->nhw", weights, A), 0), "Score-CAM",
                        f"an activation at {name} overflowed")


class Ablated(Layer):
    """Ablation-CAM's stand-in for the layer: it outputs the ablated activations it holds, whatever its input."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out


def ablation_value(a):
    """What Ablation-CAM writes over a channel of ``a`` (one image's activations): 0 where the activations'
    minimum is 0 (after a ReLU; the paper's ablation), else their minimum minus 1e7 (pytorch-grad-cam's
    AblationLayer, for layers whose output can be negative). pytorch-grad-cam takes that minimum again after
    each channel it ablates within a batch, so there the k-th channel of a batch gets k * 1e7 less, and its
    map depends on its batch size; here every channel gets the same value, as pytorch-grad-cam with
    ``batch_size = 1``. After a ReLU the two agree at any batch size."""
    low = a.min()
    return 0.0 if low == 0 else low - 1e7


def rest_of(model, name):
    """The network after layer ``name``: a function from that layer's output to the logits, or None where the
    layer sits inside a block whose output needs more than that output (a residual block's body, whose sum
    also needs the shortcut) or inside a block other than a plain ``Sequential``. It runs the later children
    of each enclosing Sequential, innermost first, as ``forward`` would."""
    steps, block = [], model
    for part in name.split("."):
        if type(block) is not mc.Sequential:
            return None
        names = list(block.children)
        steps.append((block, names[names.index(part) + 1:]))
        block = block.children[part]

    def rest(a):
        for enclosing, later in reversed(steps):
            a = enclosing.chain(later, a)
        return a
    return rest


def ablation_cam(model, x, target=None, layer=None, batch_size=None, progress=False):
    """Ablation-CAM (Desai & Ramaswamy 2020), (N, h, w): channel k's weight is how much the target logit
    drops, relatively, when channel k of A is ablated (``ablation_value``): (y - y_k) / y, in float32 as
    pytorch-grad-cam. One pass per channel through the network after the layer (``rest_of``): the layers
    before it would compute A again for every copy. Where the layer sits inside a residual block, the whole
    network runs with the layer's output replaced by the ablated copies (as pytorch-grad-cam does always)."""
    check_batch_size(batch_size)
    A, _, targets, name, logits = activations_and_gradients(model, x, target, layer, False, "Ablation-CAM")
    A = A.copy()
    N, K = A.shape[:2]
    original = logits[np.arange(N), targets].astype(np.float32)
    batch_size = batch_for(model, N, batch_size)
    rest = rest_of(model, name)
    stand_in = Ablated(None)
    original_layer = model.replace(name, stand_in) if rest is None else None
    ablated_scores = np.empty((N, K))
    bar = Progress("Ablation-CAM ablated copies", N * K, progress)
    try:
        for n in range(N):
            value = ablation_value(A[n])
            for k in range(0, K, batch_size):
                channels = np.arange(k, min(k + batch_size, K))
                stand_in.out = np.repeat(A[n][None], len(channels), axis=0)
                stand_in.out[np.arange(len(channels)), channels] = value
                out = (rest(stand_in.out) if rest is not None
                       else model.forward(np.repeat(x[n][None], len(channels), axis=0)))
                ablated_scores[n, channels] = check_logits(out, "the ablated copies")[:, targets[n]]
                bar.update(n * K + k + len(channels))
    finally:
        if original_layer is not None:
            model.replace(name, original_layer)
    bar.close()
    weights = (original[:, None] - ablated_scores.astype(np.float32)) / original[:, None]
    return check_result(np.maximum(np.einsum("nk,nkhw->nhw", weights, A), 0), "Ablation-CAM",
                        "a target logit of 0 (the weights divide by it)")


# --------------------------------------------------------------------------
# FullGrad: the input gradient and the gradient at every bias
# --------------------------------------------------------------------------

def bias_of(layer):
    """The bias a layer adds to each output channel, (K,), or None: a Conv2d's or Linear's bias, an eval-mode
    BatchNorm2d's ``beta - running_mean * gamma / sqrt(running_var + eps)``, a Normalize's ``-mean / std``."""
    if isinstance(layer, mc.BatchNorm2d):
        return layer.affine()[1]
    if isinstance(layer, mc.Normalize):
        return -layer.mean / layer.std
    if isinstance(layer, (mc.Conv2d, mc.Linear)):
        return layer.params.get("bias")
    return None


def full_gradients(model, x, target=None):
    """The full-gradient decomposition (Srinivas & Fleuret 2019) of each image's target logit:
    ``(input gradient (N, C, H, W), {layer name: (bias (K,), gradient at the layer's output)}, targets, logits)``.

    A network of ReLUs, max- and average-pools and layers that are linear plus a bias (convolutions, linear
    layers, batch norm in eval mode, Normalize) is linear around each input, so its logit splits exactly:
    ``f(x) = sum(dx * x) + sum over bias layers and channels k of b_k * sum(G_k)``, G_k the gradient at the
    layer's output summed over its positions. Batch norm in training mode (batch statistics) is refused.
    """
    check_images(x)
    training = [name for name, layer in model.named_layers() if isinstance(layer, mc.BatchNorm2d) and layer.training]
    if training:
        raise ValueError(f"FullGrad: batch norm {training[0]} is in training mode (batch statistics: not a fixed "
                         f"bias); call model.eval() first")
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    biases = {name: b for name, layer in model.named_layers() if (b := bias_of(layer)) is not None}
    kept = dict.fromkeys(biases)
    dx = model.backward(one_hot(targets, logits), keep=kept)
    return dx, {name: (biases[name], kept[name]) for name in biases}, targets, logits


def _scaled(v):
    """Min-max scaling of each (image, channel) map, pytorch-grad-cam's ``(v - min) / (max - min + 1e-7)``."""
    v = v - v.min(axis=(2, 3), keepdims=True)
    return v / (v.max(axis=(2, 3), keepdims=True) + 1e-7)


def fullgrad(model, x, target=None, layer=None):
    """FullGrad (Srinivas & Fleuret 2019) as pytorch-grad-cam computes it, (N, H, W), before its final min-max
    scaling: ``sum_c scaled(|dx_c * x_c|)`` plus, for every Conv2d with a bias and every BatchNorm2d,
    ``sum_k resize(scaled(|b_k * G_k|))`` (``full_gradients``; scaled: min-max per image and channel; resize:
    bilinear to (H, W)). Scaling each channel on its own cancels |b_k| wherever b_k != 0, as in the reference.
    ``layer`` is accepted for the CAMs' common signature and must be None: FullGrad reads every bias layer."""
    if layer is not None:
        raise ValueError(f"FullGrad reads every bias layer, not one; pass layer=None, got {layer!r}")
    dx, terms, _, _ = full_gradients(model, x, target)
    H, W = x.shape[2:]
    result = _scaled(np.abs(dx * x)).sum(axis=1)
    spatial = {name for name, layer in model.named_layers() if isinstance(layer, (mc.Conv2d, mc.BatchNorm2d))}
    for name, (b, G) in terms.items():
        if name in spatial:
            result += upsample(_scaled(np.abs(b[:, None, None] * G)).sum(axis=1), (H, W))  # linear: sum first
    return check_result(result, "FullGrad", "a gradient overflowed in the model's dtype")
