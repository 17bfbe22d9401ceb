"""The only file-serving route (the console's static files) never serves a file outside its folder,
whatever the path says: dot segments, encoded, double-encoded, backslashes, absolute paths."""

from __future__ import annotations

import socket

import pytest

from deploy.supervisor import EmbeddedStack

pytestmark = pytest.mark.stack
TRAVERSALS = ["/console/../../../../etc/passwd", "/console/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
              "/console/%252e%252e/%252e%252e/etc/passwd", "/console/..%2f..%2f..%2fetc%2fpasswd",
              "/console/..\\..\\..\\etc\\passwd", "/console//etc/passwd", "/console/%2fetc%2fpasswd",
              "/console/../deploy/settings.py", "/console/../../pyproject.toml", "/console/%00index.html",
              "/console/....//....//etc/passwd"]


def raw_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """A request sent byte for byte (HTTP clients normalise dot segments before sending)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("path", TRAVERSALS)
def test_console_static_files_never_leave_their_folder(stack: EmbeddedStack, path: str) -> None:
    status, body = raw_get(stack.settings.http_host, stack.settings.http_port, path)
    assert b"root:" not in body and b"class Settings" not in body and b"[project]" not in body
    assert status in (400, 404, 405), (path, status)


def test_the_console_itself_is_served(stack: EmbeddedStack) -> None:
    status, body = raw_get(stack.settings.http_host, stack.settings.http_port, "/console/console.js")
    assert status == 200 and body
