"""Which optional code paths of the kernels a generated model uses (``ER_*`` feature macros).

The kernels compile every layout of their constants by default (each macro defaults to 1 in
``er_kernels.h``); the generated Makefile passes ``-DER_X=0`` for each layout no op of the model
uses, so that a model links only the reads it needs: the kernel-decoded weights (``er_wstream``,
``er_wchunk``), split weights (``er_wsplit``), int32 or bit-packed biases, and the three
per-channel requantization layouts. A build without these flags is the same program, larger."""
from __future__ import annotations

import re

#: macro -> the pattern of the generated parameter text that needs it
FEATURES = {
    "ER_WSTREAM": r"\.w_split = 3\b",
    "ER_WCHUNK": r"\.w_split = 2\b",
    "ER_WSPLIT": r"\.w_split = 1\b",
    "ER_RQ_PACKED_USED": r"\.rq_kind = ER_RQ_PACKED\b",
    "ER_RQ_SPLIT_USED": r"\.rq_kind = ER_RQ_SPLIT\b",
    "ER_RQ_SCALE_USED": r"\.rq_kind = ER_RQ_SCALE\b",
    "ER_BIAS32_USED": r"\.bias_bytes = 4\b",
    "ER_BIAS_PACKED_USED": r"\.bias_bytes = 1(2[89]|[3-5][0-9])\b",  # ER_BIAS_PACKED (128) | width 1-31
}


def unused_features(params_text: str) -> list[str]:
    """The feature macros that no parameter block in ``params_text`` (the model's C) needs."""
    return [name for name, pattern in FEATURES.items() if not re.search(pattern, params_text)]


def feature_flags(params_text: str) -> str:
    """The compiler flags that leave out the kernels' code paths the model does not use."""
    return " ".join(f"-D{name}=0" for name in unused_features(params_text))


__all__ = ["FEATURES", "feature_flags", "unused_features"]
