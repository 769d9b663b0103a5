"""Running the user's `appliance` client as a person does: the installed console script as a
subprocess, with its own config file, against a real appliance (tests/harness.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from harness import Appliance

# APPLIANCE_TEST_CLIENT: another installed client to run instead, e.g. one pip-installed under
# Python 3.10 (docs/cli.md, "Python 3.10").
CLIENT = os.environ.get("APPLIANCE_TEST_CLIENT") or str(Path(sys.executable).parent / "appliance")


class User:
    """One person's client: its config file (their remotes and tokens) and environment."""

    def __init__(self, config_dir: Path):
        config_dir.mkdir(parents=True, exist_ok=True)
        self.config = config_dir / "config.json"
        self.env = {**os.environ, "APPLIANCE_CLIENT_CONFIG": str(self.config), "COLUMNS": "200"}
        self.env.pop("APPLIANCE_REMOTE", None)
        # Bytecode written once (gitignored __pycache__), as an installed client has it: without it
        # every run compiles the client's modules again (~0.15 s a run on this machine).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run(self, *args: str, input: str | bytes | None = None, timeout: float = 120,
            text: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([CLIENT, *args], env=self.env, input=input, capture_output=True, text=text,
                              timeout=timeout)

    def ok(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        r = self.run(*args, input=input, timeout=timeout)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def json(self, *args: str, input: str | None = None, timeout: float = 120):
        return json.loads(self.ok(*args, "--json", input=input, timeout=timeout))

    def login(self, app: Appliance, username: str, password: str, *extra: str) -> dict:
        return self.json("login", app.url, "-u", username, "--password-stdin", *extra, input=password + "\n")


class CuttingProxy:
    """A TCP proxy to ``port`` that cuts every connection once ``limit`` bytes have come back:
    a download interrupted halfway, every time, the same way."""

    def __init__(self, port: int, limit: int):
        self.port, self.limit = port, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.limit), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while (limit is None or sent < limit) and (data := src.recv(1 << 16)):
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
