"""The download path against an HTTP server on 127.0.0.1 started by the test."""
import hashlib
import http.server
import io
import subprocess
import sys

import pytest

from minicnn.hub import ChecksumError, download, fetch

from conftest import serve

PAYLOAD = bytes(range(256)) * 4096            # 1 MB
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == f"/good-{PREFIX}.pth":
            self._send(PAYLOAD)
        elif self.path == "/bad-0123abcd.pth":           # content does not match the name's hash
            self._send(PAYLOAD)
        elif self.path == f"/drop-{PREFIX}.pth":         # promise 1 MB, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:len(PAYLOAD) // 2])
            self.wfile.flush()
            self.connection.close()
        else:
            self.send_error(404)

    def _send(self, data):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    yield from serve(Handler)


def test_download_success_verifies_and_reports_progress(server, tmp_path):
    progress = io.StringIO()
    path = fetch(f"{server}/good-{PREFIX}.pth", tmp_path, progress=progress)
    assert path.read_bytes() == PAYLOAD
    assert "100.0%" in progress.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]     # no temporary files left


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    with pytest.raises(ChecksumError, match=f"expected a SHA-256 starting with 0123abcd, got {PREFIX}"):
        fetch(f"{server}/bad-0123abcd.pth", tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_connection_drop_leaves_no_partial_file(server, tmp_path):
    with pytest.raises(ConnectionError):
        fetch(f"{server}/drop-{PREFIX}.pth", tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_existing_file(server, tmp_path):
    with pytest.raises(ConnectionError, match="HTTP 404"):
        fetch(f"{server}/missing-{PREFIX}.pth", tmp_path, progress=None)
    (tmp_path / "bad-0123abcd.pth").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="already there"):
        fetch(f"{server}/bad-0123abcd.pth", tmp_path, progress=None)


def test_unreachable_network_prints_manual_steps(tmp_path):
    # nothing listens on port 9 of the loopback: the connection is refused at once
    result = subprocess.run([sys.executable, "-m", "minicnn", "download", "vgg16", "--base-url",
                             "http://127.0.0.1:9/models", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "could not download http://127.0.0.1:9/models/vgg16-397923af.pth" in result.stderr
    assert f"copy it to {tmp_path / 'vgg16-397923af.pth'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_download_uses_a_file_placed_by_hand_and_checks_it(tmp_path):
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="expected one starting with 397923af"):
        download("vgg16", base_url="http://127.0.0.1:9", dest_dir=tmp_path, progress=None)
