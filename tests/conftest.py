import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
# Set by .ci/run: a missing data directory or a native build that fails is a failure there,
# not a skip (on x86-64 Linux, where the native builds must work).
REQUIRE_DATA = os.environ.get("SEQKIT_REQUIRE_DATA") == "1"
REQUIRE_NATIVE = os.environ.get("SEQKIT_REQUIRE_NATIVE") == "1"


def data_root() -> Path:
    """The reference data directory: SEQKIT_DATA_DIR (as .ci/run sets it), else ../shared/data."""
    return Path(os.environ.get("SEQKIT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data directory; skip where it is absent (fail where it is required)."""
    root = data_root()
    if not (root / "mnist").is_dir():
        if REQUIRE_DATA:
            pytest.fail(f"no MNIST in {root}, and SEQKIT_REQUIRE_DATA asks for it")
        pytest.skip(f"no MNIST in {root}")
    return root


def free_ports(n: int) -> list[int]:
    """``n`` ports on 127.0.0.1 that nothing listens on now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="session", autouse=True)
def native_kernels_built() -> None:
    """Build seqkit's native LSTM kernels and decoding step (once per machine) before any
    test, so that the CLI's subprocesses find them cached instead of each announcing a build
    on stderr. Where the builds are required (SEQKIT_REQUIRE_NATIVE), one that fails fails
    every test instead of turning the native tests into skips."""
    from seqkit.core import native

    for library in (native.LOOPS, native.STEP):
        reason = native.failure(library)
        if reason and REQUIRE_NATIVE:
            pytest.fail(f"SEQKIT_REQUIRE_NATIVE is set, and {reason}")


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """seqkit installed as a user's pip would (not editable), into a folder of its own."""
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("installed")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    subprocess.run([*pip, str(target), str(REPO)], check=True, capture_output=True, timeout=600)
    return target
