"""Command line: ``python -m skinverse {info,demo,config,fit,predict,evaluate} [--help]``.

Mistakes print one line, ``skinverse: error: ...``, on stderr and exit with a code that
says whose they are (see ``EXIT_CODES``); ``--debug`` or ``SKINVERSE_DEBUG=1`` shows the
traceback instead.
"""

import argparse
import json
import os
import platform
import sys
import textwrap
import time
import warnings

EXIT_CODES = {"ok": 0, "training": 1, "config": 2, "data": 3, "interrupted": 130}

_EPILOG = """\
exit codes: 0 success; 1 training failed (or an unexpected error); 2 usage or config
error (unknown estimator or parameter, output path leaving the output directory, a
parameter that cannot be pickled); 3 data error (missing or unreadable file, missing key,
wrong shapes); 130 interrupted. Set SKINVERSE_DEBUG=1 (or pass --debug) for tracebacks.
"""


def default_threads():
    """Torch threads when ``--threads`` is not given: half the CPUs this process may use,
    at least 1 and at most 4.

    Torch's own default (one thread per core) spins its OpenMP threads at every barrier;
    when another process keeps a core busy, a fit slows down many-fold. Half the cores
    leaves that slack. Measured on 2 shared cores (``demo --only RIMRegressor
    UnrolledRegressor``): 1 thread 30-61 s wall (27-30 s CPU), 77-96 s with a busy-loop
    process; 2 threads 187 s to over 300 s wall, burning 137-191 s of CPU spinning.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus // 2))


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
    _print_rows(rows)
    return 0


def _print_rows(rows, stream=None):
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", file=stream or sys.stdout)


def _demo(args):
    from skinverse._config import ConfigError
    from skinverse._demos import DEMOS

    names = [name for name, _ in DEMOS]
    chosen = args.only or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ConfigError(f"unknown estimator(s) {unknown}; choose among {names}")
    rows = []
    for name, run in DEMOS:
        if name in chosen:
            print(f"[demo] {name}: fitting ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            data, metric, value, baseline = run(quick=args.quick, progress=True)
            seconds = time.perf_counter() - start
            print(f"[demo] {name}: done in {seconds:.1f} s", file=sys.stderr, flush=True)
            rows.append((name, data, metric, value, baseline, seconds))
    header = ("estimator", "data", "metric", "score", "baseline", "seconds")
    table = [header] + [
        (n, d, m, f"{v:.4f}", b, f"{s:.1f}") for n, d, m, v, b, s in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return 0


def _config(args):
    from skinverse._config import ConfigError, template

    text = json.dumps(template(args.estimator), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.output) and not args.force:
        raise ConfigError(f"{args.output!r} exists; pass --force to overwrite it.")
    with open(args.output, "w") as handle:
        handle.write(text)
    print(f"wrote a {args.estimator} config to {args.output}")
    return 0


def _fit(args):
    from skinverse._cli_run import fit_from_config

    estimator, output, score = fit_from_config(args.config, args.output, args.output_dir)
    epochs = getattr(estimator, "n_iter_", "?")
    scored = "" if score is None else f"; training score {score:.4f}"
    print(f"fitted {type(estimator).__name__} ({epochs} epochs){scored}; saved to {output}")
    return 0


def _predict(args):
    import numpy as np

    from skinverse._cli_run import data_for_model, predict_estimator
    from skinverse._config import load_model, output_path

    target = output_path(args.output_dir, args.name)
    estimator = load_model(args.model)
    predictions = predict_estimator(estimator, data_for_model(args.config, args.data))
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, predictions)
    print(f"saved predictions {predictions.shape} to {target}")
    return 0


def _evaluate(args):
    from skinverse._cli_run import data_for_model, evaluate_estimator
    from skinverse._config import load_model, output_path

    target = None if args.output_dir is None else output_path(args.output_dir, args.name)
    estimator = load_model(args.model)
    rows = evaluate_estimator(estimator, data_for_model(args.config, args.data))
    _print_rows([(name, f"{value:.6g}") for name, value in rows])
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(dict(rows), indent=2) + "\n")
        print(f"saved metrics to {target}")
    return 0


def _common():
    """Options every command takes."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--threads", type=int, metavar="N",
        help=f"torch CPU threads (default here: {default_threads()}, i.e. half the usable "
        "CPUs, at least 1, at most 4; torch's own one-per-core default slows down many-fold "
        "when another process keeps a core busy)")
    common.add_argument("--debug", action="store_true",
                        help="show tracebacks (also SKINVERSE_DEBUG=1)")
    return common


def _data_options(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="config whose 'test_data' (else 'data') section "
                        "gives the data")
    source.add_argument("--data", metavar="FILE", help="a .npz or HDF5 file (arrays named "
                        "X, y, maps, masks, derivatives; y and the others optional) or a "
                        ".npy file (X)")
    parser.add_argument("--model", required=True, help="the model that 'fit' saved")


def _add_commands(sub, common):
    info = sub.add_parser("info", allow_abbrev=False, parents=[common], help="print versions, torch threads "
                          "and the device that device='auto' picks")
    info.set_defaults(func=_info)
    demo = sub.add_parser(
        "demo", allow_abbrev=False, parents=[common],
        help="fit every estimator on data that ships offline and print a results table",
        description="Fit every skinverse estimator on offline data (scikit-learn's bundled "
        "datasets and skinverse.datasets generators) and print a small results table; "
        "progress goes to stderr.")
    demo.add_argument("--only", nargs="+", metavar="NAME", help="run only these estimators")
    demo.add_argument("--quick", action="store_true", help="fewer epochs, for a smoke test")
    demo.set_defaults(func=_demo)
    config = sub.add_parser(
        "config", allow_abbrev=False, parents=[common], help="write a template config (JSON) for an estimator",
        description="Print (or write) a complete config: the estimator's default parameters, "
        "an example data section and the model's output name. Edit it, then run 'fit'.")
    config.add_argument("estimator", help="e.g. UnrolledRegressor")
    config.add_argument("--output", metavar="FILE", help="write the config here")
    config.add_argument("--force", action="store_true", help="overwrite --output")
    config.set_defaults(func=_config)
    _add_fit(sub, common)
    predict = sub.add_parser("predict", allow_abbrev=False, parents=[common], help="predict (or transform) with "
                             "a saved model and save the result as .npy")
    _data_options(predict)
    predict.add_argument("--output-dir", default=".", help="folder of the output (default .)")
    predict.add_argument("--name", default="predictions.npy", help="file name inside "
                         "--output-dir (default predictions.npy)")
    predict.set_defaults(func=_predict)
    evaluate = sub.add_parser("evaluate", allow_abbrev=False, parents=[common], help="score a saved model: its "
                              "score and, for reconstructions, PSNR, SSIM and NMSE")
    _data_options(evaluate)
    evaluate.add_argument("--output-dir", help="also write the metrics as JSON here")
    evaluate.add_argument("--name", default="metrics.json", help="file name inside "
                          "--output-dir (default metrics.json)")
    evaluate.set_defaults(func=_evaluate)


def _add_fit(sub, common):
    from skinverse._cli_data import generators

    fit = sub.add_parser(
        "fit", allow_abbrev=False, parents=[common], help="train an estimator from a config and save it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train from a JSON (or .toml) config {estimator, params, data, "
        "test_data, output}:\n  'params' are the estimator's parameters (a function as "
        "{'callable': 'module:name'});\n  'data' is {'generator': NAME, ...its arguments} "
        "with NAME among\n" + textwrap.fill(", ".join(generators()), 88, initial_indent="    ",
                                          subsequent_indent="    ") + ";\n  or files: {'file': "
        "'d.npz', 'X': key, 'y': key, 'maps': key, 'masks': key, 'derivatives': key},\n"
        "    {'X': 'X.npy', 'y': 'y.npy', ...}, {'file': 'd.h5', 'X': dataset, ...} or "
        "{'h5': DeepInPy file};\n  'output' is the model's file name inside --output-dir "
        "(default model.joblib).\nA built-in problem fills the parameters it defines "
        "(operator, noise_std, simulator,\ntheta_fid, input_shape) that 'params' leaves "
        "null. The model is saved with joblib.\n\nexample:\n  python -m skinverse config "
        "RIMRegressor --output rim.json\n  python -m skinverse fit --config rim.json "
        "--output-dir runs/rim\n  python -m skinverse evaluate --model runs/rim/model.joblib "
        "--config rim.json")
    fit.add_argument("--config", required=True, help="the config file (.json or .toml)")
    where = fit.add_mutually_exclusive_group()
    where.add_argument("--output-dir", default=".", help="folder that receives the model "
                       "(default .); the config's 'output' may not leave it")
    where.add_argument("--output", metavar="FILE", help="save the model exactly here instead")
    fit.set_defaults(func=_fit)


def build_parser():
    """The argparse parser of ``python -m skinverse``."""
    parser = argparse.ArgumentParser(
        prog="python -m skinverse", allow_abbrev=False,
        description="skinverse: learned inverse problems and simulation-based inference "
        "as scikit-learn estimators.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(sub, _common())
    return parser


def _exit_code(exc):
    """``(exit code, one-line message)`` of an exception a command raised."""
    from skinverse._cli_data import DataError
    from skinverse._config import ConfigError, TrainingError

    for kind, code in ((ConfigError, "config"), (DataError, "data"), (TrainingError, "training")):
        if isinstance(exc, kind):
            return EXIT_CODES[code], str(exc)
    return EXIT_CODES["training"], f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"


def main(argv=None):
    """Run the command line; returns the exit code (argparse exits 2 on bad usage)."""
    import torch

    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("SKINVERSE_DEBUG", "") not in ("", "0")
    threads = torch.get_num_threads()
    try:
        if args.threads is not None and args.threads < 1:
            raise _config_error(f"--threads must be at least 1, got {args.threads}.")
        torch.set_num_threads(args.threads or default_threads())
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("skinverse: interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except Exception as exc:
        if debug:
            raise
        code, message = _exit_code(exc)
        print(f"skinverse: error: {message}", file=sys.stderr)
        return code
    finally:
        torch.set_num_threads(threads)  # in-process callers keep their setting


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, without the source line they came from."""
    print(f"skinverse: warning: {category.__name__}: {message}", file=file or sys.stderr)


def _config_error(message):
    from skinverse._config import ConfigError

    return ConfigError(message)


if __name__ == "__main__":
    sys.exit(main())
