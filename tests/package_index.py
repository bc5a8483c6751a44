"""A PEP 503 simple package index on 127.0.0.1 serving wheels made on the spot, for tests that run pip."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of distribution ``name`` (one empty module)."""
    module = name.replace("-", "_")
    path = folder / f"{module}-{version}-py3-none-any.whl"
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: mt-core-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{file},,\n" for file in files) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


class LocalIndex:
    """Serves ``/simple/<project>/`` for the wheels given; any other project is a 404 (unknown)."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels = wheels
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def start(self) -> "LocalIndex":
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                index.requests.append(self.path)
                parts = [part for part in self.path.split("?")[0].split("/") if part]
                body, status, kind = b"not found", 404, "text/plain"
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in index.wheels:
                    wheel = index.wheels[parts[1]]
                    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                    body = f'<html><body><a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>'.encode()
                    status, kind = 200, "text/html"
                elif len(parts) == 2 and parts[0] == "files":
                    found = [w for w in index.wheels.values() if w.name == parts[1]]
                    if found:
                        body, status, kind = found[0].read_bytes(), 200, "application/octet-stream"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip pointed at a local index that knows ``mt-dep-probe`` 1.0 and nothing else (no other config)."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    index = LocalIndex({"mt-dep-probe": make_wheel(folder, "mt-dep-probe", "1.0")}).start()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # no pip.conf: only this index
    for variable in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield index
    index.stop()
