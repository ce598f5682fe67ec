"""Issue 22: attribution.fragility searches, within an L-infinity budget and keeping the predicted class, the
perturbation that moves a map most; seeded, without second derivatives."""
import numpy as np
import pytest

import attribution as attr
from attribution.fragility import fragility, rank_correlation, top_k_intersection
from nets import small_vgg


@pytest.fixture(scope="module")
def setup():
    model = small_vgg(num_classes=4, seed=2)
    x = np.random.default_rng(0).uniform(0, 1, (3, 3, 16, 16))
    return model, x


def test_the_search_stays_in_the_budget_keeps_the_class_and_is_seeded(setup):
    model, x = setup
    eps = 0.03
    r = fragility(attr.METHODS["vanilla_gradient"], model, x, epsilon=eps, steps=3, directions=4, seed=1)
    assert np.abs(r.delta).max() <= eps + 1e-12
    assert (x + r.delta).min() >= 0 and (x + r.delta).max() <= 1
    np.testing.assert_array_equal(model.forward(x + r.delta).argmax(axis=1), model.forward(x).argmax(axis=1))
    assert r.evaluations == 1 + 3 * 4
    assert (r.top_k < 1).all() and (r.top_k >= 0).all() and (r.spearman < 1).all()
    # what it reports is what the perturbation does
    after = attr.vanilla_gradient(model, x + r.delta, model.forward(x).argmax(axis=1))
    np.testing.assert_allclose(r.after, np.abs(after).sum(axis=1))
    np.testing.assert_allclose(r.top_k, top_k_intersection(r.before, r.after, round(0.1 * 256)))
    again = fragility(attr.METHODS["vanilla_gradient"], model, x, epsilon=eps, steps=3, directions=4, seed=1)
    np.testing.assert_array_equal(again.delta, r.delta)


def test_a_map_that_ignores_the_image_never_moves(setup):
    model, x = setup
    fixed = np.random.default_rng(5).standard_normal((3, 16, 16))
    r = fragility(lambda model, x, target: fixed[:len(x)], model, x, epsilon=0.1, steps=2, directions=3)
    np.testing.assert_array_equal(r.top_k, 1.0)
    np.testing.assert_allclose(r.spearman, 1.0)
    assert not r.delta.any()                                 # no step is better than none


def test_the_measures_by_hand():
    before = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    after = np.array([[[1.0, 3.0], [2.0, 4.0]]])
    assert top_k_intersection(before, after, 2)[0] == 0.5        # top 2 before {0, 1}, after {3, 1}
    assert abs(rank_correlation(before, after)[0] - -0.8) < 1e-12    # 1 - 6 * (9 + 0 + 0 + 9) / (4 * 15)


def test_bad_settings_are_named(setup):
    model, x = setup
    method = attr.METHODS["vanilla_gradient"]
    for kwargs, words in (({"epsilon": 0}, "epsilon"), ({"top": 2}, "share"), ({"steps": 0}, "steps"),
                          ({"step_size": 1.0, "epsilon": 0.1}, "step_size")):
        with pytest.raises(ValueError, match=words):
            fragility(method, model, x, **kwargs)
    with pytest.raises(TypeError, match="method"):
        fragility("vanilla", model, x)
