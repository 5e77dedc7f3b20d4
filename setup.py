"""Build mcpmux: the per-call path's modules compiled with mypyc where possible.

Everything else is in pyproject.toml. The modules are listed in src/mcpmux/native.py.

- ``MCPMUX_PURE_PYTHON=1`` builds pure Python.
- Editable installs (``pip install -e``) are always pure Python, so that edits to the
  sources take effect without a rebuild.
- If compiling fails (no C compiler or Python headers, or mypyc refuses), the build
  goes on in pure Python and says so: the wheel carries every module's source anyway.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
EDITABLE = bool({"editable_wheel", "develop"} & set(sys.argv))
#: Only a build needs the extensions (mypyc takes half a minute): not metadata or sdists.
BUILDING = bool({"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv))


def warn(message: str) -> None:
    print(f"mcpmux build: {message}", file=sys.stderr)


def native_extensions() -> list:
    if os.environ.get("MCPMUX_PURE_PYTHON") or EDITABLE or not BUILDING:
        return []
    modules = runpy.run_path(str(ROOT / "src/mcpmux/native.py"))["MODULES"]
    paths = [str(package / "__init__.py" if package.is_dir() else package.with_suffix(".py"))
             for package in (Path("src", *name.split(".")) for name in modules)]
    try:
        from mypyc.build import mypycify

        return mypycify(paths, opt_level="3", debug_level="1")
    except BaseException as exc:  # SystemExit from mypy's type errors, ImportError without mypy
        warn(f"not compiling the hot path ({exc!r}); building pure Python")
        return []


class OptionalBuildExt(build_ext):
    """All compiled or none: one failed extension drops the lot (the modules share one
    library), and the build goes on in pure Python."""

    def run(self) -> None:
        # A shared library of an earlier module list, left in build/ by an earlier
        # build of this checkout, would otherwise be copied into the wheel too.
        current = {Path(self.get_ext_filename(ext.name)).name for ext in self.extensions}
        for stale in Path(self.build_lib).glob("*__mypyc*"):
            if stale.name not in current:
                stale.unlink()
        try:
            super().run()
        except Exception as exc:  # CompileError, a missing compiler or header, ...
            for built in self.get_outputs():
                Path(built).unlink(missing_ok=True)
            self.extensions = []
            warn(f"compiling the hot path failed ({exc}); building pure Python")


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
