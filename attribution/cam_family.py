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
one more variant. ``score_cam`` and ``ablation_cam`` weigh each channel by
forward passes instead (one per channel). All maps are at the layer's
resolution, like ``grad_cam``, and equal pytorch-grad-cam 1.5.7's before its
resize and min-max scaling.
"""
import numpy as np

from minicnn.layers import Layer

from .methods import (batch_for, cam_layer, check_batch_size, check_images, check_logits, check_result,
                      guided_backprop, one_hot, resolve_targets, upsample)
from .progress import Progress

# --------------------------------------------------------------------------
# The weightings: (A, G) -> the map before the ReLU, (N, h, w)
# --------------------------------------------------------------------------


def _spatial_sum(v):
    return v.sum(axis=(2, 3), keepdims=True)


def grad_cam_map(A, G):
    """Grad-CAM: each channel weighted by its gradient's mean over (h, w)."""
    return np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A)


def grad_cam_plus_plus_map(A, G):
    """Grad-CAM++: positive gradients, each position weighted by a = G^2 / (2 G^2 + sum(A) G^3 + 1e-6)
    (0 where G = 0), summed over (h, w)."""
    a = G ** 2 / (2 * G ** 2 + _spatial_sum(A) * G ** 3 + 1e-6)
    a = np.where(G != 0, a, 0)
    return np.einsum("nk,nkhw->nhw", (np.maximum(G, 0) * a).sum(axis=(2, 3)), A)


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
    return (np.maximum(G, 0) * A).sum(axis=1)


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

def activations_and_gradients(model, x, target=None, layer=None, gradients=True):
    """(A, G, targets, layer name, logits): the activations at ``layer`` (None: ``default_cam_layer``) and the
    gradient of each image's target logit there (None when ``gradients`` is False)."""
    check_images(x)
    logits = model.forward(x)
    targets = resolve_targets(target, logits)
    name = cam_layer(model, layer, "CAM")
    A = model.outputs[name]
    G = model.backward(one_hot(targets, logits), until=name) if gradients else None
    return A, G, targets, name, logits


def cam(model, x, target=None, layer=None, weighting=grad_cam_map):
    """A class activation map (N, h, w) at ``layer``: ``relu(weighting(A, G))``.

    weighting: one of the ``*_map`` functions above (``WEIGHTINGS``), or your own ``(A, G) -> (N, h, w)``.
    """
    A, G, _, name, _ = activations_and_gradients(model, x, target, layer, gradients=weighting is not eigen_cam_map)
    return check_result(np.maximum(weighting(A, G), 0), getattr(weighting, "__name__", "CAM"),
                        f"an activation or gradient at {name} overflowed in the model's dtype")


def _variant(weighting, doc):
    def method(model, x, target=None, layer=None):
        return cam(model, x, target, layer, weighting)
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
    every member of the family (``guided(grad_cam_plus_plus, model, x)``)."""
    maps = cam_method(model, x, target, layer)
    return guided_backprop(model, x, target) * upsample(maps, x.shape[2:], mode)[:, None]


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


def score_cam(model, x, target=None, layer=None, batch_size=None, progress=False):
    """Score-CAM (Wang et al. 2020), (N, h, w): each channel of A, upsampled to the image (bilinear,
    align_corners=True) and scaled to [0, 1], masks the image; the target logit of each masked copy, a
    softmax over channels (in float32, as pytorch-grad-cam), weighs the channel. One forward pass per
    channel, in batches of ``batch_size`` (None: sized by memory, ``batch_for``)."""
    check_batch_size(batch_size)
    A, _, targets, name, _ = activations_and_gradients(model, x, target, layer, gradients=False)
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
            scores[n, k:k + len(masked)] = check_logits(model.forward(masked), "the masked copies")[:, targets[n]]
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
    minimum is 0 (after a ReLU), else their minimum minus 1e7 (pytorch-grad-cam's AblationLayer)."""
    low = a.min()
    return 0.0 if low == 0 else low - 1e7


def ablation_cam(model, x, target=None, layer=None, batch_size=None, progress=False):
    """Ablation-CAM (Desai & Ramaswamy 2020), (N, h, w): channel k's weight is how much the target logit
    drops, relatively, when channel k of A is ablated (``ablation_value``): (y - y_k) / y, in float32 as
    pytorch-grad-cam. One forward pass per channel: the layer's output is replaced by the ablated copies."""
    check_batch_size(batch_size)
    A, _, targets, name, logits = activations_and_gradients(model, x, target, layer, gradients=False)
    A = A.copy()
    N, K = A.shape[:2]
    original = logits[np.arange(N), targets].astype(np.float32)
    batch_size = batch_for(model, N, batch_size)
    stand_in = Ablated(None)
    original_layer = model.replace(name, stand_in)
    ablated_scores = np.empty((N, K))
    bar = Progress("Ablation-CAM ablated copies", N * K, progress)
    try:
        for n in range(N):
            value = ablation_value(A[n])
            for k in range(0, K, batch_size):
                channels = np.arange(k, min(k + batch_size, K))
                stand_in.out = np.repeat(A[n][None], len(channels), axis=0)
                stand_in.out[np.arange(len(channels)), channels] = value
                copies = np.repeat(x[n][None], len(channels), axis=0)
                ablated_scores[n, channels] = check_logits(model.forward(copies), "the ablated copies")[:, targets[n]]
                bar.update(n * K + k + len(channels))
    finally:
        model.replace(name, original_layer)
    bar.close()
    weights = (original[:, None] - ablated_scores.astype(np.float32)) / original[:, None]
    return check_result(np.maximum(np.einsum("nk,nkhw->nhw", weights, A), 0), "Ablation-CAM",
                        "a target logit of 0 (the weights divide by it)")
