"""Content-addressed storage of uploaded bytes and of rendered pages.

Layout under ``<data_dir>/files``::

    blobs/<sha[:2]>/<sha>                 the uploaded bytes, once per distinct content
    renders/<sha[:2]>/<sha>/<page>-<width>.png   rendered pages (a cache: safe to delete;
                                                 .webp for WebP renders)
    tmp/                                  uploads in progress and stamped copies on their way out

Everything reaches its final name by ``os.replace`` from ``tmp/`` (same file system), so a
reader never sees a half-written blob or page, and a failed upload leaves nothing behind
but a temporary file that is removed at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path

from server.private_paths import PRIVATE_FILE_MODE, private_dir

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
# A temporary file this old belongs to no request in progress (uploads and stamped copies
# live seconds); several nodes may share the data dir, so only old ones are removed.
STALE_TMP_SECS = 6 * 3600
# A page read again refreshes its time at most this often: its place in the trim order
# costs one utime per page per interval, not one per read.
RENDER_TOUCH_SECS = 600
# A trim stops at this share of the limit, so it does not run again at the next page.
RENDER_TRIM_TO = 0.9


# Image formats of rendered pages: PNG for every client, WebP for those that take it.
RENDER_FORMATS = ("png", "webp")


class ContentStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = (data_dir / "files").resolve()
        self.blobs = self.root / "blobs"
        self.renders = self.root / "renders"
        self.tmp = self.root / "tmp"
        # Uploaded documents are for the server's user only (0700 down to every file).
        private_dir(data_dir)
        for directory in (self.root, self.blobs, self.renders, self.tmp):
            private_dir(directory)

    def blob_path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def render_path(self, sha256: str, page: int, width: int, fmt: str = "png") -> Path:
        if not _SHA_RE.match(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        if fmt not in RENDER_FORMATS:
            raise ValueError(f"not a render format: {fmt!r}")
        return self.renders / sha256[:2] / sha256 / f"{page}-{width}.{fmt}"

    def temp_path(self, suffix: str = "") -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def sweep_tmp(self, now: float, older_than_secs: float = STALE_TMP_SECS) -> int:
        """Remove temporary files older than ``older_than_secs`` (left by a crash)."""
        removed = 0
        for entry in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and now - entry.stat().st_mtime > older_than_secs:
                    entry.unlink()
                    removed += 1
        return removed

    def touch_render(self, path: Path, now: float) -> bool:
        """Note that a cached page was used (its time orders the trim); False if gone."""
        try:
            if now - path.stat().st_mtime > RENDER_TOUCH_SECS:
                os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def trim_renders(self, max_bytes: int, now: float, keep_secs: float) -> tuple[int, int]:
        """Remove the least recently used rendered pages while the cache is over
        ``max_bytes``, down to 90% of it; pages used in the last ``keep_secs`` stay (a
        reader may be on its way to them). Returns (pages removed, bytes left)."""
        pages: list[tuple[float, int, Path]] = []
        total = 0
        for path in self.renders.glob("*/*/*.*"):
            if path.suffix[1:] not in RENDER_FORMATS:
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                pages.append((stat.st_mtime, stat.st_size, path))
                total += stat.st_size
        if total <= max_bytes:
            return 0, total
        target = max_bytes * RENDER_TRIM_TO
        removed = 0
        for mtime, size, path in sorted(pages):
            if total <= target or now - mtime < keep_secs:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            total -= size
            # The document's directory goes with its last page (rmdir refuses a full one).
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return removed, total

    def keep(self, temp: Path, sha256: str) -> Path:
        """Move a verified temporary file to its content address (or drop it if present)."""
        final = self.blob_path(sha256)
        if final.exists():
            discard(temp)
            return final
        private_dir(final.parent)
        # Whoever wrote the temporary file, the kept document is the server's alone.
        os.chmod(temp, PRIVATE_FILE_MODE)
        os.replace(temp, final)
        return final


def discard(path: Path) -> None:
    """Remove a temporary file if it is there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
