"""A corpus of many files: folders and globs collected into documents, read as one text.

Each file is a document. Folders are walked recursively (in sorted order, hidden files and
folders left out), optionally only the files matching ``include`` globs. In a folder, a
file that is not text in the chosen encoding is skipped and counted (``strict`` refuses
instead); a file named by its own path keeps the single-file errors. The documents are
read in that order as one text, each ending in a newline (one is added where a document
lacks it), so a document starts on a line of its own; the last ``val_fraction`` of that
text validates, so validation holds the last documents. A single file is read as it is.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqkit.errors import SeqkitError

NAMED = 3  # skipped files named in a message


@dataclass
class Documents:
    """The files of a corpus, in order, and those skipped (not text in the encoding).

    Args:
        files: the documents, in reading order.
        skipped: files of a folder left out as not text.
        encoding: the files' text encoding.
        terminate: end each document in a newline (a corpus of several documents).
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    encoding: str = "utf-8"
    terminate: bool = True

    def describe_skipped(self) -> str:
        names = ", ".join(str(p) for p in self.skipped[:NAMED]) + (", ..." if len(self.skipped) > NAMED else "")
        return f"{len(self.skipped)} file{'s' * (len(self.skipped) != 1)} not {self.encoding} text ({names})"

    def sources(self) -> list[list]:
        """Each file's resolved path, size and modification time: what the encoded corpus
        was made from (:class:`seqkit.text.corpus.EncodedCorpus` compares them)."""
        listed = []
        for path in self.files:
            try:
                stat = path.stat()
            except OSError:
                raise SeqkitError(f"{path} does not exist or is not a file.") from None
            listed.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        return listed


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
    """The documents of ``paths`` (files and folders), in order; one file given alone is
    read as it is (no newline added)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and not paths[0].is_dir():
        return Documents(files=paths, encoding=encoding, terminate=False)
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
