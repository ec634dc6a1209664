"""Plan reports: text, JSON, SVG, and the ``edge-convert plan`` command.

Reference: the ArenaPlan the report is made from (every number printed must be the plan's)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from converters.cli import main as convert_main
from edge_runtime.arena.plan import plan_arena
from edge_runtime.arena.report import format_plan
from edge_runtime.arena.svg import plan_svg
from edge_runtime.formats.tflite import TFLiteModel

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_text_report_lists_every_buffer(mlperf_models):
    plan = plan_arena(TFLiteModel.open(mlperf_models / "kws_ref_model.tflite"), in_place=False)
    text = format_plan(plan, "kws_ref_model.tflite")
    assert f"arena bytes      {plan.arena_bytes:,}" in text
    assert f"lower bound      {plan.lower_bound_bytes:,}" in text
    assert "off (a plan TFLite Micro can execute)" in text
    body = text.split("kind", 1)[1].splitlines()[1:]
    assert len(body) == len(plan.entries)
    for e in plan.tensor_entries():
        line = next(l for l in body if f" #{e.tensor} " in l)
        assert f"{e.offset:,}" in line and f"{e.size:,}" in line and f"{e.first_op}..{e.last_op}" in line


def test_svg_draws_each_buffer_in_its_place(mlperf_models):
    plan = plan_arena(TFLiteModel.open(mlperf_models / "pretrainedResnet_quant.tflite"), in_place=False)
    root = ET.fromstring(plan_svg(plan, "ic"))
    assert root.tag == SVG_NS + "svg"
    rects = [r for r in root.iter(SVG_NS + "rect") if r.find(SVG_NS + "title") is not None]
    assert len(rects) == len(plan.entries)
    # op index on x: a buffer living longer is drawn wider; address on y: a higher offset is drawn higher
    by_name = {r.find(SVG_NS + "title").text.split(":")[0]: r for r in rects}
    e_short = min(plan.entries, key=lambda e: e.last_op - e.first_op)
    e_long = max(plan.entries, key=lambda e: e.last_op - e.first_op)
    assert float(by_name[e_long.name].get("width")) > float(by_name[e_short.name].get("width"))
    low = min(plan.entries, key=lambda e: e.offset)
    high = max(plan.entries, key=lambda e: e.offset)
    assert float(by_name[high.name].get("y")) < float(by_name[low.name].get("y"))
    assert "lower bound" in ET.tostring(root, encoding="unicode")


def test_cli_json_and_svg(mlperf_models, tmp_path, capsys):
    model = mlperf_models / "ad01_int8.tflite"
    svg = tmp_path / "plan.svg"
    assert convert_main(["plan", str(model), "--no-in-place", "--planner", "greedy", "--json", "--svg", str(svg)]) == 0
    d = json.loads(capsys.readouterr().out)
    ref = plan_arena(TFLiteModel.open(model), in_place=False, planner="greedy")
    assert d["arena_bytes"] == ref.arena_bytes == 768
    assert d["lower_bound_bytes"] == ref.lower_bound_bytes and d["in_place"] is False
    assert [t["offset"] for t in d["tensors"]] == [e.offset for e in ref.tensor_entries()]
    ET.parse(svg)


def test_cli_errors_are_one_line(mlperf_models, tmp_path, capsys):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00garbage" * 10)
    assert convert_main(["plan", str(junk)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge-convert: error:") and "not a valid TFLite model" in err and "Traceback" not in err
    assert convert_main(["plan", str(tmp_path / "missing.tflite")]) == 1
    assert "no such file" in capsys.readouterr().err
    out = tmp_path / "o.tflite"
    assert convert_main(["plan", str(mlperf_models / "kws_ref_model.tflite"), "--embed-offline-plan", str(out)]) == 1
    assert "needs --no-in-place" in capsys.readouterr().err and not out.exists()
    bad_svg = str(tmp_path / "no" / "dir" / "x.svg")
    assert convert_main(["plan", str(mlperf_models / "kws_ref_model.tflite"), "--svg", bad_svg]) == 1
    assert "cannot write" in capsys.readouterr().err
