"""Issues 7 and 13: every tutorial runs top to bottom (figures to a temporary folder), and what each one
states is checked here, from what it prints, with tolerances: not only that it exits cleanly."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


def _numbers(text, pattern):
    """Every match of ``pattern`` in ``text``, its groups as floats."""
    return [tuple(float(g) for g in m.groups()) for m in re.finditer(pattern, text)]


def _claims_01(out):
    (dx, dw, db), = _numbers(out, r"fast vs naive dx, dw, db: (\S+) (\S+) (\S+)")
    assert max(dx, dw, db) < 1e-12, "the fast and naive convolutions agree to rounding"
    (backward, centred), = _numbers(out, r"backward says (\S+), the centred difference says (\S+)")
    assert abs(backward - centred) < 1e-8 * max(1.0, abs(backward)), "the hand-made gradient check agrees"
    errors = _numbers(out, r"'(?:x|weight|bias)': '(\S+)'")
    assert len(errors) == 3 and max(e for e, in errors) < 1e-8, "check_layer: ~1e-9 or less in float64"
    (naive, fast), = _numbers(out, r"-> 16: naive (\S+) ms, im2col (\S+) ms")
    assert fast < naive / 5, "the fast convolution is what a real network can run on"
    (shifted,), = _numbers(out, r"shifted rows vs the definition, rel. error: (\S+)")
    assert shifted < 1e-12, "shifted rows compute the same convolution"
    (im2col, rows), = _numbers(out, r"im2col (\d+) numbers, shifted rows (\d+)")
    assert 2.5 < im2col / rows <= 3, "3 copies instead of 9 (the padded rows make it a little less than 3x)"
    assert "Conv2d uses shifted rows here: True" in out


def _claims_02(out):
    assert "gradient   [[0.4, 0.0], [0.0, 0.0]]" in out and "deconvnet  [[0.4, 1.1], [0.0, 0.0]]" in out
    assert "guided     [[0.4, 0.0], [0.0, 0.0]]" in out
    passed = dict((rule, float(p)) for rule, p in re.findall(r"(\w+)\s+passes ([\d.]+)% of the units", out))
    assert passed["guided"] <= min(passed["gradient"], passed["deconvnet"]), "guided passes the fewest units"


def _claims_03(out):
    share = {m: float(v) for m, v in re.findall(r"(\w+): \(3, 3, 64, 64\) share of the map on the object: ([\d.]+)",
                                                 out)}
    assert share["guided"] > share["vanilla"] > share["deconvnet"], share
    (area,), = _numbers(out, r"the objects cover (\d+)% of the images")
    assert min(share.values()) > area / 100, "every map beats the chance level"


def _claims_04(out):
    assert "equals attribution.grad_cam: True" in out
    for on, image in _numbers(out, r"(\d+)% of the heat lies on the object \((\d+)% of the image\)"):
        assert on > 2 * image, "the heat is concentrated on the object"


def _claims_05(out):
    shares = _numbers(out, r"guided backprop (\d+)% on that object, guided grad-cam (\d+)% \(the object covers "
                           r"(\d+)% of the image\)")
    assert len(shares) == 2
    for guided, combined, area in shares:
        assert combined > guided, "Guided Grad-CAM moves to the explained object"
        assert guided > area, "both beat the chance level"
    (corr,), = _numbers(out, r"the two guided backprop maps correlate at ([\d.]+)")
    assert corr > 0.9, "Guided Backprop barely changes with the class"


def _claims_06(out):
    results = {(n, level): (agree, on) for n, level, agree, on in
               _numbers(out, r"n=\s*(\d+) noise=([\d.]+): seed agreement ([\d.-]+), on the object (\d+)%")}
    counts = sorted({n for n, _ in results})
    for level in {lv for _, lv in results if lv > 0}:
        agreement = [results[n, level][0] for n in counts]
        assert all(a < b for a, b in zip(agreement, agreement[1:])), "more samples, more agreement, at every level"
    best = max((lv for _, lv in results), key=lambda lv: results[counts[-1], lv][1])
    assert best == 0.05 and results[counts[-1], 0.15][1] < results[counts[-1], 0.0][1], \
        "5% is best here, and the paper's 15% is worse than the plain gradient on this model"


def _claims_07(out):
    corr = dict((name.strip(), float(c)) for name, c in
                re.findall(r"(Vanilla Gradient|Guided Backprop)\s+correlation with the photo's edges: ([\d.-]+)", out))
    assert corr["Guided Backprop"] > corr["Vanilla Gradient"] + 0.05, "Guided Backprop follows the edges more"


def _claims_08(out):
    curves = {name: [float(v) for v in values.split()] for name, values in
              re.findall(r"(\w+)\s+Spearman with the trained model's map: ([\d. -]+)", out)}
    mean = {name: sum(v) / len(v) for name, v in curves.items()}
    assert mean["guided_backprop"] == max(mean.values()), "Guided Backprop is the least sensitive to randomization"
    assert curves["grad_cam"][0] < curves["grad_cam"][1], "Grad-CAM's curve drops at the last layer, then rises"
    assert "logits equal after the shift: True" in out
    for name in ("vanilla_gradient", "guided_backprop", "grad_cam"):
        assert re.search(rf"{name}\s+unchanged", out), name
    for name in ("gradient_x_input", "integrated_gradients"):
        assert re.search(rf"{name}.*changes by \d+% of its scale", out), name
    (shown,), = _numbers(out, r"image 0: the largest \|difference\| is (\d+)% of the largest")
    assert shown > 50, "the figure's difference panel shows a change of the map's own size"
    guided = [float(v) for v in re.search(r"guided_backprop\s+Spearman with the trained model's map: ([\d. -]+)",
                                          out).group(1).split()]
    assert guided[-1] < guided[0] - 0.3, "Guided Backprop does change under randomization (the text says so)"


def _claims_09(out):
    (error_a, error_b), = _numbers(out, r"summation error:\s+\[\s*(\S+)\s+(\S+)\s*\]")
    assert max(abs(error_a), abs(error_b)) < 1e-9, "DeepLIFT sums to delta"
    assert "LRP-0 equals Gradient x Input (of the normalized image): True" in out
    (grey_a, grey_b), = _numbers(out, r"LIME \|coefficient\| on the object / everywhere, grey baseline: "
                                      r"\[\s*([\d.]+)\s+([\d.]+)\s*\]")
    (mean_a, mean_b), = _numbers(out, r"mean baseline: \[\s*([\d.]+)\s+([\d.]+)\s*\]")
    assert grey_a > mean_a and grey_b > mean_b, "the mean fill hides flat objects"
    (black_logit, top_a, top_b), = _numbers(out, r"black image: circle at logit (\d+); the images' predicted "
                                                 r"logits: \[\s*([\d.]+)\s+([\d.]+)\s*\]")
    assert black_logit > max(top_a, top_b), "the model scores the black image above the real ones"
    (area,), = _numbers(out, r"the objects cover (\d+)% of the images")
    (black_a, black_b), = _numbers(out, r"on the object, black baseline: \[\s*([\d.]+)\s+([\d.]+)\s*\]")
    (dl_grey_a, dl_grey_b), = _numbers(out, r"(?m)^\s+grey baseline:\s+\[\s*([\d.]+)\s+([\d.]+)\s*\]")
    assert max(black_a, black_b) < 2 * area / 100, "black baseline: about chance on the object"
    assert min(dl_grey_a, dl_grey_b) > 0.7, "grey baseline: most of the positive attribution on the object"
    (sum_a, sum_b), = _numbers(out, r"\(F\(x\) - F\(baseline\)\), black: \[\s*(\S+)\s+(\S+)\s*\]")
    assert sum_a < 0 and sum_b < 0, "the change to explain against black is negative"
    (shap_a, shap_b, all_a, all_b), = _numbers(out, r"KernelSHAP values add up to: \[(\S+), (\S+)\]\s+F\(all\) - "
                                                    r"F\(none\), all segments grey: \[\s*(\S+)\s+(\S+)\s*\]")
    assert abs(shap_a - all_a) < 1e-3 * abs(all_a) and abs(shap_b - all_b) < 1e-3 * abs(all_b), \
        "KernelSHAP's values add up to F(all on) - F(all off) (float32 model)"
    costs = _numbers(out, r"one LIME sample costs ([\d.]+) vanilla gradients; 1000 samples about (\d+)")
    assert len(costs) == 2 and all(one < 1 and thousand > 100 for one, thousand in costs), \
        "the chapter's speed claim: a sample is a fraction of a gradient, 1000 samples hundreds of gradients"


def _claims_10(out):
    assert "dout/dx [[3.0, 0.0], [3.0, 3.0]]" in out, "2 through the body + 1 through the shortcut where x > 0"
    assert "numeric gradient agrees: True" in out
    (accuracy,), = _numbers(out, r"accuracy on these images (\d+)%")
    assert accuracy >= 75, "the shipped ResNet classifies the shapes"
    shares = {name: (float(on), float(area)) for name, on, area in
              re.findall(r"(shapes_\w+ [\w.]+)\s+map \d+x\d+: (\d+)% of the heat on the object \(the object covers "
                         r"(\d+)% of the image\)", out)}
    vgg, layer3, layer4 = (shares[k] for k in ("shapes_net features.14", "shapes_resnet layer3",
                                               "shapes_resnet layer4"))
    assert vgg[0] > 2 * vgg[1] and layer3[0] > 2 * layer3[1], "the 8x8 and 4x4 maps localize"
    assert layer4[0] < layer3[0] < vgg[0], "coarser maps localize less: layer4's 2x2 hardly beats chance"
    assert layer4[0] < 2 * layer4[1], "layer4's 2x2 map hardly beats chance"
    ratios = {stage: (float(a), float(b), float(c)) for stage, a, b, c in
              re.findall(r"relevance at (\w+)\s+/ logit: split\s+([\d.-]+), copied\s+([\d.-]+), "
                         r"copied / split\s+([\d.-]+)", out)}
    assert list(ratios) == ["layer4", "layer3", "layer2", "layer1", "maxpool"]
    splits = [r[0] for r in ratios.values()]
    assert all(a >= b - 0.02 for a, b in zip(splits, splits[1:])) and 0 < splits[-1] <= 1, "split never grows"
    for stage, doubled in (("layer3", 2), ("layer2", 4), ("layer1", 8), ("maxpool", 16)):
        assert 0.6 * doubled < ratios[stage][2] < 1.4 * doubled, f"copied: doubled at every block ({stage})"
    (diff,), = _numbers(out, r"max difference of the outputs: (\S+)")
    assert diff < 1e-12, "folding batch norm into the conv leaves the outputs equal"
    assert "folded weight[0, 0] = weight[0, 0] * scale[0]: True" in out
    (delta,), = _numbers(out, r"DeepLIFT summation error on the ResNet: (\S+)")
    assert delta < 1e-3, "DeepLIFT sums to delta through every block (float32)"


def _claims_11(out):
    table = {}
    for block in re.split(r"\n(?=VGG features.14: maps|ResNet layer2: maps)", out)[1:3]:
        label = block.split(":")[0]
        table[label] = {name: (float(on), float(c)) for name, on, c in re.findall(
            r"  (\w+)\s+(\d+)% of the heat on the object, correlation with Grad-CAM\s+([\d.-]+)", block)}
    vgg, resnet = table["VGG features.14"], table["ResNet layer2"]
    assert len(vgg) == len(resnet) == 10
    gradient = ["grad_cam_plus_plus", "xgrad_cam", "hires_cam", "grad_cam_elementwise", "layer_cam"]
    assert min(vgg[m][1] for m in gradient) >= 0.95, "on the VGG-style net the gradient CAMs nearly agree"
    assert max(resnet[m][1] for m in gradient) < 0.9, "on the ResNet's layer2 they do not"
    (area,), = _numbers(out, r"the objects cover (\d+)% of the images")
    assert all(on > 2 * area for on, _ in vgg.values()), "every CAM beats the chance level on the VGG-style net"
    assert "layer4: G constant over the positions: True" in out
    for name in ("hires_cam", "xgrad_cam"):
        (diff,), = _numbers(out, rf"layer4: {name} vs grad_cam, max relative difference (\S+)")
        assert diff < 1e-6, "a flat gradient makes the averaging irrelevant"
    (vgg_neg, _), (res_neg, _) = _numbers(out, r"(\d+)% of the gradient entries are negative, (\d+)%")
    assert 35 <= vgg_neg <= 65 and 35 <= res_neg <= 65, "about half of the gradient is negative"
    assert "Grad-CAM++ gives all of them 0: True" in out
    (median,), = _numbers(out, r"sum\(A\) g over the positive channels, median ([\d.]+)")
    assert median < 0.5, "sum(A) g is small, so the weight is about h w g / 2"
    (ranks,), = _numbers(out, r"rank correlation of the two weights over the positive channels ([\d.]+)")
    (without, with_), = _numbers(out, r"without its negative channels: correlation ([\d.]+), vs Grad-CAM: ([\d.]+)")
    assert ranks > 0.95 and without > 0.99 > with_, "Grad-CAM++ at layer4 is Grad-CAM without the negative channels"
    (black, low, high), = _numbers(out, r"circle at logit (\d+); the real images' top logits: (\d+) to (\d+)")
    assert black > high, "the black image scores beyond every real image"
    scores = dict((s, float(v)) for s, v in re.findall(r"Score-CAM scored by (\w+)\s*:\s+(\d+)%", out))
    assert scores["logit"] < 2 * area < scores["probability"], "logits light up the background, probability not"
    assert "Eigen-CAM for the true class and for another class: identical: True" in out
    (corr,), = _numbers(out, r"Grad-CAM for the true class and for another class: correlation ([\d.-]+)")
    assert corr < 0.6, "Grad-CAM changes with the class"
    (plus, plus_c), (minus, minus_c) = _numbers(out, r"image 0, sign [+-]1: (\d+)% of the heat on the object "
                                                      r"\(the sum it follows: ([+-][\d.]+)\)")
    assert plus_c > 0 > minus_c and plus < area < minus, "the convention's sign points away from the object here"
    passes = {m: (int(a), int(b)) for m, a, b in
              re.findall(r"(\w+)\s+images through the first layer\s+(\d+), through the last\s+(\d+), for 8", out)}
    (channels,), = _numbers(out, r"channels at features.14: (\d+)")
    assert passes["grad_cam"] == passes["layer_cam"] == (8, 8)
    assert passes["score_cam"] == (8 + 8 * channels,) * 2, "one forward per channel and image"
    assert passes["ablation_cam"] == (8, 8 + 8 * channels), "the ablated copies run the rest of the network only"
    (mine, _), = _numbers(out, r"positive Grad-CAM on ResNet layer2: (\d+)% of the heat on the object, correlation "
                               r"with Grad-CAM ([\d.]+)")
    assert mine < resnet["grad_cam"][0], "leaving the negative channels out moves heat off the object"


CLAIMS = {f"{i:02d}": globals()[f"_claims_{i:02d}"] for i in range(1, 12)}


def test_there_are_twelve_tutorials_with_cells():
    assert len(TUTORIALS) == 12
    for path in TUTORIALS:
        assert path.read_text().count("# %%") >= 4, path.name


def test_every_tutorial_ends_with_questions_and_the_instructors_answers():
    for path in TUTORIALS:
        text = path.read_text()
        assert "# ## Questions" in text or "# ## Exercises" in text, path.name
        assert text.count("# BEGIN ANSWER") >= 2 and text.count("# BEGIN ANSWER") == text.count("# END ANSWER"), \
            path.name


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_its_claims_hold(tmp_path, path):
    env = dict(os.environ, MPLBACKEND="Agg", MINICNN_QUICK="1", TUTORIAL_FIGURES=str(tmp_path),
               MINICNN_HOME=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = list(tmp_path.glob("*.png"))
    if "01_engine" not in path.name:
        assert figures, "the tutorial should draw its figure"
    CLAIMS[path.name[:2]](result.stdout)


def _claims_12(out):
    rows = {name: [float(v) for v in values.split()] for name, values in
            re.findall(r"^(\w+(?: map)?)\s+((?:[\d.-]+\s+){5}[\d.-]+)$", out, re.M)}
    roc, pf = {n: r[0] for n, r in rows.items()}, {n: r[2] for n, r in rows.items()}
    assert len(rows) == 7 and abs(roc["random map"] - 0.5) < 0.1
    for name in ("vanilla_gradient", "guided_backprop", "grad_cam", "lrp"):
        assert roc[name] > 0.85, "localisation separates most methods from the random map"
    for name in ("gradient_x_input", "integrated_gradients"):
        assert abs(roc[name] - 0.5) < 0.1, "... but not these two, at chance"
    agree = {(a, b): float(v) for a, b, v in
             re.findall(r"rankings of the six methods, (.+?) vs (.+?): Spearman ([+-][\d.]+)", out)}
    assert agree["ROC AUC", "relevance mass accuracy"] > 0.7, "the localisation metrics agree"
    assert agree["ROC AUC", "faithfulness estimate"] > 0.5 > agree["ROC AUC", "pixel flipping AUC"]
    assert agree["pixel flipping AUC", "faithfulness estimate"] < 0, "the faithfulness metrics disagree"
    (beat,), = _numbers(out, r"pixel flipping: (\d+) of 6 methods beat the random map")
    assert beat <= 2 and sum(pf[n] < pf["random map"] for n in pf if n != "random map") == beat
    assert "logits equal after the shift: True" in out
    for name in ("vanilla_gradient", "guided_backprop", "grad_cam"):
        assert re.search(rf"^{name}\s+unchanged", out, re.M), name
    shift = {n: float(v) for n, v in re.findall(r"^(\w+)\s+changes: max \|difference\| = (\d+)%", out, re.M)}
    assert shift["gradient_x_input"] > 100 and shift["integrated_gradients"] > 100 and shift["lrp"] <= 2
    fr = {(m, n): (float(k), float(c), float(p), kept) for m, n, k, c, p, kept in re.findall(
        r"(shapes_\w+)\s+(\w+)\s+top-10% kept ([\d.]+), rank correlation ([\d.-]+), largest change of a pixel "
        r"(\d+)/255, class kept: (\w+)", out)}
    assert len(fr) == 8 and all(v[3] == "True" and v[2] <= 8 for v in fr.values()), "in budget, class kept"
    for model in ("shapes_net", "shapes_resnet"):
        mine = {n: v[0] for (m, n), v in fr.items() if m == model}
        assert mine["vanilla_gradient"] == min(mine.values()), "the vanilla gradient is the most fragile"
        assert mine["guided_backprop"] > mine["vanilla_gradient"] and mine["lrp"] > mine["vanilla_gradient"]


CLAIMS["12"] = _claims_12
