"""Starts a real scrip-server on a loopback port for the suite (a fresh data directory,
embedded redb store, keys generated on first start), and stops it afterwards.

The server binary is ``$SCRIP_SERVER_BIN``, else ``target/release/scrip-server`` of the
repository (``cargo build --release --bins``).
"""

import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url, data_dir):
        self.url = url
        self.data_dir = data_dir
        self.operator_token = (data_dir / "operator-token").read_text().strip()
        # Pinned from the server's data directory, as an app ships the issuer's root key.
        self.root_key_pem = (data_dir / "root-key.pem").read_text()


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("SCRIP_SERVER_BIN") or str(REPO / "target" / "release" / "scrip-server")
    if not os.path.exists(binary):
        pytest.fail(f"no server binary at {binary}: run `cargo build --release --bins`")
    with tempfile.TemporaryDirectory(prefix="scrip-sdk-test-") as tmp:
        data_dir = pathlib.Path(tmp) / "data"
        log = open(pathlib.Path(tmp) / "server.log", "wb")
        for _attempt in range(5):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [binary, "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                 "--denominations", "1,2,5,10,20,50"],
                stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"},
            )
            deadline = time.monotonic() + 60
            up = False
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=1) as answer:
                        up = answer.status == 200
                except OSError:
                    pass
                if up:
                    break
                time.sleep(0.1)
            if up:
                break
            process.kill()
            process.wait()
        else:
            log.close()
            pytest.fail("scrip-server did not start: " + (pathlib.Path(tmp) / "server.log").read_text())
        try:
            yield Server(url, data_dir)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
