"""Find, verify and (with network) download the data sets named in the registry.

A set lives in one folder of the data directory: ``--data-dir`` if given, else
``$SEQKIT_DATA_DIR``, else ``$XDG_CACHE_HOME/seqkit`` (``~/.cache/seqkit``). Each file may
be stored raw or gzipped; its SHA-256 is checked on the uncompressed content, so a
recompressed copy is as good as the original. A missing file is downloaded from the set's
mirrors (or from ``$SEQKIT_MIRROR/<set folder>/``, for a local mirror) into that folder:
written to a temporary name, verified, then renamed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.fileio import user_cache_dir

DOWNLOAD_TIMEOUT_S = 30


@lru_cache(maxsize=1)
def registry() -> dict:
    """The data-set registry shipped with the package (``data/registry.json`` in the repo)."""
    return json.loads(resources.files("seqkit.data").joinpath("registry.json").read_text())


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else ``$SEQKIT_DATA_DIR``, else the user cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("SEQKIT_DATA_DIR"):
        return Path(os.environ["SEQKIT_DATA_DIR"]).expanduser()
    return user_cache_dir()


def _entry(dataset: str, filename: str) -> dict:
    sets = registry()
    if dataset not in sets or filename not in sets[dataset]["files"]:
        raise SeqkitError(f"No data set file {dataset}/{filename} in seqkit's registry.")
    return sets[dataset]["files"][filename]


def read_maybe_gzip(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise SeqkitError(
            f"{path} is a damaged gzip file ({err}): delete it so seqkit can fetch it again, "
            "or replace it with a good copy."
        ) from None


def _verified(path: Path, sha256: str) -> bytes:
    content = read_maybe_gzip(path)
    if hashlib.sha256(content).hexdigest() != sha256:
        raise SeqkitError(
            f"{path} fails its SHA-256 check (corrupt, truncated or a different file): delete it "
            "so seqkit can fetch it again, or replace it with a good copy."
        )
    return content


def folder(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """Where a set's files live: its registry ``folder`` (default: its name) in the data dir."""
    return data_dir(root) / registry()[dataset].get("folder", dataset)


def _download(dataset: str, filename: str, target_dir: Path) -> Path:
    entry = _entry(dataset, filename)
    mirrors = registry()[dataset]["mirrors"]
    if os.environ.get("SEQKIT_MIRROR"):
        mirrors = [f"{os.environ['SEQKIT_MIRROR'].rstrip('/')}/{target_dir.name}/"]
    errors = []
    for mirror in mirrors:
        url = mirror + entry["remote"]
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                with tempfile.NamedTemporaryFile(dir=target_dir, delete=False, suffix=".part") as tmp:
                    tmp.write(response.read())
            target = target_dir / entry["remote"]
            try:
                _verified(Path(tmp.name), entry["sha256"])
            except SeqkitError:
                os.unlink(tmp.name)
                errors.append(f"{url}: wrong checksum")
                continue
            os.replace(tmp.name, target)
            return target
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
    raise SeqkitError(
        f"{dataset}/{filename} is not in {target_dir} and could not be downloaded (no network?): "
        f"copy the file there, or point `data_dir` or SEQKIT_DATA_DIR at a folder holding "
        f"{target_dir.name}/. Tried {'; '.join(errors)}."
    )


def find(dataset: str, filename: str, root: str | os.PathLike | None = None) -> Path | None:
    """Path of a stored file (raw or ``.gz``) in the data directory, or None."""
    _entry(dataset, filename)
    where = folder(dataset, root)
    for candidate in (where / filename, where / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_bytes(dataset: str, filename: str, root: str | os.PathLike | None = None, download: bool = True) -> bytes:
    """The verified, uncompressed content of one registry file, downloading it if missing."""
    entry = _entry(dataset, filename)
    path = find(dataset, filename, root)
    if path is None:
        where = folder(dataset, root)
        if not download:
            raise SeqkitError(f"{dataset}/{filename} is not in {where}.")
        path = _download(dataset, filename, where)
    return _verified(path, entry["sha256"])


def corpora() -> list[str]:
    """Names of the registry's sets that are one text to train on (``train-char NAME``)."""
    return sorted(name for name, entry in registry().items() if entry.get("corpus"))


def corpus_path(name: str, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The verified text file of the registry's corpus ``name``, downloaded if missing."""
    filename = registry()[name]["corpus"]
    load_bytes(name, filename, root, download)  # found (or fetched) and verified
    path = find(name, filename, root)
    if path is None or path.suffix == ".gz":
        raise SeqkitError(f"{name}/{filename} must be stored uncompressed in {folder(name, root)}.")
    return path
