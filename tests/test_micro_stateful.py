"""Stateful models on micro: variable tensors, resource variables, CALL_ONCE, reset, and the same
streaming model on LiteRT and through ``edge-runtime run --reset-each``.

The streaming model (built here, two subgraphs): CALL_ONCE runs an init subgraph that
assigns a constant to a resource variable; the main subgraph reads the state, appends
the input (CONCATENATION), keeps the newest columns (STRIDED_SLICE) and assigns them
back. 100 consecutive invocations must equal tflite-micro's (no reset in between);
after ``reset()`` the outputs equal a freshly loaded interpreter's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_builder import ModelBuilder, T, opts, random_input, run_micro, run_tflm

import edge_runtime
from edge_runtime.arena.plan import plan_arena
from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
N_STEPS = 100


def _q(dtype: str, scale: float, zp: int) -> dict:
    if dtype in ("float32", "int32", "bool"):
        return {}
    return {"scale": scale, "zp": 0 if dtype == "int16" else zp}


def streaming_model(path: Path, dtype: str = "int8", rows: int = 1, width: int = 8, step: int = 4,
                    scale: float = 0.5, zp: int = 3, init: np.ndarray | None = None, shared_name: str = "state",
                    seed: int = 0) -> Path:
    """The two-subgraph streaming model of the module docstring: output = concat(state, x); state <- newest columns."""
    q = _q(dtype, scale, zp)
    rng = np.random.default_rng(seed)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ini = mb.subgraph("init")
    x = sg.tensor(T([rows, step], dtype, **q, name="x"))
    h = sg.tensor(T([], "resource", name="handle"))
    s = sg.tensor(T([rows, width], dtype, **q, name="state"))
    c = sg.tensor(T([rows, width + step], dtype, **q, name="window"))
    ns = sg.tensor(T([rows, width], dtype, **q, name="new_state"))
    b = sg.tensor(T([2], "int32", data=np.array([0, step], np.int32)))
    e = sg.tensor(T([2], "int32", data=np.array([rows, width + step], np.int32)))
    one = sg.tensor(T([2], "int32", data=np.array([1, 1], np.int32)))
    sg.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=1))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", container="", sharedName=shared_name))
    sg.op("READ_VARIABLE", [h], [s])
    sg.op("CONCATENATION", [s, x], [c], opts("ConcatenationOptions", axis=1))
    sg.op("STRIDED_SLICE", [c, b, e, one], [ns], opts("StridedSliceOptions"))
    sg.op("ASSIGN_VARIABLE", [h, ns], [])
    sg.io([x], [c])
    h1 = ini.tensor(T([], "resource", name="init_handle"))
    if init is None:
        init = random_input([rows, width], dtype, rng)
    v = ini.tensor(T([rows, width], dtype, **q, data=np.asarray(init).astype(dtype), name="init_value"))
    ini.op("VAR_HANDLE", [], [h1], opts("VarHandleOptions", container="", sharedName=shared_name))
    ini.op("ASSIGN_VARIABLE", [h1, v], [])
    ini.io([], [])
    return mb.write(path)


def _steps(model: Path, n: int, seed: int) -> list:
    sg = TFLiteModel.open(str(model)).main
    t = sg.tensors[sg.inputs[0]]
    rng = np.random.default_rng(seed)
    return [[random_input(t.shape, t.dtype, rng)] for _ in range(n)]


def _equal(a: list, b: list, what: str) -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b)):
        for u, v in zip(x, y):
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v), \
                f"{what}: step {k}: {u.ravel()[:8]} vs {v.ravel()[:8]}"


STATE_TYPES = ["int8", "int16", "float32", "int32"]


def _marks(dtype: str) -> list:
    return [pytest.mark.parity(op, dtype) for op in ("CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")]


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=_marks(d)) for d in STATE_TYPES])
@SETTINGS
@given(rows=st.integers(1, 3), width=st.integers(1, 12), step=st.integers(1, 6), zp=st.integers(-10, 10),
       seed=st.integers(0, 2**16))
def test_streaming_state_matches_tflm_over_100_invocations(tmp_path_factory, dtype, rows, width, step, zp, seed):
    """CALL_ONCE initialises a resource variable; 100 consecutive invocations equal tflite-micro's, in-place
    planning on and off (the state lives outside the reused arena)."""
    p = streaming_model(tmp_path_factory.mktemp("s") / "s.tflite", dtype, rows, width, step, 0.25, zp, seed=seed)
    xs = _steps(p, N_STEPS, seed)
    expect = run_tflm(p, xs, reset_each=False)
    for in_place in (False, True):
        _equal(run_micro(p, xs, in_place=in_place, reset_each=False), expect, f"{dtype} in_place={in_place}")


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=_marks(d)) for d in ("int8", "float32")])
def test_reset_gives_a_fresh_interpreters_outputs(tmp_path, dtype):
    """After reset() the outputs equal a freshly loaded tflite-micro interpreter's: CALL_ONCE runs again and the
    resource variable starts from the init subgraph's value (tflite-micro's own reset() does not re-run CALL_ONCE)."""
    p = streaming_model(tmp_path / "s.tflite", dtype, 2, 6, 3, seed=7)
    xs = _steps(p, 30, 1)
    ys = _steps(p, 30, 2)
    fresh = run_tflm(p, ys, reset_each=False)
    m = open_model(str(p))
    _equal([[np.array(o) for o in m.run(x)] for x in xs], run_tflm(p, xs, reset_each=False), "before reset")
    m.reset()
    _equal([[np.array(o) for o in m.run(y)] for y in ys], fresh, "after reset")


@pytest.mark.parametrize("dtype,zp", [pytest.param("int8", 5, marks=pytest.mark.parity("VARIABLE_TENSOR", "int8")),
                                      pytest.param("int16", 0, marks=pytest.mark.parity("VARIABLE_TENSOR", "int16")),
                                      pytest.param("float32", 0,
                                                   marks=pytest.mark.parity("VARIABLE_TENSOR", "float32"))])
def test_variable_tensors_are_persistent_and_start_at_their_zero_point(tmp_path, dtype, zp):
    """A variable tensor (with or without data in the file) starts as TFLM leaves it: its zero point (INT8) or 0;
    it has its own persistent buffer, counted in the arena size, writable and kept across invocations."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    q = _q(dtype, 0.5, zp)
    x = sg.tensor(T([2, 3], dtype, **q, name="x"))
    v1 = sg.tensor(T([2, 3], dtype, **q, variable=True, name="v_data",
                     data=np.arange(6).reshape(2, 3).astype(dtype)))
    v2 = sg.tensor(T([2, 3], dtype, **q, variable=True, name="v_plain"))
    y1 = sg.tensor(T([2, 3], dtype, **q, name="y1"))
    y2 = sg.tensor(T([2, 3], dtype, **q, name="y2"))
    sg.op("ADD", [x, v1], [y1], opts("AddOptions"))
    sg.op("ADD", [x, v2], [y2], opts("AddOptions"))
    sg.io([x], [y1, y2])
    p = mb.write(tmp_path / "var.tflite")
    xs = _steps(p, 5, 0)
    expect = run_tflm(p, xs, reset_each=False)
    for in_place in (False, True):
        _equal(run_micro(p, xs, in_place=in_place, reset_each=False), expect, f"variables in_place={in_place}")
    m = open_model(str(p))
    it = m.interpreter
    view = it.state.variable(0, v1)
    assert not np.shares_memory(view, it.arena) and view.flags.writeable
    each = -(-6 * np.dtype(dtype).itemsize // 16) * 16  # 16-byte aligned, as TFLM's tail
    assert m.info["persistent_bytes"] == 2 * each and m.info["arena_bytes"] == it.plan.arena_bytes + 2 * each
    view[...] = 1  # a kernel writing its state: kept until reset
    m.run(xs[0])
    assert np.all(it.state.variable(0, v1) == 1)
    m.reset()
    assert np.all(it.state.variable(0, v1) == (zp if dtype == "int8" else 0))


def test_resource_variable_errors_are_clean(tmp_path):
    """READ_VARIABLE of a variable no ASSIGN_VARIABLE sizes, and an ASSIGN of another size, are refused in one line."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    h = sg.tensor(T([], "resource"))
    s = sg.tensor(T([4], "float32"))
    y = sg.tensor(T([4], "float32"))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="never"))
    sg.op("READ_VARIABLE", [h], [s])
    sg.op("ADD", [x, s], [y], opts("AddOptions"))
    sg.io([x], [y])
    with pytest.raises(UnsupportedModelError, match=r"READ_VARIABLE.*no ASSIGN_VARIABLE") as err:
        open_model(str(mb.write(tmp_path / "unsized.tflite")))
    assert "\n" not in str(err.value)

    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    h = sg.tensor(T([], "resource"))
    small = sg.tensor(T([2], "float32", data=np.zeros(2, np.float32)))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="v"))
    sg.op("ASSIGN_VARIABLE", [h, small], [])
    sg.op("ASSIGN_VARIABLE", [h, x], [])
    y = sg.tensor(T([4], "float32"))
    sg.op("RELU", [x], [y])
    sg.io([x], [y])
    with pytest.raises(UnsupportedModelError, match=r"ASSIGN_VARIABLE.*does not match resource variable 'v'"):
        open_model(str(mb.write(tmp_path / "resize.tflite")))


def test_streaming_model_arena_against_tflm_head(tmp_path):
    """micro's arena for the streaming model (in-place off and on) is no larger than tflite-micro's head;
    the resource variable is persistent (counted apart, as TFLM's tail)."""
    pytest.importorskip("tflite_micro")  # x86-64 only: not in the emulated ARM roots
    from converters.offline_plan import embed_offline_plan
    from converters.offline_plan import run_tflm as run_tflm_recorded

    p = streaming_model(tmp_path / "s.tflite", "int8", 4, 64, 16)
    m = TFLiteModel.open(str(p))
    off, on = plan_arena(m, in_place=False), plan_arena(m, in_place=True)
    x = np.stack([x[0] for x in _steps(p, 4, 0)])
    own = run_tflm_recorded(p, x)
    assert on.arena_bytes <= off.arena_bytes <= own.head_bytes
    assert off.persistent_bytes == 4 * 64
    embed_offline_plan(p, tmp_path / "planned.tflite")
    planned = run_tflm_recorded(tmp_path / "planned.tflite", x)
    assert planned.head_bytes <= own.head_bytes and np.array_equal(planned.outputs, own.outputs)
    micro = open_model(str(p), in_place=False)
    assert micro.info["arena_bytes"] == off.arena_bytes + off.persistent_bytes


# ------------------------------------------------------------------------------- LiteRT and the CLI

def test_streaming_model_on_litert_matches_litert_itself(tmp_path):
    """The loader's structure check accepts the model; the litert backend equals LiteRT's interpreter used
    directly over 100 invocations, and reset() gives a fresh interpreter's outputs."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    p = streaming_model(tmp_path / "s.tflite", "int8", 2, 8, 4, seed=3)
    xs = _steps(p, N_STEPS, 4)
    ref = litert.Interpreter(model_path=str(p), num_threads=1)
    ref.allocate_tensors()
    i_in, i_out = ref.get_input_details()[0]["index"], ref.get_output_details()[0]["index"]
    expect = []
    for (x,) in xs:
        ref.set_tensor(i_in, x)
        ref.invoke()
        expect.append([ref.get_tensor(i_out)])
    with edge_runtime.load(str(p), backend="litert") as m:
        _equal([[np.array(o) for o in m.run(x)] for x in xs], expect, "litert backend")
        m.reset()
        _equal([[np.array(o) for o in m.run(x)] for x in xs[:10]], expect[:10], "litert after reset")
    _equal(run_tflm(p, xs, reset_each=False), expect, "tflite-micro vs LiteRT")


@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_run_reset_each(tmp_path, backend, capsys):
    """``edge-runtime run`` on stacked inputs carries the state between slices; --reset-each restarts it."""
    if backend == "litert":
        pytest.importorskip("ai_edge_litert.interpreter")
    from edge_runtime.cli import main

    p = streaming_model(tmp_path / "s.tflite", "int8", 1, 6, 2, seed=5)
    xs = np.stack([x[0] for x in _steps(p, 8, 6)])
    np.save(tmp_path / "x.npy", xs)
    assert main(["run", str(p), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-b", backend]) == 0
    assert main(["run", str(p), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.npy"), "-b", backend,
                 "--reset-each"]) == 0
    streamed, reset = np.load(tmp_path / "y.npy"), np.load(tmp_path / "r.npy")
    expect = run_tflm(p, [[x] for x in xs], reset_each=False)
    assert np.array_equal(streamed, np.stack([e[0] for e in expect]))
    for k, x in enumerate(xs):
        assert np.array_equal(reset[k], run_tflm(p, [[x]], reset_each=False)[0][0])


def test_reset_is_part_of_every_backends_api(tmp_path):
    """Model.reset() exists everywhere; a stateless model is unchanged by it (base class: no-op)."""
    from edge_runtime.model import Model

    assert callable(Model.reset)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([3], "float32"))
    y = sg.tensor(T([3], "float32"))
    sg.op("RELU", [x], [y])
    sg.io([x], [y])
    p = mb.write(tmp_path / "relu.tflite")
    m = open_model(str(p))
    a = np.array([-1, 0, 2], np.float32)
    first = m.run(a)[0]
    m.reset()
    assert np.array_equal(m.run(a)[0], first)


def test_var_handle_with_a_non_resource_output_is_refused(tmp_path):
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    h = sg.tensor(T([4], "float32"))
    y = sg.tensor(T([4], "float32"))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="v"))
    sg.op("ADD", [x, h], [y], opts("AddOptions"))
    sg.io([x], [y])
    with pytest.raises(UnsupportedModelError, match=r"VAR_HANDLE.*expected RESOURCE") as err:
        open_model(str(mb.write(tmp_path / "h.tflite")))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("containers", [("a", "a"), (None, None), ("a", None)])
def test_var_handles_sharing_a_name_share_the_variable(tmp_path, containers):
    """Two VAR_HANDLEs with one shared_name (and equal containers, or a second one without container) name one
    variable, as in TFLM: the second ASSIGN_VARIABLE is what READ_VARIABLE sees."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([4], "float32"))
    h1 = sg.tensor(T([], "resource"))
    h2 = sg.tensor(T([], "resource"))
    k = sg.tensor(T([4], "float32", data=np.full(4, 7, np.float32)))
    y = sg.tensor(T([4], "float32"))
    for h, c in zip((h1, h2), containers):
        sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="v", **({} if c is None else {"container": c})))
    sg.op("ASSIGN_VARIABLE", [h1, x], [])
    sg.op("ASSIGN_VARIABLE", [h2, k], [])
    sg.op("READ_VARIABLE", [h1], [y])
    sg.io([x], [y])
    p = mb.write(tmp_path / "c.tflite")
    xs = [[np.arange(4, dtype=np.float32)]]
    assert _same_outputs(run_micro(p, xs), run_tflm(p, xs))
    assert np.array_equal(run_micro(p, xs)[0][0], np.full(4, 7, np.float32))


def _same_outputs(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for u, v in zip(a, b) for x, y in zip(u, v))


@pytest.mark.parametrize("dtype,zp", [pytest.param("int8", -7, marks=pytest.mark.parity("READ_VARIABLE", "int8")),
                                      pytest.param("int16", 3, marks=pytest.mark.parity("READ_VARIABLE", "int16")),
                                      pytest.param("float32", 0,
                                                   marks=pytest.mark.parity("READ_VARIABLE", "float32"))])
def test_read_before_the_first_assign_sees_the_zero_point_fill(tmp_path, dtype, zp):
    """A resource variable read before any ASSIGN_VARIABLE ran holds TFLM's fill: the low byte of the assigned
    tensor's zero point in every byte (int16 zero point 3 reads 0x0303), 0 for floats; then the previous input."""
    q = _q(dtype, 0.5, zp) if dtype != "int16" else {"scale": 0.5, "zp": zp}
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([2, 3], dtype, **q))
    h = sg.tensor(T([], "resource"))
    y = sg.tensor(T([2, 3], dtype, **q))
    sg.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", sharedName="previous"))
    sg.op("READ_VARIABLE", [h], [y])
    sg.op("ASSIGN_VARIABLE", [h, x], [])
    sg.io([x], [y])
    p = mb.write(tmp_path / "prev.tflite")
    xs = _steps(p, 4, 0)
    expect = run_tflm(p, xs, reset_each=False)
    _equal(run_micro(p, xs, reset_each=False), expect, dtype)
    fill = np.full(6 * np.dtype(dtype).itemsize, zp & 0xFF, np.uint8).view(dtype).reshape(2, 3)
    assert np.array_equal(expect[0][0], fill) and np.array_equal(expect[1][0], xs[0][0])
