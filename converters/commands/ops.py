"""``edge-convert ops``: the op parity table — every op TFLite Micro registers, and micro's status per type."""
from __future__ import annotations

import argparse
import json

from converters.op_parity import STATUSES, TYPE_ORDER, load_table, render_markdown
from edge_runtime.errors import ConfigError

NAME = "ops"
HELP = "list every op TFLite Micro runs and whether micro runs it bit-exactly, per tensor type"
DESCRIPTION = """\
The op parity table of the micro backend against TensorFlow Lite Micro: every op that
TFLM's op resolver registers (builtin and custom), with one status per tensor type:

  exact    integer outputs equal to tflite-micro's (np.array_equal) in the tests
  close    float outputs within 1e-6 (relative) of tflite-micro's in the tests
  missing  tflite-micro runs this type; micro refuses it with a clear error

A type that is not listed has no test (TFLM may not support it either). The statuses come
from the micro op tests (tests/test_micro_ops*.py), not from a hand-written list.

examples:
  edge-convert ops
  edge-convert ops --missing
  edge-convert ops --type int16
  edge-convert ops --json | jq '.ops[] | select(.types.int8 != "exact") | .name'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ops``."""
    parser.add_argument("--json", action="store_true",
                        help='print {"ops": [{"name", "kind", "types": {TYPE: STATUS}}], "summary": {...}}')
    parser.add_argument("--type", metavar="TYPE", choices=TYPE_ORDER,
                        help=f"only this tensor type ({', '.join(TYPE_ORDER)})")
    parser.add_argument("--missing", action="store_true",
                        help="only ops with no implementation, or with a type marked missing")
    parser.add_argument("--markdown", action="store_true", help="print the README's Markdown table")


def _wanted(row: dict, dtype: "str | None", missing_only: bool) -> bool:
    types = row["types"]
    if dtype is not None and dtype not in types:
        return missing_only and not types
    if missing_only:
        return not types or any(s == "missing" for s in types.values())
    return True


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    try:
        table = load_table()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the op parity table could not be read: {exc}") from None
    rows = [r for r in table["ops"] if _wanted(r, args.type, args.missing)]
    if args.type:
        rows = [dict(r, types={k: v for k, v in r["types"].items() if k == args.type}) for r in rows]
    view = dict(table, ops=rows)
    if args.json:
        print(json.dumps(view, indent=1))
        return 0
    if args.markdown:
        print(render_markdown(dict(view, summary=table["summary"])))
        return 0
    width = max([len(r["name"]) for r in rows] + [2])
    for r in rows:
        cells = ", ".join(f"{t}: {s}" for t, s in r["types"].items()) or "missing"
        print(f"{r['name']:<{width}}  {r['kind']:<7}  {cells}")
    s = table["summary"]
    print(f"\n{s['builtin_implemented']}/{s['builtin_ops']} builtin ops implemented; "
          f"{s['builtin_int8_exact']}/{s['builtin_ops']} builtin ops bit-exact in int8, "
          f"{s['builtin_all_listed_types']}/{s['builtin_ops']} with every listed type exact or close; "
          f"{s['custom_implemented']}/{s['custom_ops']} custom ops. Statuses: {', '.join(STATUSES)}.")
    return 0
