"""Assignment D: DeepLIFT's rescale rule and LRP's four steps.

Fill in the three functions (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade deeplift_lrp tutorials/assignments/d_deeplift_lrp.py

Primitives you may use (see minicnn.layers):
    out = layer.forward(a)                            # a Conv2d or Linear layer's own forward ...
    da = layer.backward(d)                            # ... and input backward (call forward first)
    other = layer.with_params(weight=w2, bias=b2)     # the same layer computing with other weights
Do not use attribution.lrp or attribution.deeplift: this is where you build them.
"""
import numpy as np


# %%
def relu_backward_rescale(dout, x, x_ref):
    """DeepLIFT's Rescale rule at a ReLU: the secant slope instead of the gradient.

    dout: (N, C, H, W) (or any shape) multipliers arriving from above; x: the ReLU's input on the
    image, same shape; x_ref: the ReLU's input on the baseline, same shape.
    Returns dout * (relu(x) - relu(x_ref)) / (x - x_ref), and where |x - x_ref| < 1e-10
    (the secant is undefined) the Vanilla Gradient rule dout * (x > 0) instead. Same shape and dtype.
    """
    raise NotImplementedError


# %%
def lrp_epsilon(layer, a, R, eps):
    """LRP-epsilon through one Conv2d or Linear layer, in Montavon's four steps.

    layer: a minicnn Conv2d or Linear; a: its input activation, (N, C, H, W) for a Conv2d or
    (N, in_features) for a Linear; R: the relevance at its output, shaped like layer.forward(a); eps > 0.
      1. z = layer.forward(a), then z = z + eps * sign(z), with sign(0) taken as +1
      2. s = R / z
      3. c = layer.backward(s)           (the gradient of sum(z * s) with respect to a)
      4. R_in = a * c
    Returns R_in, shaped like a, in a's dtype (float32 in, float32 out).
    """
    raise NotImplementedError


# %%
def lrp_zplus(layer, a, R, eps=1e-9):
    """LRP z+ (the Deep Taylor rule for ReLU inputs) through one Conv2d or Linear layer.

    a >= 0 (the output of a ReLU). The four steps of lrp_epsilon, but with the weights'
    positive part max(W, 0) and no bias (a zero bias), and z = z + eps (z >= 0 here).
    Returns R_in, shaped like a, in a's dtype.
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. Why does the rescale rule fall back to the gradient where |x - x_ref| < 1e-10?
# BEGIN ANSWER
#    The secant (relu(x) - relu(x_ref)) / (x - x_ref) divides by almost 0 there, and rounding makes
#    it meaningless; its limit as x_ref tends to x is the derivative, 1 where x > 0 and 0 where x <
#    0, which is the gradient rule.
# END ANSWER
# 2. Why is the stabilizer eps * sign(z), with sign(0) = +1, and not simply + eps?
# BEGIN ANSWER
#    It must move z away from 0: adding +eps to a negative z close to -eps would bring it to about
#    0, and R / z would blow up and change sign. eps * sign(z) keeps the sign of z and makes |z| at
#    least eps; sign(0) = +1 because np.sign(0) = 0 would leave z = 0.
# END ANSWER
