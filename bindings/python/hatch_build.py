"""Hatchling build hook: put the generated module and the cdylib into a platform wheel.

The wheel holds a package `robust_api`: `__init__.py` is the hand-written idiomatic layer
(src/robust_api/__init__.py here: Display texts for errors, `async with`), `_robust_api.py` the
UniFFI-generated `robust_api.py` (unchanged), `_robust_api.pyi` its type stubs (made here with mypy's
stubgen, plus the layer's `async with`/`with` methods), `py.typed`, and `librobust_api.so`
(`.dylib` on macOS), which the generated code loads from its own folder. The library is loaded with ctypes, so it does not depend
on the CPython ABI: the tag is `py3-none-<platform>`.
"""

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

REPO = Path(__file__).resolve().parents[2]


def _input(env: str, default: str) -> Path:
    p = Path(os.environ.get(env) or default)
    p = p if p.is_absolute() else REPO / p
    if not p.is_file():
        raise FileNotFoundError(
            f"{p} not found ({env}); build it first: scripts/build-bindings.sh python"
        )
    return p


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        libname = "librobust_api.dylib" if sysconfig.get_platform().startswith("macosx") else "librobust_api.so"
        lib = _input("ROBUST_API_LIB", f"target/debug/{libname}")
        module = _input("ROBUST_API_PY", "target/bindings/python/robust_api.py")
        here = Path(__file__).resolve().parent / "src" / "robust_api"
        build_data["force_include"][str(here / "__init__.py")] = "robust_api/__init__.py"
        build_data["force_include"][str(module)] = "robust_api/_robust_api.py"
        stubs = Path(tempfile.mkdtemp(prefix="robust-api-stubs-"))
        build_data["force_include"][str(_stub(module, stubs))] = "robust_api/_robust_api.pyi"
        (stubs / "py.typed").write_text("")
        build_data["force_include"][str(stubs / "py.typed")] = "robust_api/py.typed"
        build_data["force_include"][str(lib)] = f"robust_api/{libname}"
        plat = os.environ.get("ROBUST_API_WHEEL_PLAT") or sysconfig.get_platform()
        build_data["pure_python"] = False
        build_data["tag"] = "py3-none-" + plat.replace("-", "_").replace(".", "_")


# The idiomatic layer's additions to RobustClient (robust_api/__init__.py), for type checkers.
_CLIENT_EXTRAS = """\
    async def __aenter__(self) -> "RobustClient": ...
    async def __aexit__(self, *exc: object) -> None: ...
    def __enter__(self) -> "RobustClient": ...
    def __exit__(self, *exc: object) -> None: ...
    def status_events(self, max_buffered: int = 1024) -> "StatusEvents": ...
"""


def _stub(module: Path, out: Path) -> Path:
    """Type stubs of the generated module, made with mypy's stubgen (`pip install mypy`)."""
    try:
        import mypy.stubgen  # noqa: F401
    except ImportError as e:
        raise RuntimeError("the wheel ships .pyi stubs made by mypy's stubgen: pip install mypy") from e
    src = out / "_robust_api.py"
    src.write_text(module.read_text())
    subprocess.run(
        [sys.executable, "-c", "import sys; from mypy.stubgen import main; main(sys.argv[1:])", "-q", "-o", str(out), str(src)],
        check=True,
        cwd=out,
    )
    pyi = out / "_robust_api.pyi"
    text, n = re.subn(r"(?m)^(class RobustClient\b[^\n]*:\n)", lambda m: m.group(1) + _CLIENT_EXTRAS, pyi.read_text())
    if n != 1:
        raise RuntimeError("stubgen output has no class RobustClient")
    # StatusEvents lives in the hand-written package layer (robust_api/__init__.py).
    pyi.write_text("from robust_api import StatusEvents\n" + text)
    return pyi
