"""Blocks, batch norm and ResNet: gradient checks in float64, equality with PyTorch (torchvision's layout), and
the walks (names, state dicts, modes, replace) through every container."""
import numpy as np
import pytest
from conftest import away_from_kinks, needs_torch, torch

import minicnn as mc
from minicnn import models

F64 = np.float64


# --------------------------------------------------------------------------
# Level 1: numeric gradient checks
# --------------------------------------------------------------------------

def batch_norm(C, rng, training):
    bn = mc.BatchNorm2d(C, dtype=F64)
    bn.params["weight"] = rng.uniform(0.5, 2, C)
    bn.params["bias"] = rng.standard_normal(C)
    bn.buffers["running_mean"] = rng.standard_normal(C)
    bn.buffers["running_var"] = rng.uniform(0.3, 3, C)
    bn.training = training
    return bn


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_gradcheck_in_both_modes(rng, training):
    bn = batch_norm(3, rng, training)
    x = rng.standard_normal((4, 3, 5, 6)) * 2 + 1
    errors = mc.check_layer(bn, x)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("make,inplanes,planes,stride", [(models.basic_block, 4, 4, 1), (models.basic_block, 4, 6, 2),
                                                         (models.bottleneck, 8, 2, 1), (models.bottleneck, 4, 3, 2)])
def test_residual_blocks_gradcheck_input_and_every_parameter(rng, make, inplanes, planes, stride):
    """Both branches and the fork: identity and downsample shortcuts, basic and bottleneck blocks."""
    def conv(cin, cout, k, s, p):
        return mc.Conv2d(cin, cout, k, s, p, bias=False, dtype=F64, rng=rng)

    def bn(c):
        return batch_norm(c, rng, training=False)
    block = make(inplanes, planes, stride, (conv, bn))
    assert bool(block.shortcut) == (stride != 1 or inplanes != planes * models.EXPANSION[
        "basic" if make is models.basic_block else "bottleneck"])
    x = away_from_kinks(rng, (2, inplanes, 6, 5))
    errors = mc.check_layer(block, x)
    assert max(errors.values()) < 1e-6, errors


def test_a_tiny_residual_block_by_hand():
    """out = relu(2x + x) with a 1x1 conv of weight 2 as the body: forward 3x on positives, and the gradient at
    x is 2 (through the body) + 1 (through the shortcut) where x > 0."""
    conv = mc.Conv2d(1, 1, 1, bias=False, dtype=F64)
    conv.params["weight"][:] = 2.0
    block = mc.Residual({"conv": conv}, after={"relu": mc.ReLU()})
    x = np.array([[[[1.0, -2.0], [0.5, 3.0]]]])
    np.testing.assert_array_equal(block.forward(x), [[[[3.0, 0.0], [1.5, 9.0]]]])
    np.testing.assert_array_equal(block.backward(np.ones((1, 1, 2, 2))), [[[[3.0, 0.0], [3.0, 3.0]]]])


# --------------------------------------------------------------------------
# The tree: names, walks, the context reaching every ReLU, a block of one's own
# --------------------------------------------------------------------------

def test_resnet_names_sizes_and_parameter_counts_are_torchvision_s():
    expected = {"resnet18": (11_689_512, 122), "resnet34": (21_797_672, 218), "resnet50": (25_557_032, 320)}
    for arch, (n_params, n_keys) in expected.items():
        m = models.ARCHITECTURES[arch](init=False)
        state = m.state_dict()
        assert m.num_parameters() == n_params and len(state) == n_keys
        assert state["layer1.0.bn1.num_batches_tracked"].dtype == np.int64
        assert state["layer1.0.bn1.num_batches_tracked"].shape == ()
    r50 = models.resnet50(init=False)
    assert "layer1.0.downsample.1.running_var" in r50.state_dict()              # channels change: 64 -> 256
    assert "layer1.0.downsample.0.weight" not in models.resnet18(init=False).state_dict()
    assert r50["layer4.2.conv3"].params["weight"].shape == (2048, 512, 1, 1)
    assert r50["layer2.0.conv2"].stride == (2, 2) and r50["layer2.0.conv1"].stride == (1, 1)    # v1.5


def test_every_relu_in_every_block_gets_the_rule(rng):
    """The context reaches a ReLU inside a block inside a stage: each ReLU records the rule it was given."""
    model = models.resnet("basic", [1, 1, 1, 1], 5, width=1 / 16, dtype=F64)
    seen = []
    for name, layer in model.named_layers():
        if isinstance(layer, mc.ReLU):
            layer.backprop = (lambda n, original: lambda dout, ctx: seen.append((n, ctx.relu_rule))
                              or original(dout, ctx))(name, layer.backprop)
    model.forward(rng.random((1, 3, 32, 32)))
    model.backward(np.ones((1, 5)), relu_rule="guided")
    relus = [n for n, layer in model.named_layers() if isinstance(layer, mc.ReLU)]
    assert len(relus) == 1 + 4 * 2 and sorted(seen) == sorted((n, "guided") for n in relus)


def test_walks_reach_every_layer_of_every_block(rng):
    model = models.resnet("bottleneck", [1, 2, 1, 1], 5, width=1 / 16, dtype=np.float32)
    assert model.to(F64).dtype == F64
    assert all(v.dtype == F64 for _, v, _ in model.parameters())
    assert model["layer2.1.bn3"].buffers["running_var"].dtype == F64
    assert model["layer2.1.bn3"].buffers["num_batches_tracked"].dtype == np.int64      # an integer stays one
    model.train()
    assert all(layer.training for _, layer in model.named_modules())
    model.eval()
    assert not any(layer.training for _, layer in model.named_modules())
    x = rng.random((2, 3, 33, 35))
    model.forward(x)
    model.backward(np.ones((2, 5)), param_grads=True)
    assert all(grad is not None for _, _, grad in model.parameters())
    assert model.outputs["layer4"] is model.outputs["layer4.0"] is model.outputs["layer4.0.relu3"]
    assert model.layer2[1] is model["layer2.1"] and model["layer2.1.conv1"].name == "layer2.1.conv1"
    old = model.replace("maxpool", mc.Identity())
    assert isinstance(old, mc.MaxPool2d) and isinstance(model["maxpool"], mc.Identity) and model.outputs == {}
    with pytest.raises(ValueError, match="used twice"):
        model.replace("layer1.0.relu1", model["layer1.0.relu2"])
    assert isinstance(model["layer1.0.relu1"], mc.ReLU) and model["layer1.0.relu1"] is not model["layer1.0.relu2"]


def test_state_dict_round_trip_with_and_without_num_batches_tracked(rng):
    a = models.resnet("basic", [1, 1, 1, 1], 4, width=1 / 16, dtype=F64, seed=1)
    b = models.resnet("basic", [1, 1, 1, 1], 4, width=1 / 16, dtype=F64, seed=2)
    for layer in (layer for _, layer in a.named_layers() if isinstance(layer, mc.BatchNorm2d)):
        layer.buffers["running_mean"] = rng.standard_normal(layer.num_features)
    state = a.state_dict()
    b.load_state_dict({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})   # old files
    x = rng.random((1, 3, 32, 32))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    missing = {k: v for k, v in state.items() if k != "layer1.0.bn1.running_var"}
    with pytest.raises(ValueError, match="missing: layer1.0.bn1.running_var"):
        b.load_state_dict(missing)


class Gated(mc.Block):
    """A block of one's own (the README's example): out = 2 * relu(conv(x)) + x."""

    def __init__(self, channels, rng):
        super().__init__({"conv": mc.Conv2d(channels, channels, 3, padding=1, dtype=F64, rng=rng),
                          "relu": mc.ReLU()})

    def forward(self, x):
        return 2 * self.run("relu", self.run("conv", x)) + x

    def backprop(self, dout, ctx):
        return self.back("conv", self.back("relu", 2 * dout, ctx), ctx) + dout


def test_a_block_written_by_a_user_works_with_the_engine_and_the_methods(rng):
    import attribution as attr
    model = mc.Sequential({"stem": mc.Conv2d(3, 4, 3, padding=1, dtype=F64, rng=rng), "gated": Gated(4, rng),
                           "pool": mc.AdaptiveAvgPool2d(1), "flatten": mc.Flatten(),
                           "fc": mc.Linear(4, 3, dtype=F64, rng=rng)})
    x = away_from_kinks(rng, (2, 3, 6, 6))
    errors = mc.check_layer(model, x)
    assert max(errors.values()) < 1e-6, errors
    assert model.backward(np.ones((2, 3)), until="gated.relu").shape == (2, 4, 6, 6)
    assert attr.default_cam_layer(model) == "gated.relu"
    assert {n for n, _, _ in model.parameters()} >= {"gated.conv.weight", "gated.conv.bias"}
    for name in ("vanilla_gradient", "guided_backprop", "grad_cam", "integrated_gradients", "deeplift"):
        out = attr.METHODS[name](model, x, 1)
        assert np.isfinite(out).all() and np.abs(out).sum() > 0, name
    _, delta = attr.deeplift(model, x, 1, return_delta=True)
    np.testing.assert_allclose(delta, 0, atol=1e-10)


def test_a_user_block_that_forgets_backprop_says_so(rng):
    class Half(mc.Block):
        def forward(self, x):
            return self.run("relu", x)
    model = mc.Sequential(Half({"relu": mc.ReLU()}))
    model.forward(rng.random((1, 2)))
    with pytest.raises(NotImplementedError, match="Half must define backprop"):
        model.backward(np.ones((1, 2)))


def test_until_inside_a_block_and_unknown_names(rng):
    model = models.resnet("basic", [1, 1, 1, 1], 5, width=1 / 16, dtype=F64)
    model.forward(rng.random((1, 3, 32, 32)))
    assert model.backward(np.ones((1, 5)), until="layer3.0.bn2").shape == model.outputs["layer3.0.bn2"].shape
    with pytest.raises(KeyError, match="no layer named 'layer9'"):
        model.backward(np.ones((1, 5)), until="layer9")


def test_batch_norm_refuses_bad_settings_and_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="eps must be > 0"):
        mc.BatchNorm2d(3, eps=0)
    bn = mc.BatchNorm2d(3, dtype=F64)
    bn.training = True
    with pytest.raises(ValueError, match="more than one value per channel"):
        bn.forward(np.ones((1, 3, 1, 1)))


# --------------------------------------------------------------------------
# Level 2: equal to PyTorch in float64
# --------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_equals_pytorch(rng, training):
    C = 5
    tbn = torch.nn.BatchNorm2d(C).double()
    bn = batch_norm(C, rng, training)
    with torch.no_grad():
        for key, value in {**bn.params, **bn.buffers}.items():
            getattr(tbn, key).copy_(torch.from_numpy(np.array(value)))
    tbn.train(training)
    x = rng.standard_normal((3, C, 4, 7)) * 3 + 2
    dout = rng.standard_normal(x.shape)
    tx = torch.from_numpy(x).requires_grad_()
    tout = tbn(tx)
    tout.backward(torch.from_numpy(dout))
    out = bn.forward(x)
    dx = bn.backward(dout, param_grads=True)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.grads["weight"], tbn.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.grads["bias"], tbn.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(bn.buffers[key], getattr(tbn, key).numpy(), rtol=1e-12)
    assert int(bn.buffers["num_batches_tracked"]) == int(tbn.num_batches_tracked)


CASES = [("basic", [1, 1, 1, 1], 0.25, (1, 3, 37, 45)), ("basic", [2, 1, 1, 2], 0.125, (2, 3, 32, 32)),
         ("bottleneck", [1, 2, 1, 1], 0.0625, (2, 3, 41, 33)), ("bottleneck", [2, 1, 2, 1], 0.125, (1, 3, 64, 64))]


@needs_torch
@pytest.mark.parametrize("block,layers,width,shape", CASES)
def test_resnet_forward_and_vanilla_gradient_equal_pytorch(rng, block, layers, width, shape):
    """torchvision's layout loads by name; logits and the input gradient agree to float64 rounding, with
    batch-norm statistics far from their defaults, odd image sizes, depths and widths."""
    from torch_resnet import to_minicnn, torch_resnet
    net = torch_resnet(block, layers, width, num_classes=7, seed=len(layers) + int(width * 64))
    model = to_minicnn(net, block, layers, width, 7)
    assert set(model.state_dict()) == set(net.state_dict())
    x = rng.random(shape)
    tx = torch.from_numpy(x).requires_grad_()
    tlogits = net(tx)
    logits = model.forward(x)
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-11, atol=1e-11)
    dout = np.zeros_like(logits)
    dout[:, 3] = 1
    tlogits.backward(torch.from_numpy(dout))
    grad = model.backward(dout)
    scale = np.abs(tx.grad.numpy()).max()
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12 * scale)


@needs_torch
def test_a_full_width_resnet_with_the_winograd_route_equals_pytorch(rng, monkeypatch):
    """Full width (64 to 512 channels), so that layer1's and layer2's 3x3 convolutions take the Winograd route
    (issue 25); logits and the input gradient still agree with PyTorch to float64 rounding."""
    from torch_resnet import to_minicnn, torch_resnet

    from minicnn import winograd
    net = torch_resnet("basic", [1, 1, 1, 1], 1.0, num_classes=7, seed=5)
    model = to_minicnn(net, "basic", [1, 1, 1, 1], 1.0, 7)
    x = rng.random((2, 3, 67, 75))
    tx = torch.from_numpy(x).requires_grad_()
    tlogits = net(tx)
    dout = np.zeros((2, 7))
    dout[:, 3] = 1
    tlogits.backward(torch.from_numpy(dout))
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 64)          # the default rule takes 256 channels or more
    with winograd.enabled():
        assert winograd.pays(64, 64, (3, 3), (1, 1), (1, 1), 17, 19)                 # layer1 at 17x19
        logits = model.forward(x)
        grad = model.backward(dout)
    assert mc.rel_error(logits, tlogits.detach().numpy()) <= 1e-10
    assert mc.rel_error(grad, tx.grad.numpy()) <= 1e-10


@needs_torch
def test_a_training_step_through_a_resnet_equals_pytorch(rng):
    """Training mode: batch statistics, running updates and every parameter gradient, through the blocks."""
    from torch_resnet import to_minicnn, torch_resnet
    net = torch_resnet("basic", [1, 1, 1, 1], 0.125, num_classes=4).train()
    model = to_minicnn(net, "basic", [1, 1, 1, 1], 0.125, 4).train()
    x = rng.random((3, 3, 32, 32))
    dout = rng.standard_normal((3, 4))
    net(torch.from_numpy(x)).backward(torch.from_numpy(dout))
    model.forward(x)
    model.backward(dout, param_grads=True)
    theirs = dict(net.named_parameters())
    for name, _, grad in model.parameters():
        np.testing.assert_allclose(grad, theirs[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)
    state = net.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, state[name].numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


# --------------------------------------------------------------------------
# torchvision's files: convert (both formats), download, recognise by keys
# --------------------------------------------------------------------------

@needs_torch
@pytest.mark.slow
def test_resnet18_checkpoints_in_both_formats_convert_download_and_load_by_name(tmp_path, monkeypatch):
    """A PyTorch-written random ResNet-18 (torchvision's names, 47 MB): `convert` reads the zip and the legacy
    format without PyTorch's help, `download` fetches it from a local server and checks its SHA-256 prefix,
    and `hub.pretrained` gives PyTorch's logits; old files without num_batches_tracked load too."""
    import hashlib
    import http.server
    import subprocess
    import sys

    from conftest import serve
    from minicnn import hub
    from torch_resnet import random_statistics, torch_resnet
    net = random_statistics(torch_resnet("basic", [2, 2, 2, 2], width=1.0, num_classes=1000, dtype=torch.float32))
    x = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    state = net.state_dict()
    zip_file, legacy = tmp_path / "zip.pth", tmp_path / "legacy.pth"
    torch.save(state, zip_file)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, legacy,
               _use_new_zipfile_serialization=False)
    for src in (zip_file, legacy):
        dst = tmp_path / (src.stem + ".npz")
        result = subprocess.run([sys.executable, "-m", "minicnn", "convert", "resnet18", str(src), "-o", str(dst)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        model = models.resnet18(weights=dst, normalize=False)
        np.testing.assert_allclose(model.forward(x), expected, rtol=1e-4, atol=1e-4)
    payload = zip_file.read_bytes()
    name = f"resnet18-{hashlib.sha256(payload).hexdigest()[:8]}.pth"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == f"/{name}" else 404)
            self.send_header("Content-Length", str(len(payload)) if self.path == f"/{name}" else "0")
            self.end_headers()
            if self.path == f"/{name}":
                self.wfile.write(payload)

        def log_message(self, *args):
            pass
    monkeypatch.setitem(hub.TORCHVISION_FILES, "resnet18", name)
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "cache"))
    for base_url in serve(Handler):
        hub.download("resnet18", base_url=base_url, progress=None)
    model = hub.pretrained("resnet18")                       # normalizes inside: feed it the image before that
    assert model.layer_names()[0] == "normalize"
    mean, std = np.array(mc.imagenet.MEAN)[:, None, None], np.array(mc.imagenet.STD)[:, None, None]
    np.testing.assert_allclose(model.forward((x * std + mean).astype(np.float32)), expected, rtol=1e-4, atol=1e-4)


def test_torchvision_file_names_and_the_manual_steps_for_resnets(tmp_path):
    import subprocess
    import sys

    from minicnn import hub
    assert hub.TORCHVISION_FILES["resnet18"] == "resnet18-f37072fd.pth"
    assert hub.TORCHVISION_FILES["resnet34"] == "resnet34-b627a593.pth"
    assert hub.TORCHVISION_FILES["resnet50"] == "resnet50-0676ba61.pth"
    result = subprocess.run([sys.executable, "-m", "minicnn", "download", "resnet50", "--base-url",
                             "http://127.0.0.1:9/models", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"copy it to {tmp_path / 'resnet50-0676ba61.pth'}" in result.stderr


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet101", "vgg11", "vgg16", "shapes_net"])
def test_identify_reads_the_architecture_off_keys_and_shapes(arch):
    state = models.ARCHITECTURES[arch](init=False).state_dict()
    name, build, kwargs = models.identify(state)
    assert name == arch
    build(**kwargs, init=False).load_state_dict(state)
    del state["layer1.0.bn1.num_batches_tracked" if arch.startswith("resnet") else next(iter(state))]
    if arch.startswith("resnet"):
        assert models.identify(state)[0] == arch
    small = models.resnet("bottleneck", [1, 2, 1, 1], 10, width=0.25, init=False).state_dict()
    assert models.identify(small)[2] == {"block": "bottleneck", "layers": [1, 2, 1, 1], "num_classes": 10,
                                         "width": 0.25}
    with pytest.raises(ValueError, match="fit no known architecture"):
        models.identify({"encoder.weight": np.zeros((3, 3))})
    for broken in ({"layer1.0.conv1.weight": np.zeros(3), "fc.weight": np.zeros((2, 2))},          # no conv1
                   {"layer1.0.conv1.weight": np.zeros(3), "fc.weight": np.zeros(()), "conv1.weight": np.zeros(())},
                   {"features.0.weight": np.zeros((4, 3, 3, 3)), "classifier.6.weight": np.zeros((2, 8))}):
        with pytest.raises(ValueError, match="do not fit either"):
            models.identify(broken)


def test_explain_with_a_resnet_weights_file_says_which_architecture_it_found(tmp_path):
    import subprocess
    import sys

    from PIL import Image
    model = models.resnet("basic", [1, 1, 1, 1], 1000, width=1 / 16, seed=3)
    weights = mc.save_weights(model, tmp_path / "small_resnet.npz")
    image = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((80, 96, 3)) * 255).astype(np.uint8)).save(image)
    result = subprocess.run([sys.executable, "-m", "attribution", "explain", str(image), "--model", str(weights),
                             "--methods", "grad_cam", "guided_backprop", "deeplift", "lrp",
                             "--out", str(tmp_path / "out.png")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "recognised resnet (basic blocks [1, 1, 1, 1], width 0.0625)" in result.stdout
    assert (tmp_path / "out.png").stat().st_size > 10_000
