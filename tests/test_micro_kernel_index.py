"""[SPEED] micro's kernel index (kernels/index.py) names exactly the kernels the modules register.

REGISTRY imports a kernel's module on first lookup, from the index; the index must equal what importing
every module gives (core ops plus each family's REGISTRY), or an op would silently lose its kernel.
"""
from __future__ import annotations

import subprocess
import sys

from edge_runtime.backends.micro.kernels import REGISTRY, eager_registry
from edge_runtime.backends.micro.kernels.index import KERNEL_INDEX, generate


def test_index_matches_the_modules() -> None:
    eager = eager_registry()
    assert set(KERNEL_INDEX) == set(eager)
    for name, cls in eager.items():
        assert REGISTRY[name] is cls, name
    assert generate() in open(sys.modules["edge_runtime.backends.micro.kernels.index"].__file__).read()


def test_unknown_op_is_not_registered() -> None:
    assert "NOT_AN_OP" not in REGISTRY and REGISTRY.get("NOT_AN_OP") is None


def test_opening_a_model_imports_only_its_kernels(tmp_path) -> None:
    """A one-op model loads that op's kernel module, not the ~140 others."""
    from tflite_builder import T, build

    path = build(tmp_path / "relu.tflite", "RELU", [T([1, 8], scale=0.1)], [T([1, 8], scale=0.1)])
    code = ("import sys; from edge_runtime.backends.micro import open_model; m = open_model(sys.argv[1]); "
            "mods = [n for n in sys.modules if n.startswith('edge_runtime.backends.micro.kernels.')]; "
            "print(len(mods)); print(' '.join(sorted(mods)))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    count, mods = out.splitlines()
    assert "edge_runtime.backends.micro.kernels.activations" in mods.split()
    assert "edge_runtime.backends.micro.kernels.unary.hard_swish" not in mods.split()
    assert int(count) < 20, mods
