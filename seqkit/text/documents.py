"""A corpus of many files: folders and globs collected into documents, joined into one text.

Each file is a document. Folders are walked recursively (in sorted order, hidden files and
folders left out), optionally only the files matching ``include`` globs. In a folder, a
file that is not text in the chosen encoding is skipped and counted (``strict`` refuses
instead); a file named by its own path keeps the single-file errors. The documents are
joined in that order into one UTF-8 text in the run folder, each ending in a newline (one
is added where a document lacks it), so a document starts on a line of its own; the last
``val_fraction`` of the joined text validates, so validation holds the last documents.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path

NAMED = 3  # skipped files named in a message


@dataclass
class Documents:
    """The files of a corpus, in order, and those skipped (not text in the encoding)."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def describe_skipped(self) -> str:
        names = ", ".join(str(p) for p in self.skipped[:NAMED]) + (", ..." if len(self.skipped) > NAMED else "")
        return f"{len(self.skipped)} file{'s' * (len(self.skipped) != 1)} not {self.encoding} text ({names})"

    encoding: str = "utf-8"


def _is_text(path: Path, encoding: str) -> bool:
    try:
        with open(path, encoding=encoding) as f:
            while f.read(1 << 20):
                pass
        return True
    except (UnicodeDecodeError, ValueError):
        return False


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / name for name in sorted(files) if not name.startswith(".")]
    return found


def collect(
    paths: Sequence[Path], include: Sequence[str] = (), strict: bool = False, encoding: str = "utf-8"
) -> Documents:
    """The documents of ``paths`` (files and folders), in order."""
    documents = Documents(encoding=encoding)
    for path in paths:
        if not path.is_dir():
            documents.files.append(path)  # its own errors come when it is read
            continue
        candidates = _walk(path)
        if not candidates:
            raise SeqkitError(f"The folder {path} holds no files to learn from.")
        if include:
            candidates = [p for p in candidates if any(fnmatch.fnmatch(p.name, g) or p.match(g) for g in include)]
            if not candidates:
                raise SeqkitError(f"No file in {path} matches `include` ({', '.join(include)}).")
        texts = []
        for candidate in candidates:
            if _is_text(candidate, encoding):
                texts.append(candidate)
            elif strict:
                raise SeqkitError(
                    f"{candidate} is not {encoding} text: leave it out, name its encoding with `encoding`, or "
                    "drop `strict` to skip such files."
                )
            else:
                documents.skipped.append(candidate)
        if not texts:
            raise SeqkitError(f"None of the {len(candidates)} files in {path} is {encoding} text: check `encoding`.")
        documents.files += texts
    return documents


def join(documents: Documents, target: Path) -> tuple[Path, int]:
    """Write the documents, each ending in a newline, into one UTF-8 file; return it and
    its size in characters. Rewritten only where its content would change."""
    characters = 0
    with atomic_path(target, suffix=".txt") as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        for path in documents.files:
            try:
                with open(path, encoding=documents.encoding, newline="") as f:
                    last = ""
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                        characters += len(chunk)
                        last = chunk[-1]
            except FileNotFoundError:
                raise SeqkitError(f"{path} does not exist or is not a file.") from None
            except UnicodeDecodeError as err:
                raise SeqkitError(
                    f"{path} is not {documents.encoding} text: byte offset {err.start} cannot be decoded; if the "
                    "file uses another encoding, name it with `encoding` (e.g. latin-1, cp1252, utf-16)."
                ) from None
            except OSError as err:
                raise SeqkitError(f"Cannot read {path}: {err.strerror or err}.") from None
            if last != "\n":
                out.write("\n")
                characters += 1
    if characters == 0:
        raise SeqkitError("The documents are empty: give text files to learn from.")
    return target, characters
