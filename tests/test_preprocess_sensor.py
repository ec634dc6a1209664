"""Sensor windows, per-channel normalisation, PCA / random projection, feature hashing.

References: a plain numpy sliding-window computation, scikit-learn's PCA and FeatureHasher.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.preprocess import build_preprocessor, load_config
from edge_runtime.preprocess.sensor import FeatureHasher, fit_pca, murmurhash3_32, random_projection, save_pca
from alloc_probe import traced_allocations

RNG = np.random.default_rng(11)
IMU = np.cumsum(RNG.normal(0, 1, (1000, 6)), axis=0) * np.array([1, 2, 3, 0.5, 0.1, 10])
MEAN = IMU.mean(axis=0).tolist()
STD = IMU.std(axis=0).tolist()
BASE = {"kind": "sensor", "sensor": {"channels": 6, "window": 50, "hop": 20, "mean": MEAN, "std": STD},
        "quantize": {"dtype": "float32"}, "max_chunk": 4096}


def collect(cfg: dict, data: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    s = build_preprocessor(cfg)
    out, ends, pos, i = [], [], 0, 0
    while pos < len(data):
        k = sizes[i % len(sizes)]
        n = s.push(data[pos:pos + k])
        out.extend(s.windows[j].copy() for j in range(n))
        ends.extend(s.window_end[:n].tolist())
        pos, i = pos + k, i + 1
    return np.stack(out), np.array(ends)


def reference_windows(data: np.ndarray, window: int, hop: int) -> np.ndarray:
    z = (data - np.array(MEAN)) / np.array(STD)
    return np.stack([z[e - window:e] for e in range(window, len(data) + 1, hop)])


def test_windows_match_plain_numpy() -> None:
    """Window k = normalised samples [k*hop, k*hop + window), shaped like the model input."""
    w, ends = collect(BASE, IMU, [4096])
    ref = reference_windows(IMU, 50, 20)
    assert w.shape == (len(ref), 1, 50, 6)
    np.testing.assert_allclose(w[:, 0], ref, atol=1e-5)
    assert np.array_equal(ends, np.arange(50, 1001, 20))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=6))
def test_sensor_output_independent_of_chunking(sizes: list[int]) -> None:
    """From 1 sample per push up to chunks of several windows: identical windows."""
    ref, ref_e = collect(BASE, IMU, [1000])
    w, e = collect(BASE, IMU, sizes)
    assert np.array_equal(w, ref) and np.array_equal(e, ref_e)


def test_pca_fitted_on_host_matches_sklearn_and_applies_on_device(tmp_path: Path) -> None:
    """fit_pca == sklearn PCA (components up to sign, same projections); the device applies it from a
    YAML-referenced .npz."""
    from sklearn.decomposition import PCA

    train = reference_windows(IMU, 50, 5).reshape(-1, 300)
    mean, comp = fit_pca(train, 8)
    sk = PCA(n_components=8, svd_solver="full").fit(train)
    signs = np.sign(np.sum(comp * sk.components_, axis=1))
    np.testing.assert_allclose(comp, sk.components_ * signs[:, None], atol=1e-8)
    save_pca(tmp_path / "pca.npz", mean, comp)
    cfg = dict(BASE)
    cfg["sensor"] = dict(BASE["sensor"], projection={"kind": "pca", "file": "pca.npz", "out_features": 8})
    cfg["base_dir"] = str(tmp_path)
    w, _ = collect(cfg, IMU, [333])
    ref = sk.transform(reference_windows(IMU, 50, 20).reshape(-1, 300)) * signs
    np.testing.assert_allclose(w.reshape(len(ref), 8), ref, atol=1e-4)


def test_pca_inline_and_bad_shapes() -> None:
    cfg = dict(BASE)
    cfg["sensor"] = dict(BASE["sensor"], projection={"kind": "pca", "components": [[1.0] * 299]})
    with pytest.raises(ConfigError, match=r"components \(k, 300\)"):
        build_preprocessor(cfg)
    cfg["sensor"] = dict(BASE["sensor"], projection={"kind": "pca"})
    with pytest.raises(ConfigError, match="needs `file`"):
        build_preprocessor(cfg)


def test_random_projection_is_deterministic_sparse_and_preserves_distances() -> None:
    """Same seed -> same matrix on every build; density ~1/3; pairwise distances kept within 25 %
    (Johnson-Lindenstrauss at k = 128)."""
    a, b = random_projection(300, 128, seed=5), random_projection(300, 128, seed=5)
    assert np.array_equal(a, b) and not np.array_equal(a, random_projection(300, 128, seed=6))
    assert abs((a != 0).mean() - 1 / 3) < 0.02
    x = RNG.normal(size=(20, 300))
    d0 = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d1 = np.linalg.norm((x @ a.T)[:, None] - (x @ a.T)[None], axis=-1)
    iu = np.triu_indices(20, 1)
    ratio = d1[iu] / d0[iu]
    assert 0.75 < ratio.min() and ratio.max() < 1.25
    cfg = dict(BASE)
    cfg["sensor"] = dict(BASE["sensor"], projection={"kind": "random", "out_features": 16, "seed": 5})
    w, _ = collect(cfg, IMU, [100])
    np.testing.assert_allclose(w.reshape(-1, 16), reference_windows(IMU, 50, 20).reshape(-1, 300)
                               @ random_projection(300, 16, seed=5).T, atol=1e-4)


def test_sensor_quantized_int8_output_and_zero_allocation() -> None:
    """int8 output with a scale; steady-state pushes allocate no arrays (tracemalloc peak < 2 KiB, where a
    window's float copy is 2.4 KiB)."""
    cfg = dict(BASE, quantize={"dtype": "int8", "scale": 0.05, "zero_point": 0})
    s = build_preprocessor(cfg)
    chunk = np.ascontiguousarray(IMU[:40])
    grown, peak = traced_allocations(lambda: s.push(chunk), 500, warmup=20, traced_warmup=1)
    assert grown < 1024 and peak < 2048, (grown, peak)
    assert s.windows.dtype == np.int8


def test_sensor_bad_input() -> None:
    s = build_preprocessor(BASE)
    with pytest.raises(InputError, match="3 channels"):
        s.push(np.zeros((10, 3)))
    with pytest.raises(InputError, match="NaN"):
        s.push(np.full((10, 6), np.nan))
    with pytest.raises(InputError, match="max_chunk"):
        s.push(np.zeros((5000, 6)))
    with pytest.raises(ConfigError, match="mean has 2 values"):
        load_config(dict(BASE, sensor=dict(BASE["sensor"], mean=[0.0, 1.0])))


def test_feature_hashing_matches_sklearn() -> None:
    """Columns and signs equal scikit-learn's FeatureHasher (MurmurHash3, alternate_sign)."""
    from sklearn.feature_extraction import FeatureHasher as SkHasher
    from sklearn.utils import murmurhash3_32 as sk_murmur

    tokens = ["", "a", "ab", "abc", "abcd", "abcde", "device=pi4", "colour=rouge", "ünïcode", "x" * 37]
    assert [murmurhash3_32(t) for t in tokens] == [int(sk_murmur(t)) for t in tokens]
    docs = [["device=pi4", "os=linux", "os=linux"], ["fw=1.2.3", "ünïcode"], [f"tok{i}" for i in range(50)]]
    for n in (8, 64, 1 << 12):
        for alt in (True, False):
            ref = SkHasher(n_features=n, input_type="string", alternate_sign=alt).transform(docs).toarray()
            h = FeatureHasher(n, alt)
            got = np.stack([h.transform(d).copy() for d in docs])
            assert np.array_equal(got, ref.astype(np.float32))
    weighted = FeatureHasher(64).transform([("temp", 2.5), ("temp", 0.5)])
    col, sign = FeatureHasher(64).bucket("temp")
    assert weighted[col] == sign * 3.0


def test_categorical_chain_from_config() -> None:
    h = build_preprocessor({"kind": "categorical", "hashing": {"n_features": 32}})
    assert isinstance(h, FeatureHasher) and h.transform(["a"]).shape == (32,)
    with pytest.raises(InputError, match="string tokens"):
        h.transform([3])  # type: ignore[list-item]
