"""The op parity table: every op TFLite Micro's op resolver registers, and how micro matches it per type.

The table is data measured by the tests, not written by hand:

1. the micro op tests carry ``@pytest.mark.parity(OP, TYPE[, KIND])`` marks; a run with
   ``EDGE_PARITY_JSON=FILE`` writes each (op, type)'s pass/fail counts to FILE (tests/conftest.py);
2. :func:`build_table` joins those outcomes with TFLM's op list (``tflm_ops.txt``) into
   ``converters/data/op_parity.json`` (``scripts/update_op_parity.py`` runs both steps and
   regenerates the README table);
3. ``edge-convert ops`` prints it; a full test run checks that no op is claimed without a
   passing test behind it.

Statuses per type: ``exact`` (integer outputs ``np.array_equal`` to tflite-micro), ``close``
(float outputs within 1e-6 relative of tflite-micro) and ``missing`` (tflite-micro runs the
type, micro refuses it with a clear error: the test checks both).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

TABLE_PATH = Path(__file__).resolve().parent / "data" / "op_parity.json"
TYPE_ORDER = ("int8", "int16", "float32", "int32", "int64", "uint8", "bool", "float16", "resource")
STATUSES = ("exact", "close", "missing")

#: tflm_ops.txt method names whose BuiltinOperator name does not follow the CamelCase rule.
_NAME_EXCEPTIONS = {
    "AddN": "ADD_N", "BatchMatMul": "BATCH_MATMUL", "CumSum": "CUMSUM", "PadV2": "PADV2", "Relu6": "RELU6",
    "UnidirectionalSequenceLSTM": "UNIDIRECTIONAL_SEQUENCE_LSTM", "Svdf": "SVDF", "Prelu": "PRELU",
}


def builtin_name(method: str) -> str:
    """``AddAveragePool2D`` -> ``AVERAGE_POOL_2D``: the BuiltinOperator name of a resolver method."""
    stem = method[3:] if method.startswith("Add") else method
    if stem in _NAME_EXCEPTIONS:
        return _NAME_EXCEPTIONS[stem]
    snake = re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Z][a-z])", "_", stem)
    return snake.upper()


def read_tflm_ops(path: "str | Path") -> list[dict[str, str]]:
    """Parse ``tflm_ops.txt``: [{"name", "kind", "method"}], kind ``builtin`` or ``custom``."""
    from edge_runtime.formats.tflite_ops import BUILTIN_CODES

    ops = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        method, kind = line.split()[:2]
        if kind == "builtin":
            name = builtin_name(method)
            if name not in BUILTIN_CODES:
                raise ValueError(f"{path}: {method} maps to {name}, which is not a TFLite builtin operator")
            ops.append({"name": name, "kind": "builtin", "method": method})
        elif kind.startswith("custom:"):
            ops.append({"name": kind[len("custom:"):], "kind": "custom", "method": method})
        else:
            raise ValueError(f"{path}: unknown op kind {kind!r} for {method}")
    return ops


def _status(slot: dict[str, Any]) -> Optional[str]:
    """An (op, type)'s status from its test counts; ``None`` when nothing passed or anything failed."""
    if slot.get("failed", 0) or not slot.get("passed", 0):
        return None
    kind = slot.get("kind", "exact")
    return kind if kind in STATUSES else None


def build_table(ops: list[dict[str, str]], outcomes: dict[str, dict[str, dict[str, Any]]],
                source: str = "") -> dict[str, Any]:
    """Join TFLM's op list with the parity test outcomes into the table (the JSON form)."""
    rows = []
    for op in ops:
        types = {}
        for dtype, slot in sorted(outcomes.get(op["name"], {}).items(),
                                  key=lambda kv: TYPE_ORDER.index(kv[0]) if kv[0] in TYPE_ORDER else 99):
            st = _status(slot)
            if st is not None:
                types[dtype] = st
        rows.append({"name": op["name"], "kind": op["kind"], "types": types})
    return {"source": source, "ops": rows, "summary": summarize({"ops": rows})}


def summarize(table: dict[str, Any]) -> dict[str, Any]:
    """Counts: ops with any type implemented, and builtin ops whose every listed type is exact/close."""
    rows = table["ops"]
    builtin = [r for r in rows if r["kind"] == "builtin"]

    def complete(r: dict[str, Any]) -> bool:
        return bool(r["types"]) and all(s in ("exact", "close") for s in r["types"].values())

    def int8_exact(r: dict[str, Any]) -> bool:
        return r["types"].get("int8") == "exact"

    return {
        "builtin_ops": len(builtin),
        "custom_ops": len(rows) - len(builtin),
        "builtin_implemented": sum(1 for r in builtin if any(s != "missing" for s in r["types"].values())),
        "builtin_int8_exact": sum(1 for r in builtin if int8_exact(r)),
        "builtin_all_listed_types": sum(1 for r in builtin if complete(r)),
        "custom_implemented": sum(1 for r in rows if r["kind"] == "custom"
                                  and any(s != "missing" for s in r["types"].values())),
        "type_counts": _type_counts(rows),
    }


def _type_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        for dtype, st in r["types"].items():
            counts.setdefault(dtype, {s: 0 for s in STATUSES})[st] += 1
    return counts


def load_table(path: "str | Path" = TABLE_PATH) -> dict[str, Any]:
    """The committed parity table (``converters/data/op_parity.json``)."""
    return json.loads(Path(path).read_text())


def render_markdown(table: dict[str, Any]) -> str:
    """The README form: one row per op, one column per type."""
    present = [t for t in TYPE_ORDER if any(t in r["types"] for r in table["ops"])]
    head = "| op | kind | " + " | ".join(present) + " |"
    sep = "|---|---|" + "---|" * len(present)
    lines = [head, sep]
    for r in table["ops"]:
        cells = [r["types"].get(t, "") for t in present]
        if not r["types"]:
            cells = ["missing"] + [""] * (len(present) - 1)
        lines.append(f"| {r['name']} | {r['kind']} | " + " | ".join(cells) + " |")
    s = table["summary"]
    lines.append("")
    lines.append(f"{s['builtin_implemented']} of {s['builtin_ops']} builtin ops implemented; "
                 f"{s['builtin_int8_exact']} bit-exact in int8 (the others have no int8 kernel in TFLM: float, bool "
                 f"or int32 only); {s['builtin_all_listed_types']} with every listed type exact or within 1e-6 "
                 f"(float); {s['custom_implemented']} of {s['custom_ops']} custom ops. An empty cell: no test of "
                 "that type (TFLM does not run it, or it is not checked yet); `missing`: TFLM runs it, micro "
                 "refuses it.")
    return "\n".join(lines)
