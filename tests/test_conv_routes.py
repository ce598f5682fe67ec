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


# --------------------------------------------------------------------------
# Reusable arrays (conv_ops.reusable): taken again only when nobody holds them
# --------------------------------------------------------------------------

@pytest.fixture
def pool_everything(monkeypatch):
    """Every array goes through the pool (the default skips those under 4 MB), in a pool of its own."""
    monkeypatch.setattr(conv_ops, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(conv_ops, "_POOL", {})


def test_reusable_takes_back_a_dropped_array_and_never_a_held_one(pool_everything):
    a = conv_ops.reusable((4, 5), np.float32)
    address = a.ctypes.data
    b = conv_ops.reusable((4, 5), np.float32)
    assert b.ctypes.data != address                        # a is held: a new array
    view = a[1:]
    del a
    c = conv_ops.reusable((4, 5), np.float32)
    assert c.ctypes.data not in (address, b.ctypes.data)   # a view of a still holds it
    del view
    d = conv_ops.reusable((4, 5), np.float32)
    assert d.ctypes.data == address                        # now nobody does
    assert d.shape == (4, 5) and d.dtype == np.float32
    e = conv_ops.reusable((4, 5), np.float64)              # another dtype or shape: another array
    assert e.ctypes.data not in (address, b.ctypes.data, c.ctypes.data)


def test_reusable_skips_small_arrays_and_keeps_at_most_the_cap(monkeypatch):
    monkeypatch.setattr(conv_ops, "_POOL", {})
    conv_ops.reusable((10,), np.float64)                   # under POOL_MIN_BYTES: plain np.empty
    assert conv_ops._POOL == {}
    monkeypatch.setattr(conv_ops, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(conv_ops, "POOL_MAX_BYTES", 1000)
    kept = [conv_ops.reusable((100,), np.float64) for _ in range(3)]   # 800 bytes each
    assert sum(len(arrays) for arrays in conv_ops._POOL.values()) == 1
    assert len({a.ctypes.data for a in kept}) == 3         # the ones not kept are still separate arrays
    conv_ops.release_pool()
    assert conv_ops._POOL == {}


def test_a_full_pool_drops_the_free_arrays_of_other_shapes_for_new_ones(pool_everything, monkeypatch):
    monkeypatch.setattr(conv_ops, "POOL_MAX_BYTES", 2000)
    old = [conv_ops.reusable((100,), np.float64) for _ in range(2)]    # 1600 bytes: the pool is nearly full
    held = old[0]
    del old                                                             # one of them is free now
    new = conv_ops.reusable((60,), np.float64)                         # 480 more: too much, unless ...
    pooled = {key[0]: len(arrays) for key, arrays in conv_ops._POOL.items()}
    assert pooled == {(100,): 1, (60,): 1}                             # ... the free one goes
    assert any(a is held for a in conv_ops._POOL[(100,), np.dtype(np.float64)])
    assert any(a is new for a in conv_ops._POOL[(60,), np.dtype(np.float64)])


def test_outputs_and_gradients_a_caller_keeps_survive_later_passes(rng, pool_everything):
    """The safety of the pool on a whole network: what the caller (or model.outputs) still holds after
    one pass is never written by the next, forward or backward; and the second pass's numbers are right."""
    from nets import small_vgg
    model = small_vgg(in_size=16)
    x1, x2 = rng.standard_normal((2, 2, 3, 16, 16))
    dout = rng.standard_normal((2, 5))
    logits1 = model.forward(x1)
    outputs1 = dict(model.outputs)
    copies = {name: out.copy() for name, out in outputs1.items()}
    dx1 = model.backward(dout)
    dx1_copy = dx1.copy()
    logits2 = model.forward(x2)
    dx2 = model.backward(dout)
    for name, out in outputs1.items():
        np.testing.assert_array_equal(out, copies[name], err_msg=name)
    np.testing.assert_array_equal(dx1, dx1_copy)
    assert not np.array_equal(logits1, logits2)
    fresh = small_vgg(in_size=16)                          # the same weights, a model that never pooled
    conv_ops.release_pool()
    np.testing.assert_array_equal(fresh.forward(x2), logits2)
    np.testing.assert_array_equal(fresh.backward(dout), dx2)


def test_passes_after_the_second_take_every_array_from_the_pool(rng, pool_everything):
    """What the pool is for. The second pass still finds the first pass's arrays held by the layer caches
    until each layer replaces its own, so it adds a few; from the third on, nothing is allocated anew."""
    from nets import small_vgg
    model = small_vgg(in_size=16)
    x = rng.standard_normal((2, 3, 16, 16))
    sizes = []
    for _ in range(4):
        model.forward(x)
        model.backward(np.ones((2, 5)))
        sizes.append(sum(len(arrays) for arrays in conv_ops._POOL.values()))
    assert sizes[0] < sizes[1] == sizes[2] == sizes[3]
