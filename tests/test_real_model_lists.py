"""The real-model benchmark lists (``benchmarks/real_models_onnx.py``, ``benchmarks/real_models_tflite.py``):
labels select models, so they must be unique; an entry with its own input generator (``Entry.gen``) gets that
generator's draws instead of synthetic images. No model is downloaded here."""
from __future__ import annotations

import numpy as np

from benchmarks import real_models_onnx, real_models_tflite
from benchmarks._pypi_models import PypiModel
from benchmarks.real_models_tflite import Entry, _images, birdnet_metadata


def test_labels_are_unique() -> None:
    for labels in ([m.label for m in real_models_onnx.MODELS], [e.label for e in real_models_tflite.MODELS]):
        assert len(labels) == len(set(labels)), sorted(x for x in labels if labels.count(x) > 1)


def test_every_onnx_entry_pins_a_version_and_a_model_file() -> None:
    for m in real_models_onnx.MODELS:
        assert m.source.version[0].isdigit() and m.source.member.endswith(".onnx"), m.label
    for e in real_models_tflite.MODELS:
        assert e.model.version[0].isdigit() and e.model.member.endswith(".tflite"), e.label


def test_entry_generator_replaces_synthetic_images() -> None:
    e = Entry("meta", PypiModel("p", "1.0", "m.tflite"), gen=birdnet_metadata)
    a, b = _images(e, (1, 3), 5, seed=7), _images(e, (1, 3), 5, seed=7)
    assert a.shape == (5, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, _images(e, (1, 3), 5, seed=8))
    assert np.all((a[:, 2] >= 1) & (a[:, 2] <= 48) & (a[:, 2] == np.round(a[:, 2])))  # week of the year
    assert np.all(np.abs(a[:, 0]) <= 90) and np.all(np.abs(a[:, 1]) <= 180)


def test_entry_without_generator_keeps_images_in_its_range() -> None:
    e = Entry("img", PypiModel("p", "1.0", "m.tflite"), lo=-1.0)
    x = _images(e, (1, 16, 16, 3), 3, seed=0)
    assert x.shape == (3, 16, 16, 3) and x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0
    assert np.array_equal(x, _images(e, (1, 16, 16, 3), 3, seed=0))
