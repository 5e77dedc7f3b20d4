"""``pip`` builds mcpmux without a C compiler: setup.py falls back to pure Python.

The compiled build itself is what the rest of the suite runs on (scripts/test.sh,
tests/unit/test_native.py). This builds a wheel from a copy of the sources with the
compiler replaced by ``false``: the build must succeed, say that it fell back, and
give a wheel with every source and no compiled module, that imports and runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_machine_without_a_compiler_gets_a_working_pure_python_build(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    env = {**os.environ, "CC": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("MCPMUX_PURE_PYTHON", None)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         "-v", "."],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiling the hot path failed" in out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("mcpmux-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".so")], names
    assert {"mcpmux/session.py", "mcpmux/listener/h1.py", "mcpmux/admin_ui/index.html"} <= set(names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    check = ("from mcpmux import native, cli; import mcpmux.session; "
             "print(native.describe(), mcpmux.session.__file__)")
    ran = subprocess.run([sys.executable, "-c", check], env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("pure Python ") and str(site) in ran.stdout
