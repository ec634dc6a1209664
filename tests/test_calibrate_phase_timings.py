"""``benchmarks.convert_speed`` reads each conversion's report.json phase timings and prints their medians,
so a speed comparison with ONNX Runtime also says where our time goes (calibration, report, ...)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.convert_speed import phase_lines, report_timings


def test_report_timings_reads_the_phases_and_tolerates_a_missing_report(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"timings": {"import_s": 0.11, "calibrate_s": 0.59,
                                                                   "report_s": 0.21, "total_s": 0.98}}))
    assert report_timings(tmp_path) == {"import": 0.11, "calibrate": 0.59, "report": 0.21, "total": 0.98}
    assert report_timings(tmp_path / "nowhere") == {}
    (tmp_path / "report.json").write_text("{not json")
    assert report_timings(tmp_path) == {}


def test_phase_lines_give_one_line_per_model_with_phases() -> None:
    rows = [{"model": "digits CNN", "ours_phases_s": {"calibrate": 0.05, "total": 0.2}},
            {"model": "CNN 96x96", "ours_phases_s": {}}]
    assert phase_lines(rows) == ["phases (ours, medians, s) digits CNN: calibrate 0.05, total 0.2"]
