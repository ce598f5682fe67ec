"""Reference solution of assignment E (kept out of the student files)."""


def residual_backward(dout, s, body_backward, shortcut_backward):
    g = dout * (s > 0)                                  # back through the ReLU after the sum
    return body_backward(g) + shortcut_backward(g)      # the sum passes g to both; the fork adds what returns
