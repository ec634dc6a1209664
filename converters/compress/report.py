"""The distillation report: sizes of teacher and student, and their quality on evaluation data."""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from converters.compress.quality import measure, outputs_of, runtime_runner

#: backends the int8 student is run on; each one that is installed must run it
BACKENDS = ("litert", "onnx", "micro")


def _eval(path: "str | os.PathLike[str]") -> tuple[np.ndarray, Optional[np.ndarray]]:
    z = np.load(os.fspath(path), allow_pickle=False)
    if "x" not in z:
        from edge_runtime.errors import ConfigError

        raise ConfigError(f"{path}: an evaluation .npz needs 'x' (and optionally labels 'y')")
    return z["x"].astype(np.float32), (z["y"] if "y" in z else None)


def distill_report(teacher: str, res: Any, tflite: str, onnx_int8: str, eval_path: Optional[str],
                   conversion: Optional[dict] = None) -> dict[str, Any]:
    """Parameters, file sizes and (with ``eval_path``) teacher/student quality on each backend.

    ``conversion``: the converter's report (its input/output parameters quantize the int8 ONNX I/O).
    """
    rep: dict[str, Any] = {
        "teacher": teacher, "student": res.spec, "teacher_params": res.teacher_params,
        "student_params": res.student_params, "param_ratio": res.student_params / max(res.teacher_params, 1),
        "student_int8_tflite_bytes": os.path.getsize(tflite), "epochs": res.epochs,
        "train_samples": res.train_samples, "final_loss": res.final_loss, "quality": {}, "errors": {},
    }
    if eval_path is None:
        return rep
    x, y = _eval(eval_path)
    t_out = outputs_of(runtime_runner(teacher, "auto", "NCHW"), x)
    rep["quality"]["teacher"] = measure(t_out, x, y, reference=t_out).to_dict()
    s_out = outputs_of(runtime_runner(res.student_onnx, "onnx"), x)
    rep["quality"]["student_float"] = measure(s_out, x, y, reference=t_out).to_dict()
    io = None
    if conversion is not None:
        io = ((conversion["input"]["scale"], conversion["input"]["zero_point"]),
              (conversion["output"][0]["scale"], conversion["output"][0]["zero_point"]))
    for backend in BACKENDS:
        path = onnx_int8 if backend == "onnx" else tflite
        try:
            outs = outputs_of(runtime_runner(path, backend, "NCHW", io_params=io), x)
        except Exception as exc:  # report which backend could not run it, and why
            rep["quality"][f"student_int8_{backend}"] = None
            rep["errors"][f"student_int8_{backend}"] = f"{type(exc).__name__}: {exc}"
            continue
        rep["quality"][f"student_int8_{backend}"] = measure(outs, x, y, reference=t_out).to_dict()
    return rep


__all__ = ["BACKENDS", "distill_report"]
