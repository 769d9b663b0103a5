"""shell: a terminal in a container over the terminal WebSocket (no SSH needed), with the
local terminal in raw mode and its size changes forwarded."""
from __future__ import annotations

import json
import os
import shlex
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




START, END = b"\x1estart", b"\x1eexit "


def exec_script(command: tuple[str, ...]) -> bytes:
    """What `exec` types into the shell: markers around the command and its exit status. The
    terminal echoes what is typed, but there the markers are spelled `\\036` (four characters),
    so only the shell's printf makes the byte 0x1e that the client looks for."""
    return (f"stty -echo; printf '\\036start\\n'; {shlex.join(command)}; "
            "printf '\\036exit %d\\n' $?; exit\r").encode()


class ExecOutput:
    """The shell's bytes -> the command's output as it comes (the terminal's \r\n made \n)
    and, at the end marker, its exit status."""

    def __init__(self, out):
        self.out, self.pending, self.started, self.status = out, b"", False, None

    def feed(self, data: bytes) -> None:
        self.pending = (self.pending + data).replace(b"\r\n", b"\n")   # a lone \r at the end waits
        if not self.started:
            at = self.pending.find(START)
            line_end = self.pending.find(b"\n", at)
            if at < 0 or line_end < 0:
                return
            self.started, self.pending = True, self.pending[line_end + 1:]
        end = self.pending.find(END)
        if end >= 0:
            line = self.pending[end + len(END):]
            if b"\n" in line:
                self._write(self.pending[:end])
                self.status, self.pending = int(line.split(b"\n", 1)[0].strip() or b"1"), b""
            return
        keep = len(END)   # a marker (or a \r\n) may be split across messages
        self._write(self.pending[:-keep])
        self.pending = self.pending[-keep:]

    def _write(self, data: bytes) -> None:
        if data and self.status is None:
            self.out.write(data)
            self.out.flush()


@click.command("exec")
@name_argument()
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name, command):
    """Run COMMAND in container NAME over the terminal WebSocket: `appliance exec NAME -- CMD...`.

    For hosts without SSH access. The command's output (one stream: a terminal joins stdout
    and stderr) and its exit status; it reads no input.
    """
    from websockets.exceptions import ConnectionClosed
    api = current_api()
    c = resolve(api, name)
    ws = open_socket(api, f"/compute/containers/{c['id']}/terminal?cols=1000&rows=50")
    output = ExecOutput(sys.stdout.buffer)
    try:
        ws.send(exec_script(command))
        try:
            for message in ws:
                output.feed(message if isinstance(message, bytes) else message.encode())
        except ConnectionClosed:
            pass
    finally:
        ws.close()
    if output.status is None:
        raise click.ClickException("the terminal closed before the command finished")
    sys.exit(output.status)


COMMANDS = [shell, exec_]
