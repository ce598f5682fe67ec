# %% [markdown]
# # 1. The engine: forward and backward side by side
#
# A layer is a class with `forward(x)` and, right below it, `backward(dout)`.
# `backward` receives the gradient of some score with respect to the layer's
# output and returns the gradient with respect to its input. This tutorial
# checks that claim by hand, three ways.

# %%
import os
import time

import numpy as np

import minicnn as mc
from minicnn.naive import conv2d_backward_naive, conv2d_forward_naive

QUICK = os.environ.get("MINICNN_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## A convolution: shapes first
# `x: (N, C, H, W)`, `w: (F, C, KH, KW)`, and `H' = 1 + (H + 2*pad - KH) // stride`.

# %%
conv = mc.Conv2d(3, 4, kernel_size=3, stride=2, padding=1, dtype=np.float64, rng=0)
x = rng.standard_normal((2, 3, 7, 7))
out = conv.forward(x)
print("x", x.shape, "-> out", out.shape, "  (1 + (7 + 2 - 3) // 2 = 4)")
print("the cache holds what backward needs: the input, shape", conv.cache.shape)

# %% [markdown]
# ## Backward, and a gradient check by hand
# Take a random upstream gradient `dout`. The backward pass computes the
# gradient of `sum(out * dout)`. Perturb one input value by +-h and measure it.

# %%
dout = rng.standard_normal(out.shape)
dx = conv.backward(dout, param_grads=True)
h = 1e-6
idx = (1, 2, 3, 4)
x_plus, x_minus = x.copy(), x.copy()
x_plus[idx] += h
x_minus[idx] -= h
numeric = (np.sum(conv.forward(x_plus) * dout) - np.sum(conv.forward(x_minus) * dout)) / (2 * h)
print(f"d/dx{idx}: backward says {dx[idx]:.10f}, the centred difference says {numeric:.10f}")

# %% [markdown]
# `minicnn.gradcheck.check_layer` does the same for every input value and
# every parameter. A correct backward gives ~1e-9 or less in float64. Give it
# the same `dout`: it runs its own backward pass, and the parameter gradients
# it leaves in `conv.grads` are then those of this `dout` (with its default,
# a random one, they would belong to another `dout`).

# %%
errors = mc.check_layer(conv, x, dout=dout)
print("relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})

# %% [markdown]
# ## Why the naive and the fast convolution agree
# The naive version (`minicnn/naive.py`) loops over every output element and
# takes the dot product of one window with one filter. The fast version
# unfolds every window into a column (im2col) and does all dot products in one
# matrix product: `w.reshape(F, -1) @ cols`. Same sums, different order.

# %%
from minicnn.conv_ops import im2col  # noqa: E402

cols = im2col(x, 3, 3, (2, 2), (1, 1))
print("im2col: (N, C*KH*KW, H'*W') =", cols.shape)
w, b = conv.params["weight"], conv.params["bias"]
naive = conv2d_forward_naive(x, w, b, stride=2, padding=1)
print("fast vs naive forward, rel. error:", mc.rel_error(conv.forward(x), naive))
ndx, ndw, ndb = conv2d_backward_naive(dout, x, w, stride=2, padding=1)
print("fast vs naive dx, dw, db:", mc.rel_error(dx, ndx), mc.rel_error(conv.grads["weight"], ndw),
      mc.rel_error(conv.grads["bias"], ndb))

# %% [markdown]
# And why we keep both: the fast one is what VGG-16 runs on.

# %%
size = 16 if QUICK else 32
x_big = rng.standard_normal((1, 16, size, size))
layer = mc.Conv2d(16, 16, 3, padding=1, dtype=np.float64, rng=0)
start = time.perf_counter()
conv2d_forward_naive(x_big, layer.params["weight"], layer.params["bias"], 1, 1)
t_naive = time.perf_counter() - start
start = time.perf_counter()
layer.forward(x_big)
t_fast = time.perf_counter() - start
print(f"{size}x{size}x16 -> 16: naive {t_naive * 1e3:.0f} ms, im2col {t_fast * 1e3:.2f} ms")

# %% [markdown]
# ## One more trick, for stride 1: shifted rows
# im2col copies the image KH*KW = 9 times. For stride 1 there is a cheaper
# layout: write the padded image row after row (width Wp) and compute the
# output on a "wide" grid of Wp columns per row. Tap (i, j) of every window
# is then the flat image shifted by `i*Wp + j`. `conv_ops.conv2d_shifted`
# stacks only the 3 horizontal shifts (j), makes one matrix product, and adds
# the 3 vertical ones (i) on the output: 3 copies instead of 9. `Conv2d`
# takes it for wide images with enough channels (`shifted_pays`); the
# numbers are the same up to rounding.

# %%
from minicnn import conv_ops  # noqa: E402

x_wide = rng.standard_normal((1, 16, 48, 48))
w16 = layer.params["weight"]
by_rows = conv_ops.conv2d_shifted(x_wide, w16, (1, 1))
print("shifted rows vs the definition, rel. error:",
      mc.rel_error(by_rows, conv2d_forward_naive(x_wide, w16, None, 1, 1)))
print("copies of a 48x48x16 image: im2col", 9 * 16 * 48 * 48, "numbers, shifted rows", 3 * 16 * 50 * 50)
print("Conv2d uses shifted rows here:", conv_ops.shifted_pays(16, 3, 3, 48))


# %% [markdown]
# ## Questions
#
# 1. The fast convolution agrees with the naive loops to rounding. Why is that
#    not enough, and what does the numeric gradient check add?
# BEGIN ANSWER
#    The naive loops are the definition of the forward pass, so agreement
#    shows that the fast route computes the same function. A backward pass
#    could still be wrong in both, written from the same mistaken formula; the
#    numeric check compares the backward pass with finite differences of the
#    forward pass itself, so it tests the backward against the definition.
# END ANSWER
# 2. With padding, the backward pass is computed on the padded input and then
#    cropped. Why is cropping right?
# BEGIN ANSWER
#    The padded border holds constants that are not inputs of the layer: the
#    gradient that arrives there belongs to no input, so it is dropped; the
#    gradient of each real input is what arrived at its position in the padded
#    array.
# END ANSWER
