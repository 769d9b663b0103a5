"""Exposition.scrape(): the rendering runs off the event loop, once per
metrics_cache_seconds however many scrape at once; metrics_listen needs a host."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from appliance import config
from appliance.config import Config
from appliance.core import exposition


@pytest.fixture
def slow(tmp_path, monkeypatch):
    calls: list[str] = []

    def render(self) -> bytes:
        calls.append(threading.current_thread().name)
        time.sleep(0.3)   # a slow database
        return f"scrape {len(calls)}\n".encode()

    monkeypatch.setattr(exposition.Exposition, "render", render)
    e = exposition.Exposition(Config(data_dir=str(tmp_path), metrics_cache_seconds=0.5))
    yield e, calls
    e.close()


def test_scrapes_render_off_the_loop_and_share_one_rendering(slow):
    e, calls = slow

    async def scrapes():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        bodies = await asyncio.gather(*(e.scrape() for _ in range(5)))
        ticking.cancel()
        return bodies, ticks

    bodies, ticks = asyncio.run(scrapes())
    assert bodies == [b"scrape 1\n"] * 5 and len(calls) == 1
    assert calls[0].startswith("metrics-render")
    assert ticks >= 10   # the loop kept running during the 0.3 s rendering


def test_the_cache_lasts_metrics_cache_seconds(slow):
    e, calls = slow

    async def three():
        first = await e.scrape()
        cached = await e.scrape()
        await asyncio.sleep(0.5)
        return first, cached, await e.scrape()

    assert asyncio.run(three()) == (b"scrape 1\n", b"scrape 1\n", b"scrape 2\n")


@pytest.mark.parametrize("address", [":9464", "9464", "[]:9464", "localhost", "127.0.0.1:port", "127.0.0.1:70000"])
def test_metrics_listen_needs_an_explicit_host(address):
    with pytest.raises(ValueError, match="'metrics_listen' must be host:port with an explicit host"):
        config.load(env={"APPLIANCE_CONFIG": os.devnull, "APPLIANCE_METRICS_LISTEN": address})


@pytest.mark.parametrize("address,expected", [("127.0.0.1:9464", ("127.0.0.1", 9464)),
                                              ("[::1]:0", ("::1", 0)), ("0.0.0.0:9464", ("0.0.0.0", 9464))])
def test_metrics_listen_with_a_host(address, expected):
    assert config.host_and_port("metrics_listen", address) == expected
    assert config.load(env={"APPLIANCE_CONFIG": os.devnull, "APPLIANCE_METRICS_LISTEN": address}).metrics_listen


def test_the_core_refuses_to_start_without_a_host(tmp_path):
    settings = tmp_path / "appliance.toml"
    settings.write_text(f'data_dir = "{tmp_path}"\nmetrics_listen = ":9464"\n')
    run = subprocess.run([sys.executable, "-m", "appliance.cli", "--config", str(settings), "core"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "configuration error: setting 'metrics_listen' must be host:port with an explicit host" in run.stderr
