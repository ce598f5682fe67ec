"""``attribution``: explain images and draw the comparison figure.

    attribution demo [--out FILE]
        the shipped shapes model on generated images (no download); writes the figure
    attribution explain IMAGE... [--model shapes|vgg16|resnet50|...|PATH] [--methods ...] [--target CLASS]
                                 [--out FILE] [--save-maps FILE.npz]
        explain your own images
    attribution evaluate [--model shapes|shapes_resnet] [--n N] [--out DIR] [--json FILE]
        localization, class sensitivity and the sanity checks on the shapes model
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .registry import ALIASES, METHODS, get_method

DEFAULT_METHODS = ["vanilla_gradient", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "smoothgrad"]
# The one deliberate departure from the registry's defaults in the figures: SmoothGrad at 5% noise, not the
# paper's 15%. The shipped shapes model was trained on images with little noise, and at 15% its maps degrade
# (tutorial 6 shows the sweep; the evaluation table keeps 15%).
FIGURE_SETTINGS = {"smoothgrad": {"noise_level": 0.05}}


class UsageError(Exception):
    """A problem with what the user asked for: printed as 'error: ...', exit status 2."""


def figure_title(name, settings):
    title = METHODS[name].title
    if "noise_level" in settings:
        title += f" (noise {settings['noise_level']:.0%})"
    return title


def compute_maps(model, x, targets, names, seed=0, progress=True):
    """{method name: raw map} for registry names, on images x (N, C, H, W) in [0, 1],
    with FIGURE_SETTINGS on top of the registry's defaults; long methods report progress on stderr."""
    maps = {}
    for name in names:
        settings = dict(FIGURE_SETTINGS.get(name, {}))
        if "seed" in METHODS[name].settings:
            settings["seed"] = seed
        if progress and METHODS[name].accepts("progress"):
            settings["progress"] = True
        maps[name] = METHODS[name](model, x, targets, **settings)
    return maps


FIGURE_NOTE = ("Grey maps: the largest |value| over the three colour channels, black at 0, white from the map's "
               "99th percentile up. Red/blue maps (signed methods): evidence for/against the class, white at 0. "
               "The checkerboard texture of gradient maps comes from the strided 2x2 max-pools: each pooled unit "
               "passes its gradient to one pixel of four.")


def draw(images, maps, row_labels):
    """The comparison figure of ``maps`` ({registry name: map}): titles and colour scales from the registry,
    and a note saying how to read them."""
    from .visualize import comparison_figure
    titles = {name: figure_title(name, FIGURE_SETTINGS.get(name, {})) for name in maps}
    kinds = {name: METHODS[name].display for name in maps}
    return comparison_figure(images, maps, row_labels, titles=titles, kinds=kinds, note=FIGURE_NOTE)


def _protected_files():
    """Files no output may replace: the weights shipped in the package and every weights file in the cache."""
    from minicnn.hub import protected_files
    return protected_files()


def _same_file(a, b):
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(path, inputs=(), suffixes=(".png", ".pdf", ".svg", ".jpg"), what="the input images"):
    """The output path, checked before any work: the right suffix, a writable folder, not a folder itself, and
    never one of ``inputs`` (the images, the --model file) or the shipped weights."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"the output {path} is a folder; give a file name ending in {' or '.join(suffixes)}")
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"the output {path} must end in one of {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"the output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"the output folder {path.parent} is not writable")
    for source in inputs:
        if _same_file(path, source):
            raise UsageError(f"the output {path} is one of {what} ({source}); choose another name")
    for source in _protected_files():
        if _same_file(path, source):
            raise UsageError(f"the output {path} is a weights file ({source}: shipped with the package or "
                             f"downloaded into the cache); choose another name")
    return path


def _check_writable_folder(folder):
    """UsageError unless ``folder`` exists and takes a new file, or can be made (checked before any work)."""
    import tempfile
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {folder}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UsageError(f"--out {folder} cannot be written ({existing}: {e.strerror or e})") from None


def _labels(probs, targets, names):
    rows = []
    for p, t in zip(probs, targets):
        top = int(np.argmax(p))
        text = f"pred: {names[top]} ({p[top]:.0%})"
        if t != top:
            text += f"\nexplained: {names[t]} ({p[t]:.0%})"
        rows.append(text)
    return rows


def run_demo(out, seed=0):
    """The shipped model on generated shapes: 4 single objects and one two-object image, explained for each."""
    from minicnn import softmax
    from minicnn.data import SHAPE_CLASSES, make_composites, make_shapes
    from minicnn.models import shapes_net

    from .visualize import save_figure
    out = _check_output(out)
    model = shapes_net(pretrained=True)
    singles, _, _ = make_shapes(4, seed=seed + 1)
    pair, pair_labels, _ = make_composites(1, seed=seed + 6)
    x = np.concatenate([singles, pair, pair])                      # the composite twice: one row per object
    probs = softmax(model.forward(x))
    targets = np.concatenate([probs[:4].argmax(axis=1), pair_labels[0]])
    maps = compute_maps(model, x, targets, DEFAULT_METHODS, seed=seed)
    labels = _labels(probs, targets, SHAPE_CLASSES)
    for i in (4, 5):                                   # the two-object rows: always say which class is explained
        if "explained" not in labels[i]:
            labels[i] += f"\nexplained: {SHAPE_CLASSES[targets[i]]} ({probs[i, targets[i]]:.0%})"
    save_figure(draw(x, maps, labels), out)
    for i, (p, t) in enumerate(zip(probs, targets)):
        best = np.argsort(-p)[:3]
        top = ", ".join(f"{SHAPE_CLASSES[k]} {p[k]:.1%}" for k in best)
        what = f"  (explaining {SHAPE_CLASSES[t]})" if i >= 4 else ""
        print(f"image {i + 1}: {top}{what}")
    print(f"figure written to {out.resolve()}")


# --model: its class names and input size (images are resized so that the shorter side is `resize`, then the
# centre `size` x `size` is cropped; every model takes [0, 1] images)
IMAGENET_MODELS = ("vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
MODEL_CHOICES = ("shapes",) + IMAGENET_MODELS


def _inputs_of(num_classes):
    """(class names, size, resize): the shapes model's 6 classes at 64x64, or ImageNet's 1000 at 224
    (resize 256, as torchvision's V1 weights were evaluated); other class counts are numbered."""
    from minicnn.data import SHAPE_CLASSES
    from minicnn.imagenet import class_names
    if num_classes == len(SHAPE_CLASSES):
        return list(SHAPE_CLASSES), 64, 64
    if num_classes == 1000:
        return class_names(), 224, 256
    return [str(k) for k in range(num_classes)], 224, 256


def load_model(choice, say=print):
    """(model, class names, size, resize) for --model shapes | vgg16 | resnet50 | ... | PATH of a .npz/.pth
    whose architecture is recognised from its keys and shapes (``minicnn.models.identify``)."""
    from minicnn.models import identify, shapes_net
    from minicnn.weights import read_weights
    if choice == "shapes":
        return (shapes_net(pretrained=True),) + _inputs_of(6)
    if choice in IMAGENET_MODELS:
        from minicnn.hub import pretrained
        try:
            model = pretrained(choice)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from None
        except ValueError as e:                            # a cached file that is damaged or of another model
            raise UsageError(f"the cached {choice} weights do not fit: {str(e)[:300]}; remove the file and run "
                             f"python -m minicnn download {choice} again") from None
        return (model,) + _inputs_of(1000)
    path = Path(choice)
    if not path.exists():
        raise UsageError(f"unknown model {choice!r}: use {', '.join(MODEL_CHOICES)}, or the path of a "
                         f".npz/.pth weights file")
    try:
        state = read_weights(path)
        name, build, kwargs = identify(state)
        model = build(**kwargs, init=False).load_state_dict(state)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    say(f"{path}: recognised {name} ({model.num_parameters():,} parameters)")
    return (model,) + _inputs_of(model.named_layers()[-1][1].params["weight"].shape[0])


def _resolve_target(target, names):
    if target is None:
        return None
    if target.isascii() and target.isdigit() and int(target) < len(names):     # "٣" is a digit, not an index
        return int(target)
    matches = [i for i, n in enumerate(names) if n.lower() == target.lower()]
    if matches:
        return matches[0]
    valid = ", ".join(names) if len(names) <= 20 else f"an index 0-{len(names) - 1} or a name such as {names[652]!r}"
    raise UsageError(f"unknown class {target!r}; valid: {valid}")


def run_explain(images, model_choice, methods, target, out, save_maps):
    from minicnn import softmax
    from minicnn.files import atomic_save_npz
    from minicnn.imagenet import preprocess

    from .visualize import save_figure
    inputs = list(images) + ([model_choice] if model_choice not in MODEL_CHOICES else [])
    out = _check_output(out, inputs=inputs, what="the input images or the --model file")
    if save_maps is not None:
        save_maps = _check_output(save_maps, inputs=inputs, suffixes=(".npz",),
                                  what="the input images or the --model file")
        if _same_file(save_maps, out):                 # different suffixes, but one file through a link
            raise UsageError(f"--save-maps and --out name the same file {out}")
    methods = [get_method(m).name for m in methods]
    model, names, size, resize = load_model(model_choice)
    target_index = _resolve_target(target, names)
    try:
        x = np.concatenate([preprocess(image, size, resize) for image in images]).astype(model.dtype)
    except ValueError as e:              # not an image, an unreadable or too large file
        raise UsageError(str(e)) from None
    probs = softmax(model.forward(x))
    targets = probs.argmax(axis=1) if target_index is None else np.full(len(x), target_index)
    maps = compute_maps(model, x, targets, methods)
    labels = [f"{Path(p).name}\n" + lab for p, lab in zip(images, _labels(probs, targets, names))]
    save_figure(draw(x, maps, labels), out)
    for path, p in zip(images, probs):
        best = np.argsort(-p)[:5]
        print(f"{path}: " + ", ".join(f"{names[k]} {p[k]:.1%}" for k in best))
    if save_maps is not None:
        atomic_save_npz(save_maps, dict(maps, images=x, targets=targets))
        print(f"maps written to {save_maps.resolve()}")
    print(f"figure written to {out.resolve()}")


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads, argv):
    """Use ``threads`` BLAS threads for this command: through threadpoolctl where it is installed, else by
    running the command again in a child process whose environment sets them (BLAS reads them when NumPy is
    first imported, which has happened by now). Returns the child's exit status, or None when this process
    goes on."""
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(limits=threads)
        return None
    if all(os.environ.get(v) == str(threads) for v in THREAD_VARIABLES):
        return None                                          # the child: already limited
    import subprocess
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    return subprocess.run([sys.executable, "-m", "attribution", *argv], env=env).returncode


def build_parser():
    parser = argparse.ArgumentParser(prog="attribution", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=None, metavar="N",
                        help="BLAS threads to use (default: all cores). On a shared machine 1 is often faster: "
                             "busy cores make the threads wait for each other (README, 'Shared machines')")
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: _add_parser(*a, parents=[common], **k)  # every command takes --threads
    p = sub.add_parser("demo", help="explain generated shapes with the shipped model and draw the figure",
                       description="Explain generated shapes with the model shipped in the package (no download):"
                                   " four single objects, and one image with two objects explained for each.")
    p.add_argument("--out", default="attribution_demo.png", help="the figure to write (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="which generated images and SmoothGrad noise (default: 0)")

    p = sub.add_parser("explain", help="explain your own images",
                       description="Explain images with a model; greyscale, RGBA, palette and 16-bit images are "
                                   "converted to RGB.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="shapes",
                   help="'shapes' (the shipped demo model, 64x64 inputs), an ImageNet model whose torchvision "
                        f"weights are in the cache ({', '.join(IMAGENET_MODELS)}: python -m minicnn download "
                        "resnet50), or the path of a .npz/.pth weights file of any of them, whose architecture is "
                        "recognised from its keys and shapes (default: %(default)s)")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="METHOD",
                   help=f"columns of the figure, from: {', '.join(METHODS)} (short aliases: "
                        f"{', '.join(f'{a}={n}' for a, n in ALIASES.items())}; default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--target", default=None,
                   help="the class to explain, by name or index (default: each image's predicted class)")
    p.add_argument("--out", default="attribution.png", help="the figure to write (default: %(default)s)")
    p.add_argument("--save-maps", default=None, metavar="FILE.npz", help="also save the raw maps to this .npz")

    p = sub.add_parser("evaluate", help="measure the maps on a shapes model (localization, sanity checks, "
                                        "the standard metrics)",
                       description="Localization (pointing game, relevance mass and rank) on generated shapes with"
                                   " known masks, class sensitivity on two-object images, the model parameter "
                                   "randomization test, the input invariance test, and the standard metrics "
                                   "(attribution.metrics, equal to Quantus: complexity, localisation, "
                                   "faithfulness, axiomatic, robustness) as a table and a figure of ranks. "
                                   "Seeded: the same command prints the same tables.")
    p.add_argument("--model", default="shapes", choices=["shapes", "shapes_resnet"],
                   help="the model: a shipped shapes model, whose object masks are known (default: %(default)s)")
    p.add_argument("--n", type=int, default=12, help="images per measurement (default: %(default)s)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write every result as JSON (for notebooks)")
    p.add_argument("--out", default="evaluation", help="folder for the table and plots (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="data and noise seed (default: %(default)s)")
    return parser


def main(argv=None):
    import matplotlib
    matplotlib.use("Agg")                    # files only: works without a display
    args = build_parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    status = limit_threads(args.threads, sys.argv[1:] if argv is None else list(argv))
    if status is not None:
        return status
    try:
        if getattr(args, "seed", 0) < 0:
            raise UsageError(f"--seed must be 0 or more, got {args.seed}")
        if args.command == "demo":
            run_demo(args.out, args.seed)
        elif args.command == "explain":
            unknown = [m for m in args.methods if m not in METHODS and m not in ALIASES]
            if unknown:
                raise UsageError(f"unknown method {', '.join(unknown)}; valid: {', '.join(METHODS)} "
                                 f"(or the aliases {', '.join(ALIASES)})")
            run_explain(args.images, args.model, args.methods, args.target, args.out, args.save_maps)
        elif args.command == "evaluate":
            from .evaluate import run_evaluation
            if args.n < 2:
                raise UsageError(f"--n must be at least 2 images, got {args.n}")
            if Path(args.out).exists() and not Path(args.out).is_dir():
                raise UsageError(f"--out {args.out} exists and is not a folder")
            _check_writable_folder(Path(args.out))
            if args.json is not None:
                _check_writable_folder(Path(args.json).resolve().parent)
            run_evaluation(n=args.n, out_dir=args.out, seed=args.seed, model_name=args.model, json_path=args.json)
    except (UsageError, ValueError, OSError) as e:      # OSError: FileNotFoundError, PermissionError, a full disk
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
