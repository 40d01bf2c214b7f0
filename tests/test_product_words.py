"""The tree speaks of the product, not of how it was made.

Every text file git knows of (tracked, plus new files that are not ignored) is searched,
case-insensitively, for phrases that describe the making of the project instead of the
product: numbered work periods, the makers, a ticket or the assignment it came from.
Dates and commit hashes say when something was measured; these phrases do not belong.
Each hit is printed as ``file:line: text``.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The phrases are assembled from parts, so this file itself does not spell them.
_MAKERS = "ag" + "ents?"
_TICKET = "the " + "is" + "sue"
_ASSIGNMENT = "this " + "ta" + "sk"
PATTERNS = [
    re.compile(r"\bsession \d+", re.IGNORECASE),
    re.compile(r"\bsessions? [0-9]", re.IGNORECASE),
    re.compile(rf"(?<!user )(?<!user-)\b{_MAKERS}\b", re.IGNORECASE),
    re.compile(rf"\b{_TICKET}\b", re.IGNORECASE),
    re.compile(rf"\b{_ASSIGNMENT}\b", re.IGNORECASE),
]


def listed_files(root: Path) -> list:
    """Tracked files and new, not ignored ones, relative to ``root``; deleted ones left out."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    names = sorted({name for name in out.decode("utf-8", "surrogateescape").split("\0") if name})
    return [name for name in names if (root / name).is_file() and not (root / name).is_symlink()]


def text_of(path: Path):
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def hits(root: Path) -> list:
    found = []
    for name in listed_files(root):
        text = text_of(root / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(pattern.search(line) for pattern in PATTERNS):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_no_words_about_how_the_project_was_made():
    found = hits(ROOT)
    for hit in found:
        print(hit)
    assert not found, f"{len(found)} line(s) speak of how the project was made:\n" + "\n".join(found)
