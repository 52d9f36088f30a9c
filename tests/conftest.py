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
