"""The layers of minicnn: one class each, forward and backward side by side.

Conventions (the same as PyTorch, so that weights convert by copying):

- images are NCHW: ``x: (N, C, H, W)``
- conv weights are ``(F, C, KH, KW)`` (out, in, kernel height, kernel width)
- linear weights are ``(out_features, in_features)`` and ``y = x @ W.T + b``

Every layer keeps what its backward needs in ``self.cache`` (the docstring of
``forward`` says what that is), fills ``self.grads`` only when
``backward(..., param_grads=True)`` asks for it (training does, attribution
does not), and never modifies the arrays it is given.

Unlike PyTorch, layers start in eval mode (``training = False``): explaining a
trained model is what this package does most, and Dropout must then be off.
"""
import copy

import numpy as np

from . import conv_ops
from .conv_ops import conv_output_size, plane_blocks

RELU_RULES = ("gradient", "deconvnet", "guided", "rescale")
RESCALE_EPS = 1e-10            # DeepLIFT: below this |x - x_ref|, the secant falls back to the gradient (Captum's)


def _pair(v, what):
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
    return v


def uniform_init(rng, bound, shape, dtype, init=True):
    """Uniform in [-bound, bound), drawn directly in ``dtype`` (float32 draws are twice as fast).

    init=False: zeros instead, for parameters that weights will replace at once (``np.zeros`` takes its
    pages lazily, so VGG-16's 553 MB are neither drawn nor touched)."""
    dtype = np.dtype(dtype)
    if not init:
        return np.zeros(shape, dtype)
    values = rng.random(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
    values *= 2 * bound
    values -= bound
    return values.astype(dtype, copy=False)


class Layer:
    """Base class. Subclasses define ``forward(x)`` and ``backward(dout)``.

    Attributes:
        name: the layer's name in its model ("features.0"), or its class name.
        params: dict of parameter arrays ("weight", "bias"), PyTorch names.
        grads: dict of parameter gradients, same keys, filled by
            ``backward(dout, param_grads=True)``.
        buffers: dict of state that is saved with the weights but not trained
            (batch norm's running statistics), PyTorch names.
        cache: what ``forward`` saved for ``backward``; None before forward.
        training: train mode (Dropout active, batch norm on batch statistics) or eval mode.
    """

    def __init__(self):
        self.name = type(self).__name__
        self.params = {}
        self.buffers = {}
        self.grads = {}
        self.cache = None
        self.training = False

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""

    def backprop(self, dout, ctx):
        """This layer's step in a whole model's backward pass (``minicnn.blocks``).

        ctx: the pass's settings (``BackwardContext``: the ReLU rule, DeepLIFT's
        reference, whether to fill parameter gradients). Each layer reads only
        the settings it uses: most layers, ``param_grads``; ReLU its rule.
        """
        return self.backward(dout, param_grads=ctx.param_grads)

    def with_params(self, **params):
        """A copy of this layer computing with other parameters (same shapes and dtype), its own cache.

        LRP's rules run the layer's own forward and backward with modified
        weights rho(W): ``layer.with_params(weight=np.maximum(w, 0))``.
        """
        for key, value in params.items():
            if key not in self.params or value.shape != self.params[key].shape:
                raise ValueError(f"{self.name}: with_params({key}=...) must replace an existing parameter of the "
                                 f"same shape; parameters: {({k: v.shape for k, v in self.params.items()})}")
        clone = copy.copy(self)
        clone.params = {**self.params, **{k: v.astype(self.params[k].dtype, copy=False) for k, v in params.items()}}
        clone.grads, clone.cache = {}, None
        return clone

    # --- checks shared by all layers; they name the layer in the message ---

    def _check_input(self, x, ndim, expected, channels=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: expected a NumPy array {expected}, got {type(x).__name__}")
        if x.ndim != ndim:
            raise ValueError(f"{self.name}: expected a {ndim}-D input {expected}, got shape {x.shape}")
        if channels is not None and x.shape[1] != channels:
            raise ValueError(f"{self.name}: expected {channels} channels in {expected}, "
                             f"got shape {x.shape} ({x.shape[1]} channels)")
        if x.dtype.kind != "f":
            raise TypeError(f"{self.name}: expected a floating-point input (float32 or float64), got {x.dtype}")
        for key, p in self.params.items():
            if p.dtype != x.dtype:
                raise TypeError(f"{self.name}: input is {x.dtype} but {key} is {p.dtype}; "
                                f"convert the input, or the model with model.to(np.{x.dtype})")

    def _cached(self):
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return self.cache

    def _check_dout(self, dout, shape):
        if not isinstance(dout, np.ndarray) or dout.shape != tuple(shape):
            got = dout.shape if isinstance(dout, np.ndarray) else type(dout).__name__
            raise ValueError(f"{self.name}: dout must have the shape of the last forward's output {tuple(shape)}, "
                             f"got {got}")


# --------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------

class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in every deep learning library).

    weight: (F, C, KH, KW), bias: (F,). Output size
    ``H' = 1 + (H + 2*padding - KH) // stride``, the same for W.
    Initialised like PyTorch: uniform in +-1/sqrt(C*KH*KW).

    The arithmetic runs in ``minicnn.conv_ops`` (one matrix product per
    layer, on im2col columns or, for stride 1 on wide images, on shifted
    rows); the loop version it is tested against is
    ``minicnn.naive.conv2d_forward_naive``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, rng=None, init=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        rng = np.random.default_rng(rng)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / np.sqrt(fan_in)
        self.params["weight"] = uniform_init(rng, bound, (out_channels, in_channels) + self.kernel_size, dtype, init)
        if bias:
            self.params["bias"] = uniform_init(rng, bound, out_channels, dtype, init)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}")

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, F, H', W'). Cache: x.

        ``out[n, f, i, j] = sum over (c, a, b) of w[f, c, a, b] * xpad[n, c, i*s + a, j*s + b] + b[f]``
        (``minicnn.naive.conv2d_forward_naive`` is this formula as loops).
        """
        self._check_input(x, 4, "(N, C, H, W)", channels=self.in_channels)
        H, W = x.shape[2:]
        (kh, kw), p = self.kernel_size, self.padding
        if H + 2 * p[0] < kh or W + 2 * p[1] < kw:
            raise ValueError(f"{self.name}: input {H}x{W} (padded by {p}) is smaller than the kernel {kh}x{kw}")
        out = conv_ops.conv2d(x, self.params["weight"], self.stride, p, self.params.get("bias"))
        self.cache = x
        return out

    def backward(self, dout, param_grads=False):
        """dout: (N, F, H', W') -> dx: (N, C, H, W).

        Every output element saw one window of the input through the weights,
        so it sends ``dout * w[f]`` back onto that window (dx) and
        ``dout * window`` to the weights (dw); the bias saw every position.
        With param_grads, also ``grads["weight"]: (F, C, KH, KW)`` and
        ``grads["bias"]: (F,)``, summed over the batch; the attribution path
        (input gradient only) never pays for them.
        """
        x = self._cached()
        w, s, p = self.params["weight"], self.stride, self.padding
        Ho = conv_output_size(x.shape[2], w.shape[2], s[0], p[0])
        Wo = conv_output_size(x.shape[3], w.shape[3], s[1], p[1])
        self._check_dout(dout, (x.shape[0], w.shape[0], Ho, Wo))
        dx = conv_ops.conv2d_input_grad(dout, w, x.shape, s, p)
        if param_grads:
            self.grads["weight"] = conv_ops.conv2d_weight_grad(dout, x, w.shape, s, p)
            if "bias" in self.params:
                self.grads["bias"] = dout.sum(axis=(0, 2, 3))
        return dx


# --------------------------------------------------------------------------
# ReLU: the one place where Vanilla Gradient, DeconvNet and Guided Backprop differ
# --------------------------------------------------------------------------

def secant(delta_out, delta_in):
    """``delta_out / delta_in`` where ``|delta_in| >= RESCALE_EPS``, else 0 (the caller picks the fallback there)."""
    small = np.abs(delta_in) < RESCALE_EPS
    return np.where(small, 0, delta_out / np.where(small, 1, delta_in))


class ReLU(Layer):
    """``out = max(x, 0)``; its backward takes the attribution rule.

    We use the strict ``x > 0`` at exactly zero (the derivative there is taken
    as 0). That is PyTorch's convention, so our gradients match it digit for
    digit, and it is the convention of the textbook's worked example.
    """

    def forward(self, x):
        """x: any shape -> out: same shape. Cache: x (the forward activation)."""
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"{self.name}: expected a floating-point NumPy array, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        self.cache = x
        return np.maximum(x, 0)

    def backward(self, dout, rule="gradient", param_grads=False, reference=None):
        """dout: same shape as x -> dx. ``rule`` picks the attribution method:

        ============  ==================================================  ==================
        rule          backward                                            indicator used
        ============  ==================================================  ==================
        "gradient"    dout * (x > 0)                                      forward activation
        "deconvnet"   dout * (dout > 0)                                   backward signal
        "guided"      dout * (x > 0) * (dout > 0)                         both
        "rescale"     dout * (relu(x) - relu(x_ref)) / (x - x_ref)        the secant slope
        ============  ==================================================  ==================

        "rescale" is DeepLIFT's rule: it needs ``reference``, the ReLU's input
        x_ref when the model ran on the baseline, and takes the plain gradient
        where ``|x - x_ref| < RESCALE_EPS``.
        """
        x = self._cached()
        self._check_dout(dout, x.shape)
        if rule == "gradient":      # Vanilla Gradient (Simonyan et al. 2013)
            # BEGIN SOLUTION relu_maxpool.relu_backward_gradient(dout, x)
            return dout * (x > 0)
            # END SOLUTION
        if rule == "deconvnet":     # DeconvNet (Zeiler & Fergus 2014)
            # BEGIN SOLUTION relu_maxpool.relu_backward_deconvnet(dout, x)
            return dout * (dout > 0)
            # END SOLUTION
        if rule == "guided":        # Guided Backprop (Springenberg et al. 2015)
            # BEGIN SOLUTION relu_maxpool.relu_backward_guided(dout, x)
            return dout * ((x > 0) & (dout > 0))
            # END SOLUTION
        if rule == "rescale":       # DeepLIFT Rescale (Shrikumar et al. 2017): the secant, not the tangent
            x_ref = self._reference(reference)
            # BEGIN SOLUTION deeplift_lrp.relu_backward_rescale(dout, x, x_ref)
            return dout * np.where(np.abs(x - x_ref) < RESCALE_EPS, x > 0,
                                   secant(np.maximum(x, 0) - np.maximum(x_ref, 0), x - x_ref))
            # END SOLUTION
        raise ValueError(f"{self.name}: unknown ReLU rule {rule!r}; use one of {RELU_RULES}")

    def backprop(self, dout, ctx):
        """In a model's backward pass: the ReLU rule of ``ctx`` (and, for "rescale", this ReLU's reference)."""
        return self.backward(dout, rule=ctx.relu_rule, reference=ctx.reference_for(self))

    def _reference(self, reference):
        if not isinstance(reference, np.ndarray) or reference.shape != self.cache.shape:
            raise ValueError(f"{self.name}: the 'rescale' rule needs reference=the ReLU's input on the baseline, "
                             f"an array of shape {self.cache.shape}; got {getattr(reference, 'shape', reference)!r}")
        return reference


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------

def _window_views(x, kh, kw, stride, Ho, Wo):
    """Yield (k, view) for each kernel tap (i, j) in row-major order: the
    (N, C, H', W') strided view of the element at tap (i, j) of every window."""
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, x[:, :, i:i + stride[0] * Ho:stride[0], j:j + stride[1] * Wo:stride[1]]


def maxpool_backward(dout, x, kernel_size, stride, out=None):
    """Max pooling's backward pass without padding (assignment A's function; ``MaxPool2d`` pads first).

    dout: (N, C, H', W'); x: (N, C, H, W), the forward input; kernel_size, stride: ints or (h, w) pairs;
    out: the forward output (each window's maximum), found again from x when None. Each window sends its
    gradient to ONE element, its first maximum in row-major order: taps are visited in that order, and a
    window is ``taken`` once a tap has claimed it. Overlapping windows add up. Returns dx: (N, C, H, W).
    """
    # BEGIN SOLUTION relu_maxpool.maxpool_backward(dout, x, kernel_size, stride)
    (kh, kw), s = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
    N, C, H, W = x.shape
    Ho, Wo = dout.shape[2:]
    planes = x.reshape(N * C, 1, H, W)
    d = dout.reshape(N * C, 1, Ho, Wo)
    if out is None:                                                     # the windows' maxima
        out = np.full((N * C, 1, Ho, Wo), -np.inf, x.dtype)
        for _, v in _window_views(planes, kh, kw, s, Ho, Wo):
            np.maximum(out, v, out=out)
    out = out.reshape(N * C, 1, Ho, Wo)
    dx = np.zeros((N * C, 1, H, W), d.dtype)
    overlapping = s[0] < kh or s[1] < kw
    for b in plane_blocks(N * C, planes[0:1].nbytes):                  # a few planes at a time (cache)
        taken = np.zeros(out[b].shape, dtype=bool)
        switch = np.empty(out[b].shape, dtype=bool)                     # one buffer for every tap
        taps = _window_views(planes[b], kh, kw, s, Ho, Wo)
        for (_, v), (_, view) in zip(taps, _window_views(dx[b], kh, kw, s, Ho, Wo)):
            np.equal(v, out[b], out=switch)                             # the max is here ...
            np.greater(switch, taken, out=switch)                       # ... and no earlier tap had it
            taken |= switch
            if overlapping:
                view += d[b] * switch                                   # windows that share an element add up
            else:
                np.multiply(d[b], switch, out=view)                     # each element is in one window at most
    return dx.reshape(N, C, H, W)
    # END SOLUTION


class MaxPool2d(Layer):
    """Max pooling. ``H' = 1 + (H + 2*padding - KH) // stride``; stride
    defaults to kernel_size; padding counts as -inf (PyTorch's convention).

    Gradient routing: each window sends its gradient to ONE element, its
    first maximum in row-major order (PyTorch's choice). Ties are common: a
    window after a ReLU is often all zeros. Overlapping windows (kernel 3,
    stride 2) add their gradients where they share an element.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride if stride is not None else kernel_size, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"MaxPool2d: kernel_size and stride must be >= 1, got {self.kernel_size}, {self.stride}")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)) or min(self.padding) < 0:
            raise ValueError(f"MaxPool2d: padding must be between 0 and half the kernel size, got {self.padding}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, C, H', W'), the largest element of each window.

        One strided view per tap (i, j) of the window, and a running maximum.
        Cache: x and out. Which element won (the "switch" that backward routes
        through) is found from them in backward, so a forward-only pass
        (occlusion, LIME, SHAP) does not pay for it.
        """
        self._check_input(x, 4, "(N, C, H, W)")
        (kh, kw), s, (ph, pw) = self.kernel_size, self.stride, self.padding
        N, C, H, W = x.shape
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.name}: input {H}x{W} is smaller than the pooling window {kh}x{kw}")
        Ho, Wo = conv_output_size(H, kh, s[0], ph), conv_output_size(W, kw, s[1], pw)
        planes = self._planes(x)                                        # (N*C, 1, H + 2ph, W + 2pw)
        out = np.empty((N * C, 1, Ho, Wo), x.dtype)
        for b in plane_blocks(N * C, planes[0:1].nbytes):              # a few planes at a time (cache)
            for k, v in _window_views(planes[b], kh, kw, s, Ho, Wo):
                if k == 0:
                    np.copyto(out[b], v)
                else:
                    np.maximum(out[b], v, out=out[b])
        out = out.reshape(N, C, Ho, Wo)
        self.cache = (x, out)
        return out

    def _planes(self, x):
        """x padded with -inf, as N*C separate planes (N*C, 1, H + 2ph, W + 2pw)."""
        N, C, H, W = x.shape
        ph, pw = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf) if ph or pw else x
        return xp.reshape(N * C, 1, H + 2 * ph, W + 2 * pw)

    def backward(self, dout, param_grads=False, reference=None):
        """dout: (N, C, H', W') -> dx: (N, C, H, W), zero except at the switches.

        With ``reference`` (the cache of a forward pass on the baseline), the
        DeepLIFT rescale treatment instead: see ``rescale_backward``.
        """
        x, out = self._cached()
        self._check_dout(dout, out.shape)
        if reference is not None:
            return self.rescale_backward(dout, reference)
        return self._route(dout, x, out)

    def _route(self, d, x, out):
        """Send each window's value in d (N, C, H', W') to its switch -> (N, C, H, W): ``maxpool_backward``
        on x padded with -inf (a padded element is never a window's maximum), then the padding cut off."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        N, C, H, W = x.shape
        planes = self._planes(x).reshape(N, C, H + 2 * ph, W + 2 * pw)
        kernel_size = kh if kh == kw else (kh, kw)                    # assignment A's function takes ints
        stride = sh if sh == sw else (sh, sw)
        return maxpool_backward(d, planes, kernel_size, stride, out)[:, :, ph:ph + H, pw:pw + W]

    def backprop(self, dout, ctx):
        """In a model's backward pass: DeepLIFT's treatment when ``ctx`` carries a reference, else the gradient."""
        return self.backward(dout, reference=ctx.reference_for(self))

    def rescale_backward(self, dout, reference):
        """DeepLIFT's multipliers through max-pooling (the rule Captum's ``maxpool`` intends).

        Per window, y = max(x_w) at p and y' = max(x'_w) at q: the change
        y - y' splits into ``max(y, y') - y'`` sent to p and ``y - max(y, y')``
        sent to q (they add up to y - y'). An input's multiplier is what it
        received times dout, divided by its own x - x' (the plain gradient
        where that is below RESCALE_EPS). Overlapping windows add up. Then
        ``sum(dx * (x - x')) == sum(dout * (y - y'))``: nothing is lost.
        """
        x, y = self.cache
        if not (isinstance(reference, tuple) and len(reference) == 2 and np.shape(reference[0]) == x.shape
                and np.shape(reference[1]) == y.shape):
            raise ValueError(f"{self.name}: reference must be this layer's cache from a forward pass on the "
                             f"baseline, (x_ref {x.shape}, y_ref {y.shape})")
        x_ref, y_ref = reference
        top = np.maximum(y, y_ref)
        received = self._route(dout * (top - y_ref), x, y) + self._route(dout * (y - top), x_ref, y_ref)
        return np.where(np.abs(x - x_ref) < RESCALE_EPS, self._route(dout, x, y), secant(received, x - x_ref))


class AvgPool2d(Layer):
    """Average pooling, padding counted as zeros in the average (PyTorch's
    default ``count_include_pad=True``). ``H' = 1 + (H + 2*padding - KH) // stride``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride if stride is not None else kernel_size, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError("AvgPool2d: kernel_size and stride must be >= 1 and padding >= 0")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, C, H', W'). Cache: the input shape."""
        self._check_input(x, 4, "(N, C, H, W)")
        (kh, kw), s, (ph, pw) = self.kernel_size, self.stride, self.padding
        N, C, H, W = x.shape
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.name}: input {H}x{W} is smaller than the pooling window {kh}x{kw}")
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        Ho, Wo = conv_output_size(H, kh, s[0], ph), conv_output_size(W, kw, s[1], pw)
        out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
        for _, v in _window_views(xp, kh, kw, s, Ho, Wo):
            out += v
        self.cache = x.shape
        return out / (kh * kw)

    def backward(self, dout, param_grads=False):
        """dout: (N, C, H', W') -> dx: (N, C, H, W): each window shares its gradient equally."""
        N, C, H, W = self._cached()
        (kh, kw), s, (ph, pw) = self.kernel_size, self.stride, self.padding
        Ho, Wo = conv_output_size(H, kh, s[0], ph), conv_output_size(W, kw, s[1], pw)
        self._check_dout(dout, (N, C, Ho, Wo))
        dx = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
        share = dout / (kh * kw)
        for _, view in _window_views(dx, kh, kw, s, Ho, Wo):
            view += share
        return dx[:, :, ph:ph + H, pw:pw + W]


def adaptive_pool_matrix(size, out_size, dtype):
    """The (out_size, size) averaging matrix of adaptive pooling along one axis.

    Bin i covers ``floor(i*size/out) <= t < ceil((i+1)*size/out)`` (PyTorch's bins).
    """
    P = np.zeros((out_size, size), dtype=dtype)
    for i in range(out_size):
        start, end = (i * size) // out_size, -((-(i + 1) * size) // out_size)
        P[i, start:end] = 1.0 / (end - start)
    return P


class AdaptiveAvgPool2d(Layer):
    """Average-pool any (H, W) to a fixed ``output_size`` (VGG's 7x7).

    Pooling along rows and columns is separable, so the layer is two matrix
    products: ``out = Ph @ x @ Pw.T`` with the averaging matrices of
    ``adaptive_pool_matrix``. When the input already has the output size the
    layer is the identity and returns its input unchanged.
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size, "output_size")

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, C, *output_size). Cache: the two matrices (None for identity)."""
        self._check_input(x, 4, "(N, C, H, W)")
        (oh, ow), (H, W) = self.output_size, x.shape[2:]
        if (H, W) == (oh, ow):
            self.cache = (None, None)
            return x
        Ph, Pw = adaptive_pool_matrix(H, oh, x.dtype), adaptive_pool_matrix(W, ow, x.dtype)
        self.cache = (Ph, Pw)
        return Ph @ x @ Pw.T

    def backward(self, dout, param_grads=False):
        """dout: (N, C, oh, ow) -> dx: (N, C, H, W)."""
        Ph, Pw = self._cached()
        if Ph is None:
            return dout
        self._check_dout(dout, dout.shape[:2] + (Ph.shape[0], Pw.shape[0]))
        return Ph.T @ dout @ Pw


# --------------------------------------------------------------------------
# Batch normalization
# --------------------------------------------------------------------------

class BatchNorm2d(Layer):
    """Batch normalization (Ioffe & Szegedy 2015) per channel, PyTorch's names and defaults.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias`` with, per channel c,

    - in training: the batch's mean and (biased) variance over (N, H, W); the
      running statistics move towards them, ``running = (1 - momentum) * running
      + momentum * batch`` (the running variance takes the unbiased batch
      variance, as PyTorch), and ``num_batches_tracked`` counts the batches;
    - in eval mode (the default here): ``running_mean`` and ``running_var``,
      so the layer is a fixed affine map ``x * scale + shift`` per channel.

    weight (gamma): (C,), bias (beta): (C,); buffers running_mean (C,),
    running_var (C,), num_batches_tracked () int64. A state dict without
    ``num_batches_tracked`` (older torchvision files) loads too.
    """

    optional_buffers = ("num_batches_tracked",)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        if not (eps > 0 and 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm2d: eps must be > 0 and momentum in [0, 1], got {eps!r}, {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.params["weight"] = np.ones(num_features, dtype)
        self.params["bias"] = np.zeros(num_features, dtype)
        self.buffers["running_mean"] = np.zeros(num_features, dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype)
        self.buffers["num_batches_tracked"] = np.array(0, dtype=np.int64)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def affine(self):
        """(scale, shift), each (C,): eval mode's ``out = x * scale + shift`` (LRP folds them into a conv)."""
        scale = self.params["weight"] / np.sqrt(self.buffers["running_var"] + self.eps)
        return scale, self.params["bias"] - self.buffers["running_mean"] * scale

    def forward(self, x):
        """x: (N, C, H, W) -> out: same shape.
        Cache: ("eval", x) or, in training, ("train", xhat, 1 / sqrt(var + eps))."""
        self._check_input(x, 4, "(N, C, H, W)", channels=self.num_features)
        if not self.training:
            scale, shift = self.affine()
            self.cache = ("eval", x)
            out = x * scale[:, None, None]
            out += shift[:, None, None]
            return out
        count = x.shape[0] * x.shape[2] * x.shape[3]             # values per channel in this batch
        if count < 2:
            raise ValueError(f"{self.name}: training needs more than one value per channel, got input {x.shape}")
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        inv_std = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean[:, None, None]) * inv_std[:, None, None]
        m = self.momentum
        self.buffers["running_mean"] = ((1 - m) * self.buffers["running_mean"] + m * mean).astype(x.dtype)
        self.buffers["running_var"] = ((1 - m) * self.buffers["running_var"]
                                       + m * var * count / (count - 1)).astype(x.dtype)
        self.buffers["num_batches_tracked"] = self.buffers["num_batches_tracked"] + 1
        self.cache = ("train", xhat, inv_std)
        return xhat * self.params["weight"][:, None, None] + self.params["bias"][:, None, None]

    def backward(self, dout, param_grads=False):
        """dout: (N, C, H, W) -> dx: same shape; with param_grads, grads["weight"], grads["bias"]: (C,).

        Eval mode: the affine map's gradient, ``dx = dout * scale``. Training:
        the batch mean and variance depend on every x too, which takes two sums
        per channel off each gradient:
        ``dx = inv_std * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dout * weight``.
        """
        mode, *saved = self._cached()
        self._check_dout(dout, saved[0].shape)
        gamma = self.params["weight"][:, None, None]
        if mode == "eval":
            (x,) = saved
            scale, _ = self.affine()
            xhat = None
            dx = dout * scale[:, None, None]
        else:
            xhat, inv_std = saved
            g = dout * gamma
            dx = inv_std[:, None, None] * (g - g.mean(axis=(0, 2, 3))[:, None, None]
                                           - xhat * (g * xhat).mean(axis=(0, 2, 3))[:, None, None])
        if param_grads:
            if xhat is None:
                xhat = (x - self.buffers["running_mean"][:, None, None]) / np.sqrt(
                    self.buffers["running_var"] + self.eps)[:, None, None]
            self.grads["weight"] = (dout * xhat).sum(axis=(0, 2, 3))
            self.grads["bias"] = dout.sum(axis=(0, 2, 3))
        return dx


class Identity(Layer):
    """``out = x`` (torch.nn.Identity): stands where a layer was taken out, e.g. a batch norm folded into
    the convolution before it, or a pooling removed for a comparison."""

    def forward(self, x):
        """Cache: the shape."""
        self.cache = np.shape(x)
        return x

    def backward(self, dout, param_grads=False):
        self._check_dout(dout, self._cached())
        return dout


# --------------------------------------------------------------------------
# Classifier layers
# --------------------------------------------------------------------------

class Linear(Layer):
    """Fully connected layer ``y = x @ W.T + b``; weight: (out, in), bias: (out,).
    Initialised like PyTorch: uniform in +-1/sqrt(in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None, init=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = np.random.default_rng(rng)
        bound = 1.0 / np.sqrt(in_features)
        self.params["weight"] = uniform_init(rng, bound, (out_features, in_features), dtype, init)
        if bias:
            self.params["bias"] = uniform_init(rng, bound, out_features, dtype, init)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={'bias' in self.params}"

    def forward(self, x):
        """x: (N, in) -> out: (N, out). Cache: x."""
        self._check_input(x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self.name}: expected (N, {self.in_features}), got shape {x.shape}")
        self.cache = x
        out = x @ self.params["weight"].T
        if "bias" in self.params:
            out += self.params["bias"]
        return out

    def backward(self, dout, param_grads=False):
        """dout: (N, out) -> dx: (N, in); with param_grads, grads["weight"]: (out, in), grads["bias"]: (out,)."""
        x = self._cached()
        self._check_dout(dout, (x.shape[0], self.out_features))
        if param_grads:
            self.grads["weight"] = dout.T @ x
            if "bias" in self.params:
                self.grads["bias"] = dout.sum(axis=0)
        return dout @ self.params["weight"]


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C, H, W order (PyTorch's ``torch.flatten(x, 1)``)."""

    def forward(self, x):
        """Cache: the input shape."""
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise ValueError(f"{self.name}: expected an array with a batch axis, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, param_grads=False):
        shape = self._cached()
        self._check_dout(dout, (shape[0], int(np.prod(shape[1:]))))
        return dout.reshape(shape)


class ConstantPad2d(Layer):
    """Pad H and W by ``padding`` on every side with ``value`` (torch.nn.ConstantPad2d, symmetric)."""

    def __init__(self, padding, value=0.0):
        super().__init__()
        self.padding = _pair(padding, "padding")
        self.value = float(value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"

    def forward(self, x):
        """x: (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw). Cache: the input shape."""
        self._check_input(x, 4, "(N, C, H, W)")
        ph, pw = self.padding
        self.cache = x.shape
        return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.value)

    def backward(self, dout, param_grads=False):
        """The padding is constant: only the inner part passes its gradient back."""
        N, C, H, W = self._cached()
        ph, pw = self.padding
        self._check_dout(dout, (N, C, H + 2 * ph, W + 2 * pw))
        return dout[:, :, ph:ph + H, pw:pw + W]


class Normalize(Layer):
    """``(x - mean) / std`` per channel, torchvision's Normalize as a layer.

    Putting it inside the model lets the model take images in [0, 1], so that
    attributions are gradients with respect to the image itself.
    mean, std: sequences of C numbers.
    """

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape or (self.std <= 0).any():
            raise ValueError("Normalize: mean and std must be sequences of C numbers, std > 0")

    def extra_repr(self):
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"

    def forward(self, x):
        """x: (N, C, H, W) -> same shape. Cache: the input shape."""
        self._check_input(x, 4, "(N, C, H, W)", channels=len(self.mean))
        self.cache = x.shape
        mean, std = self.mean.astype(x.dtype), self.std.astype(x.dtype)
        return (x - mean[:, None, None]) / std[:, None, None]

    def backward(self, dout, param_grads=False):
        self._check_dout(dout, self._cached())
        return dout / self.std.astype(dout.dtype)[:, None, None]


class Dropout(Layer):
    """In training, zero each element with probability p and scale the rest by
    1/(1-p) ("inverted dropout", as PyTorch). In eval mode, the identity."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = np.random.default_rng(rng)

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        """Cache: the scaled keep-mask in training, None (identity) in eval."""
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"{self.name}: expected a floating-point NumPy array")
        if not self.training or self.p == 0:
            self.cache = ("eval", None)
            return x
        mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        self.cache = ("train", mask)
        return x * mask

    def backward(self, dout, param_grads=False):
        _, mask = self._cached()
        return dout if mask is None else dout * mask
