"""The gateway's terminal input queue is bounded in bytes and pushes back
(appliance/http/terminal_ws.py); end to end on a real guest: test_terminal.py."""
import asyncio
from types import SimpleNamespace

from appliance.config import Config
from appliance.http.terminal_ws import FRAME_OVERHEAD, TerminalSession


class StuckCall:
    """A core call whose writes complete only when released (a shell not reading)."""

    def __init__(self):
        self.released = asyncio.Event()
        self.written = []

    async def write(self, message):
        await self.released.wait()
        self.written.append(message.data)

    def cancel(self):
        pass


def session(limit: int):
    handler = SimpleNamespace(config=Config(terminal_input_buffer_bytes=limit))
    s = TerminalSession(handler, StuckCall(), first=None)
    s.writer = asyncio.ensure_future(s._write_inputs())
    return s


def test_input_beyond_the_buffer_stops_reading_until_half_of_it_is_written():
    async def main():
        frame = b"x" * (500 - FRAME_OVERHEAD)  # 500 bytes counted per frame
        s = session(limit=1000)
        assert s.on_message(frame) is None and s.on_message(frame) is None  # 1000: at the limit
        held = s.on_message(frame)  # 1500 > 1000: Tornado must wait for this
        assert isinstance(held, asyncio.Future) and not held.done()
        assert s.queued == 1500
        s.call.released.set()
        await asyncio.wait_for(held, 1)
        assert s.queued <= 500
        await asyncio.sleep(0.01)
        assert s.call.written == [frame] * 3 and s.queued == 0
        s.cancel()
    asyncio.run(main())


def test_closing_the_socket_releases_a_held_reader():
    async def main():
        s = session(limit=100)
        held = s.on_message(b"y" * 200)
        assert isinstance(held, asyncio.Future)
        s.cancel()  # the client went away while Tornado was waiting
        await asyncio.wait_for(held, 1)
    asyncio.run(main())


def test_text_and_resize_frames_count_too():
    async def main():
        s = session(limit=10_000)
        assert s.on_message('{"type":"resize","cols":80,"rows":24}') is None
        assert s.on_message("ls\r") is None
        assert s.queued == 2 * FRAME_OVERHEAD + 3
        s.cancel()
    asyncio.run(main())
