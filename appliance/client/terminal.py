"""shell: a terminal in a container over the terminal WebSocket (no SSH needed), with the
local terminal in raw mode and its size changes forwarded."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from contextlib import contextmanager

import click

from appliance.client.containers import name_argument, resolve
from appliance.client.session import api as current_api
from appliance.client.statuswatch import open_socket


@contextmanager
def raw_terminal(fd: int):
    """The local terminal in raw mode (keys go to the guest as typed), put back after."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _pump_input(ws, fd: int) -> None:
    from websockets.exceptions import ConnectionClosed
    try:
        while data := os.read(fd, 4096):
            ws.send(data)
    except (OSError, ConnectionClosed):
        pass


@click.command()
@name_argument()
def shell(name):
    """A shell in container NAME (or id) through the appliance's terminal WebSocket."""
    from websockets.exceptions import ConnectionClosed
    api = current_api()
    c = resolve(api, name)
    size = shutil.get_terminal_size()
    ws = open_socket(api, f"/compute/containers/{c['id']}/terminal?cols={size.columns}&rows={size.lines}")

    def resized(*_):
        s = shutil.get_terminal_size()
        try:
            ws.send(json.dumps({"type": "resize", "cols": s.columns, "rows": s.lines}))
        except ConnectionClosed:
            pass

    previous = signal.signal(signal.SIGWINCH, resized) if hasattr(signal, "SIGWINCH") else None
    stdin, out = sys.stdin.fileno(), sys.stdout.buffer
    try:
        with raw_terminal(stdin):
            threading.Thread(target=_pump_input, args=(ws, stdin), daemon=True).start()
            try:
                for message in ws:
                    out.write(message if isinstance(message, bytes) else message.encode())
                    out.flush()
            except ConnectionClosed:
                pass
    finally:
        ws.close()
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)


COMMANDS = [shell]
