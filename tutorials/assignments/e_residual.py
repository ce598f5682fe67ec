"""Assignment E: the backward pass of a residual block (He et al. 2016).

Fill in the function below (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade residual tutorials/assignments/e_residual.py

A residual block computes, from its input x,

    s   = body(x) + shortcut(x)          # the sum (shortcut: the identity, or a 1x1 conv + batch norm)
    out = relu(s)

so its backward has three steps: back through the ReLU after the sum, then the sum (what does a sum do to
the gradient arriving at it?), then the fork at x (x feeds both branches: what happens to the two gradients
that come back to it?). Tutorial 10, "Skip connections", works them out on numbers. Never modify `dout` or
`s` in place.
"""
import numpy as np


# %%
def residual_backward(dout, s, body_backward, shortcut_backward):
    """The gradient at a residual block's input x, from the gradient at its output.

    dout: (N, C, H, W) gradient of the score w.r.t. the block's output relu(s).
    s:    (N, C, H, W) the sum body(x) + shortcut(x) from the forward pass (the ReLU's input).
    body_backward(g), shortcut_backward(g): each takes a gradient at its branch's output, (N, C, H, W),
        and returns the gradient at x that flows through that branch, (N, C_in, H_in, W_in).
    Returns dx: (N, C_in, H_in, W_in), the dtype of dout.
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. Why is the gradient at the block's input the sum of the two branches' gradients?
# BEGIN ANSWER
#    x feeds both branches (a fork): the output depends on x through both paths, and by the
#    multivariate chain rule the derivative is the sum over the paths.
# END ANSWER
# 2. The gradient copies the same g to both summands of body(x) + shortcut(x). Why does LRP need a
#    different rule at that sum?
# BEGIN ANSWER
#    Relevance is meant to be conserved. Copying it to both summands doubles it at every block
#    (tutorial 10 prints the doubling); LRP splits it between the summands in proportion to their
#    values instead, so the total stays that of the output.
# END ANSWER
