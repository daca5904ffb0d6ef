"""The web client's static files under content-hashed URLs, without a build step.

At start-up every file under the static directory is hashed. Served HTML and CSS have
their references to other static files rewritten to ``<path>?v=<hash>``; a request that
names the current hash gets a year-long immutable cache lifetime, anything else (pages,
an old or missing hash) is revalidated by ETag on every use.

JavaScript modules share one version, the hash of all modules together: a module's URL
is its identity in the browser, so every import of ``shell.js`` must name the same URL
or the module would run twice. The entry module named by a page and every relative
import inside the modules carry that version.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# A hashed URL never changes content: browsers and proxies may keep it for a year.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Pages and unversioned URLs: kept, but checked (ETag) before every use.
REVALIDATE_CACHE_CONTROL = "no-cache"
# Hex digits of the content hash in a URL: 48 bits tell a deployment's files apart.
HASH_CHARS = 12

_HTML_REFERENCE = re.compile(r'(\b(?:src|href)=")(/app/[^"?#]+)(")')
_CSS_REFERENCE = re.compile(r'(url\(\s*["\']?)([^"\')?#]+)(["\']?\s*\))')
_JS_IMPORT = re.compile(r'(\b(?:from|import)\s*)(["\'])(\.{1,2}/[^"\'?#]+\.js)\2')

_MODULE_SCRIPT = re.compile(r'<script type="module" src="(/app/[^"?#]+\.js)"></script>')

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


@dataclass(frozen=True)
class Asset:
    """One static file as served: its version and, for rewritten text, the new bytes."""

    version: str
    body: bytes | None = None


class AssetCatalogue:
    """The versions of the files under ``root``, served under ``mount`` (``/app``)."""

    def __init__(self, root: Path, mount: str = "/app") -> None:
        self.root = root
        self.mount = mount.rstrip("/")
        self.assets: dict[str, Asset] = {}
        raw: dict[str, bytes] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                raw[path.relative_to(root).as_posix()] = path.read_bytes()
        scripts = b"".join(
            name.encode() + b"\0" + data for name, data in raw.items() if name.endswith(".js")
        )
        self.script_version = _digest(scripts)
        for name, data in raw.items():
            if not name.endswith((".html", ".css", ".js")):
                self.assets[name] = Asset(_digest(data))
        # CSS names fonts and images only, so its hash follows from theirs.
        for name, data in raw.items():
            if name.endswith(".css"):
                body = self._rewrite(_CSS_REFERENCE, data, partial(self._relative, name))
                self.assets[name] = Asset(_digest(body), body)
            elif name.endswith(".js"):
                body = _JS_IMPORT.sub(
                    lambda m: f"{m[1]}{m[2]}{m[3]}?v={self.script_version}{m[2]}",
                    data.decode("utf-8"),
                ).encode("utf-8")
                self.assets[name] = Asset(self.script_version, body)
        for name, data in raw.items():
            if name.endswith(".html"):
                body = self._rewrite(
                    _HTML_REFERENCE, self._preload_modules(data, raw), self._absolute
                )
                self.assets[name] = Asset(_digest(body), body)

    def _preload_modules(self, page: bytes, raw: dict[str, bytes]) -> bytes:
        """``page`` with a ``modulepreload`` link for every module its scripts import, at
        any depth: the browser asks for all of them at once after the page, instead of
        one round trip per level of imports (what a slow link makes expensive)."""
        text = page.decode("utf-8")
        entries = [ref[len(self.mount) + 1 :] for ref in _MODULE_SCRIPT.findall(text)]
        seen = set(entries)
        order: list[str] = []
        frontier = list(entries)
        while frontier:
            module = frontier.pop(0)
            source = raw.get(module, b"").decode("utf-8")
            for match in _JS_IMPORT.finditer(source):
                imported = os.path.normpath(str(PurePosixPath(module).parent / match[3]))
                if imported not in seen and imported in raw:
                    seen.add(imported)
                    order.append(imported)
                    frontier.append(imported)
        if not order or "</head>" not in text:
            return page
        links = "".join(
            f'<link rel="modulepreload" href="{self.mount}/{name}">\n' for name in order
        )
        return text.replace("</head>", links + "</head>", 1).encode("utf-8")

    def version_of(self, name: str) -> str | None:
        asset = self.assets.get(name)
        return asset.version if asset is not None else None

    def url(self, name: str) -> str:
        """The versioned URL of static file ``name`` (relative to the root)."""
        return f"{self.mount}/{name}?v={self.assets[name].version}"

    def _absolute(self, ref: str) -> str | None:
        if not ref.startswith(self.mount + "/"):
            return None
        name = ref[len(self.mount) + 1 :]
        version = self.version_of(name)
        return None if version is None else f"{ref}?v={version}"

    def _relative(self, base: str, ref: str) -> str | None:
        if ref.startswith(("data:", "http:", "https:", "//")):
            return None
        if ref.startswith("/"):
            return self._absolute(ref)
        joined = os.path.normpath(str(PurePosixPath(base).parent / ref))
        version = self.version_of(PurePosixPath(joined).as_posix())
        return None if version is None else f"{ref}?v={version}"

    @staticmethod
    def _rewrite(
        pattern: re.Pattern[str], data: bytes, versioned: Callable[[str], str | None]
    ) -> bytes:
        def replace(match: re.Match[str]) -> str:
            new = versioned(match[2])
            return match[0] if new is None else f"{match[1]}{new}{match[3]}"

        return pattern.sub(replace, data.decode("utf-8")).encode("utf-8")


class HashedStaticFiles(StaticFiles):
    """StaticFiles that serves the catalogue's rewritten text and sets cache lifetimes."""

    def __init__(self, *, directory: Path, mount: str = "/app") -> None:
        super().__init__(directory=directory, html=True)
        self.base = Path(directory).resolve()
        self.catalogue = AssetCatalogue(self.base, mount)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        try:
            name = Path(full_path).resolve().relative_to(self.base).as_posix()
        except ValueError:
            name = ""
        asset = self.catalogue.assets.get(name)
        asked = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v", [""])[-1]
        pinned = asset is not None and asked == asset.version and not name.endswith(".html")
        cache_control = IMMUTABLE_CACHE_CONTROL if pinned else REVALIDATE_CACHE_CONTROL
        if asset is None or asset.body is None or status_code != 200:
            response = super().file_response(full_path, stat_result, scope, status_code)
            response.headers["Cache-Control"] = cache_control
            return response
        etag = f'"{_digest(asset.body)}"'
        headers = {"ETag": etag, "Cache-Control": cache_control}
        given = Headers(scope=scope).get("if-none-match", "")
        if etag in {part.strip().removeprefix("W/") for part in given.split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(
            asset.body,
            status_code=status_code,
            headers=headers,
            media_type=_MEDIA_TYPES[Path(name).suffix],
        )
