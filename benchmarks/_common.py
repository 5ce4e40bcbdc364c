"""Helpers shared by the benchmark scripts: a table printer and the JSON writer."""

import json
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def print_table(rows, columns):
    table = [columns] + [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))


def write_json(name, payload, path=None):
    path = Path(path) if path else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")


def parse_overrides(items):
    """``['key=value', ...]`` -> ``{key: value}``, each value a Python literal or else the
    plain string (``--set width=16 mixed_precision=None denoiser=unet``)."""
    import ast

    out = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
