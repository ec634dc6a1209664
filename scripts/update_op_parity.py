"""Regenerate the op parity table from the micro op tests: ``python scripts/update_op_parity.py``.

Runs the parity-marked tests (``tests/test_micro_ops*.py`` and friends) with EDGE_PARITY_JSON set,
joins the outcomes with ``../shared/reference/tflm_ops.txt`` into ``converters/data/op_parity.json``
and rewrites the README table between its markers. Refuses to write anything if a test failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.op_parity import TABLE_PATH, build_table, read_tflm_ops, render_markdown  # noqa: E402
from edge_runtime.reference_data import shared_dir  # noqa: E402

BEGIN, END = "<!-- op-parity:begin -->", "<!-- op-parity:end -->"


def main(argv: "list[str] | None" = None) -> int:
    """Run the tests, write the JSON table and the README section."""
    argparse.ArgumentParser(
        prog="python scripts/update_op_parity.py",
        description="Run the parity-marked micro tests against tflite-micro (several minutes), then write "
                    "converters/data/op_parity.json and the README's op parity table. Writes nothing if a "
                    "test fails.",
        epilog="example: python scripts/update_op_parity.py").parse_args(argv)
    shared = shared_dir()
    if shared is None:
        print("update_op_parity: ../shared is missing (it holds reference/tflm_ops.txt)", file=sys.stderr)
        return 1
    ops = read_tflm_ops(shared / "reference" / "tflm_ops.txt")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "parity.json"
        env = dict(os.environ, EDGE_PARITY_JSON=str(out))
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "parity", "-p", "no:cacheprovider",
                              "tests"], cwd=ROOT, env=env)
        if rc != 0:
            print(f"update_op_parity: the parity tests failed (pytest exit {rc}); nothing written", file=sys.stderr)
            return 1
        outcomes = json.loads(out.read_text())
    table = build_table(ops, outcomes, source="tflite-micro commit 90b983c2 (micro_mutable_op_resolver.h)")
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n")
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN in text and END in text:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), BEGIN + "\n" + render_markdown(table) + "\n" + END,
                     text, flags=re.S)
        readme.write_text(new)
    s = table["summary"]
    print(f"update_op_parity: {s['builtin_int8_exact']}/{s['builtin_ops']} builtin ops exact in int8, "
          f"{s['builtin_all_listed_types']} complete; written {TABLE_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
