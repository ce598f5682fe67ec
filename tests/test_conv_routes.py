"""Level 1 for the speed code: every route in ``minicnn.conv_ops`` against the naive loops, in float64.

The fast convolution has three routes (im2col, shifted rows for stride 1,
col2im for the input gradient) chosen by image size and channels, plus
chunking by a memory budget. The layer tests use
small images, which take im2col only; here each route is forced and checked.
"""
import numpy as np
import pytest

import minicnn as mc
from minicnn import conv_ops
from minicnn.naive import conv2d_backward_naive, conv2d_forward_naive

F64 = np.float64


def im2col_only(monkeypatch):
    monkeypatch.setattr(conv_ops, "shifted_pays", lambda *args: False)


@pytest.mark.parametrize("k,padding", [((3, 3), (1, 1)), ((3, 3), (0, 0)), ((5, 5), (2, 2)), ((2, 3), (1, 0)),
                                       ((1, 1), (0, 0)), ((3, 1), (2, 0))])
def test_shifted_equals_im2col_any_kernel_and_padding(rng, monkeypatch, k, padding):
    x = rng.standard_normal((3, 4, 9, 11))
    w = rng.standard_normal((5, 4) + k)
    b = rng.standard_normal(5)
    fast = conv_ops.conv2d_shifted(x, w, padding, b)
    im2col_only(monkeypatch)
    reference = conv_ops.conv2d(x, w, (1, 1), padding, b)
    assert fast.shape == reference.shape
    np.testing.assert_allclose(fast, reference, rtol=1e-12, atol=1e-12)


def test_shifted_chunks_of_images_and_one_image_per_chunk(rng, monkeypatch):
    """A small budget splits the batch into several stacks (down to one image each): same numbers."""
    x, w = rng.standard_normal((5, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    whole = conv_ops.conv2d_shifted(x, w, (1, 1))
    for budget in (1, 3 * 3 * 10 * 10 * 8 * 2):
        monkeypatch.setattr(conv_ops, "COLUMN_BUDGET", budget)
        np.testing.assert_allclose(conv_ops.conv2d_shifted(x, w, (1, 1)), whole, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(whole, conv2d_forward_naive(x, w, None, 1, 1), rtol=1e-12, atol=1e-12)


def test_layer_on_a_wide_image_takes_the_shifted_route_and_equals_the_naive_loops(rng, monkeypatch):
    """16 channels at 48 px: the size where Conv2d switches to shifted rows, forward and input gradient."""
    assert conv_ops.shifted_pays(16, 3, 3, 48) and not conv_ops.shifted_pays(16, 3, 3, 14)
    calls = []
    original = conv_ops.conv2d_shifted
    monkeypatch.setattr(conv_ops, "conv2d_shifted", lambda *a: calls.append(a[0].shape) or original(*a))
    layer = mc.Conv2d(16, 16, 3, padding=1, dtype=F64, rng=0)
    x = rng.standard_normal((2, 16, 48, 48))
    w, b = layer.params["weight"], layer.params["bias"]
    out = layer.forward(x)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, 1, 1), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout, param_grads=True)
    ndx, ndw, ndb = conv2d_backward_naive(dout, x, w, 1, 1)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], ndw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], ndb, rtol=1e-12, atol=1e-12)
    assert calls == [(2, 16, 48, 48), (2, 16, 48, 48)]          # forward, and dx as a transposed convolution


@pytest.mark.parametrize("C,F,size", [(3, 16, 48), (16, 32, 48), (32, 16, 48), (16, 16, 14)])
def test_every_input_gradient_route_equals_im2col_col2im(rng, monkeypatch, C, F, size):
    """Widening layers and small images fold columns back (col2im); the others transpose the convolution."""
    w = rng.standard_normal((F, C, 3, 3))
    dout = rng.standard_normal((2, F, size, size))
    fast = conv_ops.conv2d_input_grad(dout, w, (2, C, size, size), (1, 1), (1, 1))
    im2col_only(monkeypatch)
    monkeypatch.setattr(conv_ops, "conv2d_shifted", None)        # col2im needs no convolution at all
    np.testing.assert_allclose(conv_ops.conv2d_input_grad(dout, w, (2, C, size, size), (1, 1), (1, 1)), fast,
                               rtol=1e-12, atol=1e-12)


def test_float32_stays_float32_on_every_route(rng):
    x = rng.standard_normal((1, 16, 48, 48)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    assert conv_ops.conv2d_shifted(x, w, (1, 1)).dtype == np.float32
    assert conv_ops.conv2d_input_grad(x, w, x.shape, (1, 1), (1, 1)).dtype == np.float32


def test_scratch_buffers_are_kept_apart_by_name():
    a = conv_ops.scratch((4, 5), np.float64, "test-a")
    b = conv_ops.scratch((4, 5), np.float64, "test-b")
    a[...] = 1
    b[...] = 2
    assert (a == 1).all() and not np.shares_memory(a, b)
    assert np.shares_memory(conv_ops.scratch((2, 3), np.float64, "test-a"), a)      # reused, not reallocated


def test_pooling_in_cache_sized_blocks_equals_one_block_and_takes_an_empty_batch(rng, monkeypatch):
    """MaxPool2d works through a few channel planes at a time; the block size changes nothing."""
    x = rng.standard_normal((3, 5, 9, 8))
    x[0, 0, :4, :4] = 0                                          # ties: the first maximum must still win
    dout = rng.standard_normal((3, 5, 4, 3))
    results = []
    for block in (1, 9 * 8 * 8 * 2, 2 ** 30):                   # one plane, two planes, everything
        monkeypatch.setattr(conv_ops, "CACHE_BLOCK", block)
        for k, s, p in ((2, 2, 0), (3, 2, 1)):
            pool = mc.MaxPool2d(k, s, p)
            out = pool.forward(x)
            results.append((k, out, pool.backward(dout if out.shape == dout.shape else np.ones(out.shape))))
    for k in (2, 3):
        mine = [r for r in results if r[0] == k]
        for _, out, dx in mine[1:]:
            np.testing.assert_array_equal(out, mine[0][1])
            np.testing.assert_array_equal(dx, mine[0][2])
    pool = mc.MaxPool2d(2)
    empty = pool.forward(np.zeros((0, 3, 4, 4)))
    assert empty.shape == (0, 3, 2, 2) and pool.backward(np.zeros(empty.shape)).shape == (0, 3, 4, 4)


@pytest.mark.parametrize("stride,size", [(1, 7), (2, 7), (2, 8), (3, 10)])
def test_one_by_one_convolutions_are_plain_products_equal_to_the_loops(rng, stride, size):
    """ResNet's 1x1 convolutions (stride 1 in bottlenecks, 2 in downsamples) skip the columns: the image is one
    already. Forward, input gradient (odd sizes leave the last rows unsampled) and weight gradient."""
    layer = mc.Conv2d(4, 6, 1, stride=stride, dtype=F64, rng=0)
    x = rng.standard_normal((2, 4, size, size + 1))
    w, b = layer.params["weight"], layer.params["bias"]
    out = layer.forward(x)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, stride, 0), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    ndx, ndw, ndb = conv2d_backward_naive(dout, x, w, stride, 0)
    np.testing.assert_allclose(layer.backward(dout, param_grads=True), ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], ndw, rtol=1e-12, atol=1e-12)
