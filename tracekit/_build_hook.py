"""Hatch build hook: compiles ``tracekit/_speedups.c`` into the wheel (in place for editable installs).

The extension only speeds up the two observer callbacks (see ``tracekit/recorder/hotpath.py``), so it is
optional: without a C compiler, or with ``TRACEKIT_BUILD_SPEEDUPS=0``, the build goes on and
tracekit runs its pure-Python callbacks. This file is not shipped in the wheel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SKIP_ENV = "TRACEKIT_BUILD_SPEEDUPS"


def compile_speedups(source: Path, out_dir: Path) -> Path:
    """Build the extension with setuptools' compiler driver; return the built file."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    ext = Extension("tracekit._speedups", [str(source)])
    command = build_ext(Distribution({"name": "tracekit", "ext_modules": [ext]}))
    command.build_lib = str(out_dir)
    command.build_temp = str(out_dir / "temp")
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath(ext.name))


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[misc,type-arg,unused-ignore]
    PLUGIN_NAME = "tracekit-speedups"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if os.environ.get(SKIP_ENV, "").strip() == "0":
            self.app.display_info(f"tracekit: {SKIP_ENV}=0, C speedups not built")
            return
        root = Path(self.root)
        self._tmp = tempfile.mkdtemp(prefix="tracekit-build-")
        try:
            built = compile_speedups(root / "tracekit" / "_speedups.c", Path(self._tmp))
        except Exception as exc:  # no compiler, no headers: the pure-Python callbacks run
            self.app.display_warning(f"tracekit: C speedups not built ({exc}); pure Python it is")
            return
        target = f"tracekit/{built.name}"
        if version == "editable":
            shutil.copy2(built, root / target)  # beside the sources the editable install uses
        else:
            build_data["force_include"][str(built)] = target
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
