"""The FlexBuffers reader (custom op options) against the flatbuffers package's own encoder."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flexbuffers import decode

flexbuffers = pytest.importorskip("flatbuffers.flexbuffers")

ascii_text = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=12)
scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.none(),
                    st.floats(allow_nan=False, allow_infinity=False, width=32), ascii_text)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                      st.dictionaries(ascii_text,
                                                                      inner, max_size=6)), max_leaves=30)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(v=values)
def test_round_trip_matches_the_reference_encoder(v):
    assert decode(flexbuffers.Dumps(v)) == v


def test_detection_postprocess_style_map():
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Int("max_detections", 10)
        fbb.Float("nms_score_threshold", 0.25)
        fbb.Bool("use_regular_nms", False)
        fbb.Float("y_scale", 10.0)
    d = decode(fbb.Finish())
    assert d["max_detections"] == 10 and d["use_regular_nms"] is False
    assert d["nms_score_threshold"] == pytest.approx(0.25) and d["y_scale"] == 10.0


def test_typed_vectors():
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.Key("ints")
        fbb.TypedVectorFromElements([1, -2, 3], element_type=flexbuffers.Type.INT)
        fbb.Key("floats")
        fbb.TypedVectorFromElements([1.5, 2.5], element_type=flexbuffers.Type.FLOAT)
    d = decode(fbb.Finish())
    assert d == {"ints": [1, -2, 3], "floats": [1.5, 2.5]}


@settings(max_examples=500, deadline=None, derandomize=True)
@given(data=st.binary(max_size=64), v=values)
def test_garbage_gives_one_clear_error(data, v):
    good = bytearray(flexbuffers.Dumps(v))
    for blob in (data, bytes(good[: len(good) // 2]) + data):
        try:
            decode(blob)
        except ModelFormatError as exc:
            assert "FlexBuffer" in str(exc)
