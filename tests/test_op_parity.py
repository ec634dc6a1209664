"""The op parity table (converters/data/op_parity.json, `edge-convert ops`) says only what the tests show."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.op_parity import TABLE_PATH, builtin_name, load_table, read_tflm_ops, render_markdown
from converters.cli import main as convert_main
from edge_runtime.backends.micro.kernels import REGISTRY


def test_resolver_method_names_map_to_builtin_names():
    assert builtin_name("AddAveragePool2D") == "AVERAGE_POOL_2D"
    assert builtin_name("AddL2Normalization") == "L2_NORMALIZATION"
    assert builtin_name("AddL2Pool2D") == "L2_POOL_2D"
    assert builtin_name("AddReverseV2") == "REVERSE_V2"
    assert builtin_name("AddSplitV") == "SPLIT_V"
    assert builtin_name("AddGatherNd") == "GATHER_ND"
    assert builtin_name("AddRelu6") == "RELU6"


def test_table_lists_exactly_tflm_ops(shared):
    ops = read_tflm_ops(shared / "reference" / "tflm_ops.txt")
    table = load_table()
    assert [(o["name"], o["kind"]) for o in ops] == [(r["name"], r["kind"]) for r in table["ops"]]
    assert sum(o["kind"] == "builtin" for o in ops) == 100


def test_every_claimed_op_is_registered_in_micro():
    for row in load_table()["ops"]:
        if any(s in ("exact", "close") for s in row["types"].values()):
            assert row["name"] in REGISTRY, f"{row['name']} is claimed but micro has no kernel for it"


def test_every_claim_has_a_parity_test_in_this_session(request):
    """Each (op, type) the table claims has a parity-marked test collected in this run (full runs only)."""
    items = request.session.items
    marked = {}
    for it in items:
        for m in it.iter_markers("parity"):
            kind = m.args[2] if len(m.args) > 2 else "exact"
            marked.setdefault((m.args[0], m.args[1]), set()).add(kind)
    here = Path(__file__).resolve().parent
    wanted = {p.name for p in here.glob("test_micro_ops*.py")} | {"test_micro_control.py", "test_micro_stateful.py"}
    collected = {it.path.name for it in items}
    if not wanted <= collected:
        pytest.skip("run with every micro op test file (a full run) to check the claims against them")
    for row in load_table()["ops"]:
        for dtype, status in row["types"].items():
            assert status in marked.get((row["name"], dtype), set()), \
                f"{row['name']} {dtype} is '{status}' in the table but no test of that kind is collected"


def test_ops_command_json_and_text(capsys):
    assert convert_main(["ops", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"ops", "summary"} <= set(data)
    assert all(set(r) == {"name", "kind", "types"} for r in data["ops"])
    assert convert_main(["ops", "--type", "int8"]) == 0
    out = capsys.readouterr().out
    assert "builtin ops bit-exact in int8" in out
    assert convert_main(["ops", "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("| op | kind |")


def test_markdown_matches_readme():
    readme = (TABLE_PATH.parents[2] / "README.md").read_text()
    assert render_markdown(load_table()) in readme
