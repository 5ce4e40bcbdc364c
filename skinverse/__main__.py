"""Command line: ``python -m skinverse {info,demo,fit,config} [--help]``."""

import argparse
import platform
import sys
import time


def _info(args):
    import joblib
    import numpy
    import scipy
    import sklearn
    import torch

    import skinverse
    from skinverse._base import resolve_device

    rows = [
        ("skinverse", skinverse.__version__),
        ("python", platform.python_version()),
        ("numpy", numpy.__version__),
        ("scipy", scipy.__version__),
        ("scikit-learn", sklearn.__version__),
        ("joblib", joblib.__version__),
        ("torch", torch.__version__),
        ("torch threads", str(torch.get_num_threads())),
        ("cuda available", str(torch.cuda.is_available())),
        ("device='auto' picks", str(resolve_device("auto"))),
    ]
    if torch.cuda.is_available():
        rows.append(("cuda device", torch.cuda.get_device_name(0)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _demo(args):
    from skinverse._demos import DEMOS

    names = [name for name, _ in DEMOS]
    chosen = args.only or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"unknown estimator(s) {unknown}; choose among {names}", file=sys.stderr)
        return 2
    rows = []
    for name, run in DEMOS:
        if name in chosen:
            start = time.perf_counter()
            data, metric, value, baseline = run(quick=args.quick)
            rows.append((name, data, metric, value, baseline, time.perf_counter() - start))
    header = ("estimator", "data", "metric", "score", "baseline", "seconds")
    table = [header] + [
        (n, d, m, f"{v:.4f}", b, f"{s:.1f}") for n, d, m, v, b, s in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return 0


def _fit(args):
    from skinverse._config import fit_from_config

    try:
        estimator, output, score = fit_from_config(args.config, args.output)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"fitted {type(estimator).__name__} ({estimator.n_iter_} epochs); training score "
          f"{score:.4f}; saved to {output}")
    return 0


def _config(args):
    import json

    from skinverse._config import _estimators, config_from_estimator

    estimators = _estimators()
    if args.estimator not in estimators:
        print(f"unknown estimator {args.estimator!r}; choose among {sorted(estimators)}",
              file=sys.stderr)
        return 2
    config = config_from_estimator(estimators[args.estimator](), data=None)
    print(json.dumps(config, indent=2))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m skinverse",
        description="skinverse: learned inverse problems and simulation-based inference "
        "as scikit-learn estimators.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser(
        "info", help="print versions, torch threads and the device that device='auto' picks"
    )
    info.set_defaults(func=_info)
    demo = sub.add_parser(
        "demo",
        help="fit every estimator on data that ships offline and print a results table",
        description="Fit every skinverse estimator on offline data (scikit-learn's bundled "
        "datasets and skinverse.datasets generators) and print a small results table.",
    )
    demo.add_argument("--only", nargs="+", metavar="NAME", help="run only these estimators")
    demo.add_argument("--quick", action="store_true", help="fewer epochs, for a smoke test")
    demo.set_defaults(func=_demo)
    fit = sub.add_parser(
        "fit", help="train an estimator from a JSON config and save it",
        description="Train from a JSON config {estimator, params, data, output}: 'params' "
        "keys are the estimator's parameters; 'data' is {'generator': 'mri', 'n_images', "
        "'size', 'n_coils', 'acceleration', 'noise_std', 'mask', 'random_state'} or "
        "{'h5': path}. The fitted estimator is saved with joblib.",
    )
    fit.add_argument("--config", required=True, help="path of the JSON config")
    fit.add_argument("--output", help="where to save the fitted estimator (overrides the "
                     "config's 'output')")
    fit.set_defaults(func=_fit)
    config = sub.add_parser("config", help="print an estimator's default config (JSON)")
    config.add_argument("estimator", help="e.g. UnrolledRegressor")
    config.set_defaults(func=_config)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
