"""Installing by itself: the library inside the package, found with no environment
variable from any directory; EVENTSTORE_LIBRARY overriding it; a wheel that installs
and works where there is no Rust; an sdist that builds alone."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

import eventstore

BINDING = Path(__file__).resolve().parents[1]
REPO = BINDING.parents[1]

USE_IT = """
import os, sys, uuid
import eventstore
from eventstore import ProposedEvent, Store
with Store(sys.argv[1]) as s:
    stream = uuid.uuid4()
    s.append(stream, [ProposedEvent("Made", b"by " + sys.argv[1].encode())])
    (event,) = s.read_stream(stream)
    assert event.payload == b"by " + sys.argv[1].encode(), event
print(eventstore.__file__)
print(eventstore.library_path())
print(eventstore.library_version())
"""


def env_without_library(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EVENTSTORE_LIBRARY"}
    env.update(extra)
    return env


def env_importing(**extra: str) -> Dict[str, str]:
    """An environment in which a child imports the same eventstore as this process,
    installed or not."""
    return env_without_library(PYTHONPATH=str(Path(eventstore.__file__).parents[1]), **extra)


def installed() -> bool:
    """Whether the tests run against an installed package (not the source tree)."""
    return Path(eventstore.__file__).resolve().parent != BINDING / "eventstore"


needs_installed = pytest.mark.skipif(
    not installed() or "EVENTSTORE_LIBRARY" in os.environ,
    reason="runs against the pip-installed package without EVENTSTORE_LIBRARY (make test-python)",
)


@needs_installed
def test_installed_package_loads_the_library_inside_it():
    package = Path(eventstore.__file__).resolve().parent
    assert Path(eventstore.library_path()) == package / "libeventstore.so"
    assert (package / "py.typed").is_file()


@needs_installed
def test_import_works_from_any_directory_without_environment(tmp_path: Path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-c", USE_IT, "x.store"],
        cwd=elsewhere,
        env=env_without_library(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert Path(out[1]).parent == Path(out[0]).parent
    assert (elsewhere / "x.store").is_file()


def test_environment_variable_overrides_the_library(tmp_path: Path):
    copy = tmp_path / "custom" / "libeventstore-copy.so"
    copy.parent.mkdir()
    shutil.copy2(eventstore.library_path(), copy)
    out = subprocess.run(
        [sys.executable, "-c", USE_IT, "y.store"],
        cwd=tmp_path,
        env=env_importing(EVENTSTORE_LIBRARY=str(copy)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[1] == str(copy)


def test_a_library_without_the_functions_is_refused(tmp_path: Path):
    # Any shared library that is not libeventstore: the error says what is missing.
    import ctypes.util

    libm = ctypes.util.find_library("m")
    assert libm
    code = (
        "import eventstore\n"
        "try:\n    eventstore.library_version()\n"
        "except eventstore.LibraryNotFound as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env_importing(EVENTSTORE_LIBRARY=libm),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "has no es_open" in out


# --- wheel and sdist --------------------------------------------------------------------


def have_build_tools() -> bool:
    # origin None: a namespace package, such as a stray build/ directory, not the tool.
    for name in ("build", "setuptools_rust", "wheel"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return False
    return shutil.which("cargo") is not None


needs_build_tools = pytest.mark.skipif(
    not have_build_tools(), reason="needs cargo, build, wheel and setuptools-rust"
)


def build_env(**extra: str) -> Dict[str, str]:
    # The debug profile: the wheel's contents are what is tested, not the optimiser,
    # and the incremental debug build keeps the suite fast.
    return env_without_library(SETUPTOOLS_RUST_CARGO_PROFILE="dev", **extra)


def pip_wheel(source: Path, out: Path, **env: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         "--no-build-isolation", "--no-deps", "-w", str(out), str(source)],
        env=build_env(**env),
        check=True,
    )
    (wheel,) = out.glob("libeventstore-*.whl")
    return wheel


def path_without_rust() -> str:
    """PATH less every directory holding cargo or rustc."""
    keep = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, t)) for t in ("cargo", "rustc", "rustup"))
    ]
    return os.pathsep.join(keep)


def install_in_fresh_venv(wheel: Path, where: Path) -> List[str]:
    """Installs the wheel into a new virtual environment with no Rust on PATH and no
    index, and uses it from another directory. Returns what USE_IT printed."""
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = env_without_library(PATH=str(env_dir / "bin") + os.pathsep + path_without_rust())
    env.pop("CARGO_HOME", None)
    env.pop("RUSTUP_HOME", None)
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(python), "-c", "import shutil; assert shutil.which('cargo') is None "
         "and shutil.which('rustc') is None, 'Rust on PATH'"],
        env=env, check=True,
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-index", str(wheel)],
        env=env, check=True,
    )
    run_dir = where / "run"
    run_dir.mkdir()
    out = subprocess.run(
        [str(python), "-c", USE_IT, "w.store"],
        cwd=run_dir, env=env, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert Path(out[0]).is_relative_to(env_dir), out
    assert Path(out[1]) == Path(out[0]).parent / "libeventstore.so", out
    return out


@needs_build_tools
def test_wheel_installs_and_works_without_rust(tmp_path: Path):
    wheel = pip_wheel(BINDING, tmp_path / "wheels")
    assert wheel.name.startswith("libeventstore-0.1.0-py3-none-"), wheel.name
    assert "linux" in wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {"eventstore/libeventstore.so", "eventstore/py.typed", "eventstore/__init__.py"} <= names
    assert not any(n.startswith(("crate/", "tests/")) for n in names)
    out = install_in_fresh_venv(wheel, tmp_path)
    assert out[2] == eventstore.library_version()


@needs_build_tools
def test_sdist_carries_the_crate_and_builds_in_a_clean_directory(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o",
         str(tmp_path / "dist"), str(BINDING)],
        env=build_env(), check=True, capture_output=True,
    )
    (sdist,) = (tmp_path / "dist").glob("libeventstore-*.tar.gz")
    clean = tmp_path / "clean"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        if hasattr(tarfile, "data_filter"):
            tar.extractall(clean, filter="data")
        else:  # Python < 3.11.4
            tar.extractall(clean)
    top = names[0].split("/")[0]
    for needed in ("crate/Cargo.toml", "crate/Cargo.lock", "crate/build.rs",
                   "crate/cbindgen.toml", "crate/src/lib.rs", "eventstore/py.typed",
                   "setup.py", "pyproject.toml"):
        assert f"{top}/{needed}" in names, needed
    assert not any("/target/" in n for n in names)
    source = clean / top
    # Built in its own target directory (shared between runs so that the crates.io
    # dependencies are compiled once), from sources that are only the sdist's.
    wheel = pip_wheel(source, tmp_path / "wheels",
                      CARGO_TARGET_DIR=str(REPO / "target" / "python-sdist"))
    out = install_in_fresh_venv(wheel, tmp_path)
    assert out[2] == eventstore.library_version()


def test_search_order_of_a_checkout(tmp_path: Path):
    # Imported from the source tree (not installed), with no EVENTSTORE_LIBRARY: the
    # package's own copy first, then the repository's release and debug builds.
    code = "from eventstore import _native\nfor c in _native.candidates(): print(c)\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env_without_library(PYTHONPATH=str(BINDING)),
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out[:3] == [
        str(BINDING / "eventstore" / "libeventstore.so"),
        str(REPO / "target" / "release" / "libeventstore.so"),
        str(REPO / "target" / "debug" / "libeventstore.so"),
    ]
    # With the variable set, only it is tried.
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env_without_library(PYTHONPATH=str(BINDING), EVENTSTORE_LIBRARY="/x/lib.so"),
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out == ["/x/lib.so"]
