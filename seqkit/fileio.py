"""Output files and the records in them.

Writes are atomic: a file is written under a temporary name, then renamed into place, so a
reader (or a rerun after a crash) sees either the old file or the new one, never a
half-written one. Records read back take the defaults of settings added since they were
written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seqkit.errors import SeqkitError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
    except OSError as err:
        raise SeqkitError(_cannot_write(path, err)) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; outputs follow the umask
        os.replace(tmp, path)
    except OSError as err:
        raise SeqkitError(_cannot_write(path, err)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success rename it to ``path`` (which
    must not exist, or be empty)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    except OSError as err:
        raise SeqkitError(_cannot_write(path, err)) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise SeqkitError(_cannot_write(path, err)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def user_cache_dir() -> Path:
    """seqkit's folder in the user cache: ``$XDG_CACHE_HOME/seqkit``, else ``~/.cache/seqkit``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqkit"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(path: Path, err: OSError) -> str:
    return f"Cannot write {path} ({err.strerror or err}): make room on the disk or choose a writable folder."


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """Read a JSON object, turning a missing or unreadable file into a SeqkitError."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise SeqkitError(f"The {what} {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SeqkitError(f"The {what} {path} is not readable JSON ({err}): replace it.") from None
    if not isinstance(obj, dict):
        raise SeqkitError(f"The {what} {path} does not hold a JSON object: replace it.")
    return obj


def with_defaults(saved: dict, kind: type) -> dict:
    """A saved record of dataclass ``kind``'s fields, plus the default of each field it
    predates, so that what an older version wrote still reads as the same settings."""
    defaults = {f.name: f.default for f in dataclasses.fields(kind) if f.default is not dataclasses.MISSING}
    return {**defaults, **saved}
