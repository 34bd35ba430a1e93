"""Builds libeventstore (the Rust crate) into the package.

The crate is the repository root (``../../Cargo.toml``) in a checkout, or ``crate/``
in an sdist, which carries the sources the build needs (see ``CRATE_FILES``). The
library is built by setuptools-rust as a plain ``cdylib`` (``Binding.NoBinding``: it
is loaded with ctypes, not imported) and installed as ``eventstore/libeventstore.so``.

Environment:

- ``SETUPTOOLS_RUST_CARGO_PROFILE=dev`` builds the debug profile (the tests do, to
  reuse the debug build); the default is ``release``.
- ``CARGO_TARGET_DIR`` as usual; by default ``<crate>/target/python``, so that pip
  builds neither disturb nor are disturbed by ``cargo build`` in the same checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip
from setuptools_rust.build import build_rust

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # wheel >= 0.46 moved it into setuptools
    from setuptools.command.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
SDIST_CRATE = "crate"
# What `cargo build --lib` of the crate reads (build.rs regenerates the header).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "LICENSE*", "README.md"]
CRATE_DIRS = ["src", "include"]


def crate_dir() -> Path:
    bundled = HERE / SDIST_CRATE
    if (bundled / "Cargo.toml").is_file():
        return bundled
    checkout = HERE.parent.parent
    if (checkout / "Cargo.toml").is_file():
        return checkout
    sys.exit(f"libeventstore: no Rust crate found in {bundled} or {checkout}")


CRATE = crate_dir()


class build_rust_into_package(build_rust):
    """Names the library libeventstore.so (not a Python extension suffix): it is the
    same file whichever Python loads it."""

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), "libeventstore.so")


def workspace_members(crate: Path) -> list[Path]:
    """The directories of the crate's other workspace members (cargo needs their
    manifests to load the workspace, even to build only the library)."""
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline",
             "--manifest-path", str(crate / "Cargo.toml")],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    dirs = {Path(p["manifest_path"]).resolve().parent for p in meta["packages"]}
    return sorted(d for d in dirs if d != crate.resolve())


class sdist_with_crate(sdist):
    """Puts the crate's sources into the sdist as crate/, so that it builds alone:
    the files the library's build reads, and any other workspace member whole."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        if CRATE == HERE / SDIST_CRATE:
            return  # an sdist of an sdist: crate/ is among the files already
        target = Path(base_dir) / SDIST_CRATE
        target.mkdir(parents=True, exist_ok=True)
        for pattern in CRATE_FILES:
            for src in CRATE.glob(pattern):
                shutil.copy2(src, target / src.name)
        for name in CRATE_DIRS:
            shutil.copytree(CRATE / name, target / name, dirs_exist_ok=True)
        skip = shutil.ignore_patterns("target", ".*", "__pycache__")
        for member in workspace_members(CRATE):
            relative = member.relative_to(CRATE.resolve())
            shutil.copytree(member, target / relative, ignore=skip, dirs_exist_ok=True)


class platform_wheel(bdist_wheel):
    """The wheel holds a native library but no Python extension: any Python 3 on this
    platform can load it (tag py3-none-<platform>)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


env = dict(os.environ)
env.setdefault("CARGO_TARGET_DIR", str(CRATE / "target" / "python"))

setup(
    rust_extensions=[
        RustExtension(
            "eventstore.libeventstore",
            path=str(CRATE / "Cargo.toml"),
            binding=Binding.NoBinding,
            cargo_manifest_args=["--locked"],
            strip=Strip.Debug,
            env=env,
        )
    ],
    cmdclass={
        "build_rust": build_rust_into_package,
        "sdist": sdist_with_crate,
        "bdist_wheel": platform_wheel,
    },
    zip_safe=False,
)
