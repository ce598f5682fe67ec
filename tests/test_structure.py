"""Issue 10: one method registry, one input convention, no upward imports, no import cycles."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import attribution as attr
import minicnn as mc
from attribution import cli, evaluate
from attribution.registry import ALIASES, METHODS, get_method

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("minicnn", "attribution")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """Every module of ours that ``path`` imports, at the top or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {_module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            submodules = {f"{module}.{alias.name}" for alias in node.names} & modules   # "from . import methods"
            found |= submodules
            if len(submodules) < len(node.names):       # names defined in the module (or its __init__) itself
                found.add(module)
    return {m for m in found if m in modules and m != name}


def _graph():
    return {_module_name(p): _imports(p) for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}


def test_minicnn_never_imports_attribution():
    for module, imports in _graph().items():
        if module.startswith("minicnn"):
            assert not [m for m in imports if m.startswith("attribution")], (module, imports)


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ imports its modules; a module importing its own package's __init__ back is a cycle
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_registry_is_the_one_table():
    assert list(METHODS)[:6] == ["vanilla_gradient", "gradient_x_input", "deconvnet", "guided_backprop", "grad_cam",
                                 "guided_grad_cam"]
    # the rest of the CAM family follows Grad-CAM, in the order of attribution.cam_family
    from attribution import cam_family
    assert list(METHODS)[6:16] == [w for w in cam_family.WEIGHTINGS if w != "grad_cam"] + ["score_cam",
                                                                                          "ablation_cam", "fullgrad"]
    assert list(METHODS)[16:19] == ["smoothgrad", "integrated_gradients", "occlusion"]
    assert all(m.name == name and m.title for name, m in METHODS.items())
    assert get_method("gradcam") is METHODS["grad_cam"] and get_method("vanilla") is METHODS["vanilla_gradient"]
    with pytest.raises(ValueError, match="unknown method 'lime_juice'; valid: vanilla_gradient"):
        get_method("lime_juice")
    # the evaluation and the command line list the registry's methods, in its order
    assert list(evaluate.evaluation_methods()) == list(METHODS)
    assert set(cli.DEFAULT_METHODS) <= set(METHODS)
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["explain"].format_help()
    for name in list(METHODS) + list(ALIASES):
        assert name in help_text.replace("\n", " ").replace("  ", " ") or name in help_text, name
    # a setting that differs on purpose is an explicit override at the call, not another table
    assert METHODS["smoothgrad"].settings["noise_level"] == 0.15
    assert cli.FIGURE_SETTINGS == {"smoothgrad": {"noise_level": 0.05}}
    assert evaluate.evaluation_methods(smoothgrad_samples=8)["smoothgrad"].settings["n_samples"] == 8
    assert METHODS["smoothgrad"].settings["n_samples"] == 50                # the override made a new entry


def test_registry_entries_call_the_functions_with_their_settings():
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16))
    np.testing.assert_array_equal(METHODS["integrated_gradients"](model, x, [0, 1]),
                                  attr.integrated_gradients(model, x, [0, 1], steps=32))
    np.testing.assert_array_equal(METHODS["occlusion"](model, x, [0, 1]),
                                  attr.occlusion(model, x, [0, 1], window=(2, 2), stride=(1, 1)))
    np.testing.assert_array_equal(METHODS["smoothgrad"](model, x, [0, 1], n_samples=4),
                                  attr.smoothgrad(attr.vanilla_gradient, model, x, [0, 1], n_samples=4,
                                                  noise_level=0.15, seed=0))
    np.testing.assert_array_equal(METHODS["smoothgrad"](model, x, [0, 1], n_samples=4, of="guided"),
                                  attr.smoothgrad(attr.guided_backprop, model, x, [0, 1], n_samples=4,
                                                  noise_level=0.15, seed=0))
    assert METHODS["grad_cam"].display == "overlay" and METHODS["gradient_x_input"].display == "signed"
    assert METHODS["guided_backprop"].display == "abs"


def test_integrated_gradients_returns_an_array_unless_asked_for_the_delta():
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 16, 16))
    a = attr.integrated_gradients(model, x, [0, 1], steps=8)
    assert isinstance(a, np.ndarray) and a.shape == x.shape
    b, delta = attr.integrated_gradients(model, x, [0, 1], steps=8, return_delta=True)
    np.testing.assert_array_equal(a, b)
    logits, base = model.forward(x)[[0, 1], [0, 1]], model.forward(np.zeros_like(x))[[0, 1], [0, 1]]
    np.testing.assert_allclose(delta, a.reshape(2, -1).sum(axis=1) - (logits - base), rtol=1e-12)


def test_every_shipped_model_takes_images_in_0_1_and_normalizes_inside():
    from minicnn.models import shapes_net, vgg16
    for model in (shapes_net(), vgg16(width=1 / 64, hidden=8)):
        first_name, first = model.named_layers()[0]
        assert first_name == "normalize" and isinstance(first, mc.Normalize)


def test_sequential_replace_renames_and_keeps_the_function(rng):
    from nets import small_vgg
    model = small_vgg()
    x = rng.standard_normal((1, 3, 16, 16))
    before = model.forward(x)
    old = model["features.0"]
    wrapped = mc.Sequential({"pad": mc.ConstantPad2d(1), "conv": mc.Conv2d(3, 6, 3, dtype=np.float64)})
    wrapped["conv"].params = dict(old.params)
    assert model.replace("features.0", wrapped) is old
    assert model.layer_names()[:2] == ["features.0.pad", "features.0.conv"]
    np.testing.assert_allclose(model.forward(x), before, rtol=1e-12)
    assert model.backward(np.ones_like(before)).shape == x.shape
    with pytest.raises(KeyError, match="no layer named 'features.99'"):
        model.replace("features.99", mc.ReLU())
    with pytest.raises(TypeError, match="must become a minicnn layer"):
        model.replace("features.1", "relu")


def test_grader_lives_above_both_packages():
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "python -m attribution.grade" in result.stdout
    assert not (ROOT / "minicnn" / "grade.py").exists()


def test_library_code_raises_errors_not_asserts():
    for pkg in PACKAGES:
        for path in (ROOT / pkg).glob("*.py"):
            tree = ast.parse(path.read_text())
            assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)], path
            raised = [n for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc is not None]
            assert not [n.lineno for n in raised if "AssertionError" in ast.unparse(n.exc)], path


def test_package_data_folder_is_not_named_like_a_module():
    assert (ROOT / "minicnn" / "data.py").exists() and not (ROOT / "minicnn" / "data").exists()
    assert (ROOT / "minicnn" / "assets" / "shapes_net.npz").exists()


def test_the_readme_has_one_line_per_registry_method():
    """README's 'Every method in one table': each registry method once, with a paper and a reference."""
    import re

    import attribution
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Every method in one table")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \|(.+)$", section, re.M)
    assert [name for name, _ in rows] == list(attribution.METHODS)
    for name, rest in rows:
        cells = [c.strip() for c in rest.rstrip("|").split("|")]
        assert len(cells) == 4 and all(cells), (name, cells)
