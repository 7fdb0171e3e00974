"""A throwaway `redis-server` on a free loopback port; stop, kill and restart for outage tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = "apt-get install redis-server (Debian/Ubuntu)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process without persistence in a temp dir; `url` stays valid across
    `restart()` (same port), which brings it back empty."""

    def __init__(self, password: str | None = None, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(f"redis-server is not on PATH; install it: {INSTALL_HINT}")
        self.binary, self.password = binary, password
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tierstream-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]
        args += ["--requirepass", self.password] if self.password else []
        log = (self.dir / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self._wait_for_ping()
        return self

    def stop(self) -> None:
        """SIGTERM and wait; no-op when not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port "
                                   f"{self.port}:\n{self.log_tail()}")
            if self._ping():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within "
                           f"{START_TIMEOUT_S}s:\n{self.log_tail()}")

    def _ping(self) -> bool:
        """PING over a raw socket (RESP), so this helper needs no client library."""
        command = b"PING\r\n"
        if self.password:
            word = self.password.encode()
            command = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(word), word) + command
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(command)
                return b"+PONG" in _read_until(sock, b"PONG", b"-")
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "redis.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _read_until(sock: socket.socket, *markers: bytes) -> bytes:
    data = b""
    while not any(m in data for m in markers):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data
