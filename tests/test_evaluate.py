"""Issue 6: the evaluation metrics on hand-made maps, the shift-compensated model, and the
experiments on the shipped model."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc
from attribution import evaluate as ev


def test_localization_metrics_on_hand_made_maps():
    masks = np.zeros((3, 4, 4), bool)
    masks[:, :2, :2] = True                       # the object: the top-left 2x2 block (4 of 16 pixels)
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = 5; maps[0, 3, 3] = 1          # peak inside: hit; mass 5/6; top-4 holds 1 inside + 3 ties
    maps[1, 3, 3] = 5; maps[1, 1, 1] = 1          # peak outside: miss; mass 1/6
    maps[2] = -1                                  # no positive relevance at all: mass 0
    np.testing.assert_array_equal(ev.pointing_game(maps, masks), [True, False, True])   # ties: first maximum
    np.testing.assert_allclose(ev.relevance_mass(maps, masks), [5 / 6, 1 / 6, 0])
    # relevance rank, k = 4, ties broken in row-major order (stable sort):
    # map 0: (0,0) in, then zeros (0,1) in, (0,2) out, (0,3) out -> 2/4
    # map 1: (3,3) out, (1,1) in, then zeros (0,0) in, (0,1) in -> 3/4
    # map 2: all -1: the first four in row-major order, (0,0) (0,1) in, (0,2) (0,3) out -> 2/4
    np.testing.assert_allclose(ev.relevance_rank(maps, masks), [2 / 4, 3 / 4, 2 / 4])
    perfect = masks.astype(float)
    np.testing.assert_allclose(ev.relevance_rank(perfect, masks), 1)
    np.testing.assert_allclose(ev.relevance_mass(perfect, masks), 1)
    with pytest.raises(ValueError, match=r"must both be \(N, H, W\)"):
        ev.relevance_mass(maps[0], masks)


def test_deletion_insertion_on_a_model_that_sums_one_pixel():
    # logit 1 = 10 * x[0, 0, 0, 0]; logit 0 = 0. The image is 1 at (0, 0), 0 elsewhere, so the
    # target (1) has p = 1/(1+e^-10). A map that ranks pixel (0, 0) first deletes it in the first of
    # 16 one-pixel steps: p drops to 1/2 and stays. Insertion starts from the blur, where (0, 0) is
    # faint (p near 1/2), and puts it back first (p = 1/(1+e^-10) from then on) or last.
    lin = mc.Linear(16, 2, bias=False, dtype=np.float64)
    lin.params["weight"] = np.zeros((2, 16))
    lin.params["weight"][1, 0] = 10.0
    model = mc.Sequential(mc.Flatten(), lin)
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 1
    good = np.zeros((1, 4, 4))
    good[0, 0, 0] = 1
    bad = -good                                      # ranks pixel (0, 0) last
    d_good, i_good = ev.deletion_insertion(model, x, [1], good, steps=16)
    d_bad, i_bad = ev.deletion_insertion(model, x, [1], bad, steps=16)
    p_full = 1 / (1 + np.exp(-10))
    assert d_good[0] == pytest.approx((p_full + 0.5) / 2 / 16 + 15 * 0.5 / 16)
    assert d_good[0] < d_bad[0] and i_good[0] > i_bad[0]
    from scipy.ndimage import gaussian_filter
    faint = gaussian_filter(x[0], sigma=(0, 4, 4))[0, 0, 0]      # pixel (0, 0) in the blurred start
    q = 1 / (1 + np.exp(-10 * faint))
    assert i_good[0] == pytest.approx(((q + p_full) / 2 + 15 * p_full) / 16)   # back at the first step
    assert i_bad[0] == pytest.approx((15 * q + (q + p_full) / 2) / 16)         # back at the last step


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert ev.spearman(a, a) == pytest.approx(1) and ev.spearman(a, -a) == pytest.approx(-1)
    assert ev.spearman(a, 3 * a + 1) == pytest.approx(1)           # ranks only
    assert ev.ssim(a, a) == pytest.approx(1)
    assert ev.ssim(a, rng.random((16, 16))) < 0.3
    assert ev.spearman(a, np.zeros_like(a)) == 0


def _trained():
    from minicnn.models import shapes_net
    return shapes_net(pretrained=True)


def test_shift_compensated_model_is_the_same_function():
    from minicnn.data import make_shapes
    model = _trained().to(np.float64)
    x = make_shapes(3, seed=1)[0].astype(np.float64)
    for shift in (-1.0, 0.7):
        other = ev.shifted_model(model, shift)
        assert mc.rel_error(model.forward(x), other.forward(x + shift)) <= 1e-10
        g = attr.vanilla_gradient(model, x, [0, 1, 2])
        g2 = attr.vanilla_gradient(other, x + shift, [0, 1, 2])
        assert mc.rel_error(g, g2) <= 1e-10
        gxi = attr.gradient_x_input(model, x, [0, 1, 2])
        gxi2 = attr.gradient_x_input(other, x + shift, [0, 1, 2])
        assert mc.rel_error(gxi, gxi2) > 0.1                       # Gradient x Input is not invariant
    changes = ev.input_invariance(model, x, [0, 1, 2], {"vanilla_gradient": attr.vanilla_gradient,
                                                        "gradient_x_input": attr.gradient_x_input,
                                                        "integrated_gradients": lambda m, xx, t:
                                                        attr.integrated_gradients(m, xx, t, steps=8)})
    assert changes["vanilla_gradient"] < 1e-9
    assert changes["gradient_x_input"] > 0.1 and changes["integrated_gradients"] > 0.1


def test_grad_cam_beats_a_random_map_and_randomization_decorrelates():
    from minicnn.data import make_shapes
    model = _trained()
    x, y, masks = make_shapes(24, seed=77)
    methods = {"grad_cam": attr.grad_cam, "vanilla_gradient": attr.vanilla_gradient}
    loc = ev.localization(model, x, masks, y, methods)
    assert loc["grad_cam"]["pointing game"] >= loc["random map"]["pointing game"] + 0.4
    assert loc["grad_cam"]["relevance mass"] > 2 * loc["random map"]["relevance mass"]
    # faithfulness: putting back what Grad-CAM points at restores the prediction sooner than at random.
    # (Deletion to black does not separate the methods on this model: a few random black pixels already
    # destroy the prediction, so every map's deletion AUC is about 0.2; the README reports it.)
    assert loc["grad_cam"]["insertion AUC"] > loc["random map"]["insertion AUC"] + 0.1
    steps, curves = ev.parameter_randomization(model, x[:6], y[:6], {"vanilla_gradient": attr.vanilla_gradient})
    assert steps[0] == "classifier.3" and steps[-1] == "features.0"
    spearman = curves["vanilla_gradient"]["spearman"]
    assert spearman[-1] < 0.5 and spearman[-1] < spearman[0]


def test_evaluate_command_is_seeded(tmp_path):
    import json
    import subprocess
    import sys

    import attribution
    outs = []
    for run in range(2):
        result = subprocess.run([sys.executable, "-m", "attribution", "evaluate", "--n", "2", "--out",
                                 str(tmp_path / f"run{run}"), "--json", str(tmp_path / f"run{run}.json")],
                                capture_output=True, text=True, timeout=900,
                                env=dict(__import__("os").environ, MPLBACKEND="Agg"))
        assert result.returncode == 0, result.stderr
        outs.append((tmp_path / f"run{run}" / "evaluation.md").read_text())
        for figure in ("randomization.png", "metrics.png"):
            assert (tmp_path / f"run{run}" / figure).stat().st_size > 10_000
    assert outs[0] == outs[1]
    assert "| grad_cam |" in outs[0] and "| random map |" in outs[0]
    # the standard metrics: one row per method, every column, and the same numbers in the JSON
    standard = outs[0].split("## The standard metrics")[1]
    rows = [line for line in standard.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0][2:] for r in rows] == list(attribution.METHODS) + ["random map"]
    data = json.loads((tmp_path / "run0.json").read_text())
    assert set(data["standard"]) == set(attribution.METHODS) | {"random map"}
    assert len(data["standard"]["lrp"]) == len(ev.STANDARD_METRICS) and data["n"] == 2
    assert f"{data['standard']['lrp']['ROC AUC']:.2f}" in rows[list(attribution.METHODS).index("lrp")]
    assert data["ranks"]["lrp"]["ROC AUC"] >= 1 and data["model"] == "shapes"
    assert "[" in result.stderr and "standard metrics: lrp" in result.stderr      # progress on stderr


def test_metric_ranks_follow_each_column_direction():
    table = {"a": {"ROC AUC": 0.9, "pixel flipping AUC": 0.1, "sparseness": 0.5},
             "b": {"ROC AUC": 0.6, "pixel flipping AUC": 0.3, "sparseness": 0.7},
             "c": {"ROC AUC": 0.6, "pixel flipping AUC": np.nan, "sparseness": 0.1}}
    ranks = ev.metric_ranks(table)
    assert ranks["a"]["ROC AUC"] == 1 and ranks["b"]["ROC AUC"] == ranks["c"]["ROC AUC"] == 2.5   # ties share
    assert ranks["a"]["pixel flipping AUC"] == 1 and ranks["b"]["pixel flipping AUC"] == 2     # lower is better
    assert np.isnan(ranks["c"]["pixel flipping AUC"]) and np.isnan(ranks["a"]["sparseness"])   # no direction
