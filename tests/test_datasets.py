"""Data lookup, checksums, downloads, and the IDX / npz readers, on files the tests write."""

import gzip
import hashlib

import numpy as np
import pytest

from seqkit import datasets
from seqkit.errors import SeqkitError
from seqkit.mnist.data import Mnist, load_mnist, parse_idx, read_idx, read_mnist_npz


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_registry(monkeypatch, files: dict[str, bytes], mirror: str = "http://127.0.0.1:9/"):
    """Point the registry at small made-up 'mnist' files (checksums of their content)."""
    entries = {
        name: {"sha256": hashlib.sha256(content).hexdigest(), "remote": f"{name}.gz"} for name, content in files.items()
    }
    npz = {"folder": "mnist", "mirrors": [mirror], "files": {"mnist.npz": {"sha256": "0", "remote": "x"}}}
    fake = {"mnist": {"mirrors": [mirror], "files": entries}, "mnist-npz": npz}
    monkeypatch.setattr(datasets, "registry", lambda: fake)


def _small_mnist(n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": _idx(rng.integers(0, 10, (n_train,))),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(rng.integers(0, 10, (n_test,))),
    }


def test_idx_round_trip_raw_and_gzip(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "raw").write_bytes(_idx(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(_idx(images)))
    for name in ("raw", "packed.gz"):
        loaded = read_idx(tmp_path / name)
        assert loaded.dtype == np.uint8 and loaded.shape == (2, 28, 28)
        np.testing.assert_array_equal(loaded, images)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-10], "truncated"),
        (lambda b: b[:6], "truncated inside its header"),
        (lambda b: b + b"extra", "longer than its header says"),
        (lambda b: b"\x01\x02" + b[2:], "bad magic"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_idx_damage_is_named(damage, message):
    good = _idx(np.zeros((3, 28, 28)))
    with pytest.raises(SeqkitError, match=message):
        parse_idx(damage(good), "x")


def test_load_mnist_from_a_data_dir_with_verified_checksums(tmp_path, monkeypatch):
    files = _small_mnist()
    _fake_registry(monkeypatch, files)
    (tmp_path / "mnist").mkdir()
    for name, content in files.items():  # a mix of raw and recompressed files
        target = tmp_path / "mnist" / (name + (".gz" if "images" in name else ""))
        target.write_bytes(gzip.compress(content) if "images" in name else content)
    data = load_mnist(tmp_path)
    assert data.train_images.shape == (5, 28, 28) and data.test_labels.shape == (3,)


def test_data_dir_order_explicit_then_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQKIT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert datasets.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert datasets.data_dir() == tmp_path / "env"
    monkeypatch.delenv("SEQKIT_DATA_DIR")
    assert datasets.data_dir() == tmp_path / "cache" / "seqkit"


def test_a_file_failing_its_checksum_is_named(tmp_path, monkeypatch):
    files = _small_mnist()
    _fake_registry(monkeypatch, files)
    (tmp_path / "mnist").mkdir()
    for name, content in files.items():
        (tmp_path / "mnist" / name).write_bytes(content)
    bad = bytearray(files["t10k-labels-idx1-ubyte"])
    bad[-1] ^= 1
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(bytes(bad))
    with pytest.raises(SeqkitError, match="t10k-labels-idx1-ubyte fails its SHA-256 check"):
        load_mnist(tmp_path)


def test_a_damaged_gzip_is_named(tmp_path, monkeypatch):
    files = _small_mnist()
    _fake_registry(monkeypatch, files)
    (tmp_path / "mnist").mkdir()
    for name, content in files.items():
        (tmp_path / "mnist" / f"{name}.gz").write_bytes(gzip.compress(content))
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(SeqkitError, match="train-images-idx3-ubyte.gz is a damaged gzip"):
        load_mnist(tmp_path)


def test_missing_files_are_downloaded_and_verified(tmp_path, monkeypatch):
    files = _small_mnist()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, content in files.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(content))
    _fake_registry(monkeypatch, files, mirror=mirror.as_uri() + "/")
    data = load_mnist(tmp_path / "data")
    assert data.train_images.shape == (5, 28, 28)
    stored = sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir())
    assert stored == sorted(f"{name}.gz" for name in files)  # no temporary files left


def test_a_download_with_the_wrong_content_is_not_kept(tmp_path, monkeypatch):
    files = _small_mnist()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in files:
        (mirror / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    _fake_registry(monkeypatch, files, mirror=mirror.as_uri() + "/")
    with pytest.raises(SeqkitError, match="could not be downloaded.*wrong checksum"):
        load_mnist(tmp_path / "data")
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_no_network_says_so_in_one_sentence(tmp_path, monkeypatch):
    _fake_registry(monkeypatch, _small_mnist())  # the mirror is a closed local port
    with pytest.raises(SeqkitError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert "could not be downloaded (no network?)" in message
    assert "SEQKIT_DATA_DIR" in message and "\n" not in message


def test_keras_npz_reader_and_shape_checks(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, (4,), dtype=np.uint8),
        "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, (2,), dtype=np.uint8),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    data = read_mnist_npz(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(data.test_images, arrays["x_test"])
    with pytest.raises(SeqkitError, match="expected"):
        Mnist(arrays["x_train"], arrays["y_test"], arrays["x_test"], arrays["y_test"])
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(SeqkitError, match="not a readable mnist.npz"):
        read_mnist_npz(tmp_path / "broken.npz")


def test_the_shipped_registry_matches_the_reference_checksums():
    sets = datasets.registry()
    assert sets["mnist"]["files"]["t10k-labels-idx1-ubyte"]["sha256"].startswith("ff7bcfd4")
    assert sets["tinyshakespeare"]["files"]["input.txt"]["sha256"].startswith("86c4e6aa")
    assert all(s["mirrors"] for s in sets.values())
