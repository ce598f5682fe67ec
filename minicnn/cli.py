"""``python -m minicnn``: download, convert and train hub.

    python -m minicnn download vgg16            fetch torchvision's VGG-16 into the cache and convert it
    python -m minicnn convert vgg16 SRC.pth -o DST.npz
    python -m minicnn train shapes              reproduce the shipped demo model into shapes.npz
    python -m minicnn train shapes_resnet       reproduce the shipped small ResNet (-o shipped: replace the
                                                package's file)
"""
import argparse
import sys

from . import hub


def _convert(args):
    dst = hub.convert(args.arch, args.src, args.output)
    print(f"wrote {dst}")


def _download(args):
    try:
        npz = hub.download(args.arch, base_url=args.base_url, dest_dir=args.cache_dir, timeout=args.timeout,
                           deadline=args.deadline)
    except hub.Interrupted as e:
        print(f"error: {e}", file=sys.stderr)
        return 128 + e.signum
    except ConnectionError as e:
        print(f"error: {e}\nThe network is unreachable from here, or the server refused.\n"
              f"{hub.manual_steps(args.arch, args.base_url, args.cache_dir)}", file=sys.stderr)
        return 2
    print(f"{args.arch} weights ready: {npz}\nuse them with: minicnn.models.{args.arch}(weights='{npz}')")
    return 0


def _train(args):
    from .shapes_training import train_shapes
    train_shapes(output=args.output, epochs=args.epochs, n_train=args.n_train, seed=args.seed, model=args.dataset)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m minicnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="download torchvision weights into the cache and convert them")
    p.add_argument("arch", choices=sorted(hub.TORCHVISION_FILES), help="the architecture")
    p.add_argument("--base-url", default=hub.TORCHVISION_BASE_URL,
                   help="where the .pth files are served (default: %(default)s)")
    p.add_argument("--cache-dir", default=None,
                   help="folder for the files (default: $MINICNN_HOME or ~/.cache/minicnn)")
    p.add_argument("--timeout", type=float, default=60, help="seconds one read may wait (default: %(default)s)")
    p.add_argument("--deadline", type=float, default=3 * 3600,
                   help="seconds the whole download may take (default: %(default)s)")
    p.set_defaults(func=_download)

    p = sub.add_parser("convert", help="check a torchvision .pth against an architecture and write it as .npz")
    p.add_argument("arch", choices=sorted(hub.TORCHVISION_FILES), help="the architecture")
    p.add_argument("src", help="the .pth file (torch.save, zip or legacy format); it is never modified")
    p.add_argument("-o", "--output", required=True, help="the .npz file to write (written atomically)")
    p.set_defaults(func=_convert)

    p = sub.add_parser("train", help="train the demo model on generated shapes")
    p.add_argument("dataset", choices=["shapes", "shapes_resnet"],
                   help="shapes: the demo model (shapes_net); shapes_resnet: the small ResNet on the same data")
    p.add_argument("-o", "--output", default=None,
                   help="the .npz to write (default: DATASET.npz in this folder); the word 'shipped' replaces the "
                        "package's shipped weights, and nothing else does")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the shipped recipe)")
    p.add_argument("--n-train", type=int, default=None, help="training images (default: the shipped recipe)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, OSError) as e:       # FileNotFoundError, PermissionError, IsADirectoryError
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
