"""Shipped profiles read without pydantic: pre-validated values checked against the YAML they came from.

Validating a profile needs pydantic, whose import costs a short command (``edge-convert convert``,
``edge-runtime run --profile``) about 0.1 s of CPU and 13 MB. The shipped YAML files do not change
between runs, so :mod:`device_profiles._shipped_data` holds each one's validated values (written by
``python -m device_profiles.shipped``, which validates every file with :class:`DeviceProfile`) with
a CRC-32 of the YAML file and of ``schema.py``. :func:`shipped_view` returns a :class:`ProfileView`
only while both checksums match; an edited file or schema falls back to full validation, and a
user's own YAML file is always validated.

A :class:`ProfileView` reads like the frozen :class:`DeviceProfile`: fields, nested ``cpu`` and
``accelerators`` as views, ``isinstance(view, DeviceProfile)``, ``==``, ``hash``, pickling. Anything
else (``model_dump()``, properties, ...) is answered by the validated pydantic model, built on first use.

examples:
  python -m device_profiles.shipped          # regenerate _shipped_data.py after editing boards/*.yaml
  python -m device_profiles.shipped --check  # exit 1 when it is out of date
"""
from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
BOARDS_DIR = HERE / "boards"
SCHEMA_FILE = HERE / "schema.py"
DATA_FILE = HERE / "_shipped_data.py"


def _crc(path: Path) -> int:
    with open(path, "rb") as f:
        return zlib.crc32(f.read())


class ProfileView:
    """A read-only, pre-validated profile (or nested model) that behaves as its pydantic model."""

    __slots__ = ("_cls", "_data", "_model")

    def __init__(self, cls_name: str, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_cls", cls_name)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_model", None)

    def validated(self) -> Any:
        """The pydantic model with these values (built once; the values were validated when cached)."""
        model = object.__getattribute__(self, "_model")
        if model is None:
            from device_profiles import schema

            model = getattr(schema, object.__getattribute__(self, "_cls")).model_validate(
                object.__getattribute__(self, "_data"))
            object.__setattr__(self, "_model", model)
        return model

    def __getattr__(self, name: str) -> Any:
        data = object.__getattribute__(self, "_data")
        if name in data:
            nested = _nested().get(object.__getattribute__(self, "_cls"), {}).get(name)
            value = data[name]
            if nested is None:
                return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            if isinstance(value, list):
                return [ProfileView(nested, v) for v in value]
            return ProfileView(nested, value) if value is not None else None
        return getattr(self.validated(), name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(view, DeviceProfile) holds, as for the model itself
        return type(self.validated())

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.validated(), name, value)  # the model is frozen: pydantic's own error

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, ProfileView):
            other = other.validated()
        return self.validated() == other

    def __hash__(self) -> int:
        return hash(self.validated())

    def __repr__(self) -> str:
        return repr(self.validated())

    def __reduce__(self) -> Any:
        return self.validated().__reduce__()

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.validated())))


def _nested() -> dict[str, dict[str, str]]:
    from device_profiles._shipped_data import NESTED

    return NESTED


def shipped_view(name: str) -> Optional[ProfileView]:
    """The shipped profile ``name`` as a :class:`ProfileView`; None when not cached or out of date."""
    try:
        from device_profiles._shipped_data import PROFILES, SCHEMA_CRC
    except ImportError:
        return None
    entry = PROFILES.get(name)
    path = BOARDS_DIR / f"{name}.yaml"
    if entry is None or not path.is_file():
        return None
    try:
        if _crc(path) != entry[0] or _crc(SCHEMA_FILE) != SCHEMA_CRC:
            return None
    except OSError:
        return None
    return ProfileView("DeviceProfile", entry[1])


def build_data() -> str:
    """Validate every shipped YAML with the schema and return the source of ``_shipped_data.py``."""
    import pprint

    from pydantic import BaseModel

    from device_profiles import load_profile_file, profile_names
    from device_profiles import schema

    def nested_of(cls: type) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        fields: dict[str, str] = {}
        for fname, info in cls.model_fields.items():  # type: ignore[attr-defined]
            ann = info.annotation
            inner = getattr(ann, "__args__", (ann,))
            for t in inner:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    fields[fname] = t.__name__
                    out.update(nested_of(t))
        out[cls.__name__] = fields
        return out

    profiles = {}
    for name in profile_names():
        path = BOARDS_DIR / f"{name}.yaml"
        profiles[name] = (_crc(path), load_profile_file(path).model_dump(mode="python"))
    nested = {k: v for k, v in nested_of(schema.DeviceProfile).items() if v}
    return ('"""Validated values of the shipped profiles (generated by ``python -m device_profiles.shipped``;\n'
            'do not edit). Each entry: (CRC-32 of boards/NAME.yaml, values).\n"""\n'
            f"SCHEMA_CRC = {_crc(SCHEMA_FILE)}\n"
            f"NESTED = {pprint.pformat(nested, width=110)}\n"
            f"PROFILES = {pprint.pformat(profiles, width=110, sort_dicts=True)}\n")


def main(argv: list[str]) -> int:
    """Regenerate (or with ``--check`` compare) ``_shipped_data.py``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m device_profiles.shipped", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if _shipped_data.py is out of date")
    args = ap.parse_args(argv)
    text = build_data()
    current = DATA_FILE.read_text() if DATA_FILE.exists() else ""
    if args.check:
        print("up to date" if current == text else f"{DATA_FILE} is out of date: run python -m device_profiles.shipped")
        return 0 if current == text else 1
    if current != text:
        DATA_FILE.write_text(text)
    print(f"wrote {os.path.relpath(DATA_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
