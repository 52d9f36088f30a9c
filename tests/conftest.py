import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data directory (SEQKIT_DATA_DIR, as .ci/run sets it); skip if absent."""
    root = Path(os.environ.get("SEQKIT_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (root / "mnist").is_dir():
        pytest.skip(f"no MNIST in {root}")
    return root


@pytest.fixture(scope="session", autouse=True)
def native_kernels_built() -> None:
    """Build seqkit's native LSTM kernels and decoding step (once per machine) before any
    test, so that the CLI's subprocesses find them cached instead of each announcing a build
    on stderr."""
    from seqkit.core import native

    native.available()
    native.available(native.STEP)
