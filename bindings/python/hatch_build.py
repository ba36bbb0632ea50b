"""Hatchling build hook: put the generated module and the cdylib into a platform wheel.

The wheel holds a package `robust_api` whose `__init__.py` is the UniFFI-generated
`robust_api.py` (unchanged) and, beside it, `librobust_api.so` (`.dylib` on macOS), which the
generated code loads from its own folder. The library is loaded with ctypes, so it does not depend
on the CPython ABI: the tag is `py3-none-<platform>`.
"""

import os
import sysconfig
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
        build_data["force_include"][str(module)] = "robust_api/__init__.py"
        build_data["force_include"][str(lib)] = f"robust_api/{libname}"
        plat = os.environ.get("ROBUST_API_WHEEL_PLAT") or sysconfig.get_platform()
        build_data["pure_python"] = False
        build_data["tag"] = "py3-none-" + plat.replace("-", "_").replace(".", "_")
