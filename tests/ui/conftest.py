"""A seeded SQLite store behind the web view, served by uvicorn on a free loopback port,
and headless Chromium (Debian's ``chromium``, driven by Playwright: it cannot download a
browser here, so it is pointed at the installed executable)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import Runtime
from mcp_checkpoint.ui import Verify, standalone_app
from tests.ui._seed import Seeded, seed


@dataclass(frozen=True)
class Served:
    base: str
    seeded: Seeded
    settings: Settings


def seeded_settings(data_dir: Path) -> tuple[Settings, Seeded]:
    settings = Settings(data_dir=data_dir)

    async def body() -> Seeded:
        runtime = Runtime(settings)
        async with runtime.use() as services:
            return await seed(services)

    # On a thread of its own: Playwright's sync API keeps an event loop on this one.
    out: list[Seeded] = []
    worker = threading.Thread(target=lambda: out.append(anyio.run(body)))
    worker.start()
    worker.join()
    assert out, "seeding the store failed (see the thread's traceback above)"
    return settings, out[0]


class Uvicorn:
    """uvicorn serving ``app`` on a thread, on a port the OS picked."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web view did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


def serve(settings: Settings, verify: Verify | None = None) -> Uvicorn:
    runtime = Runtime(settings)
    return Uvicorn(standalone_app(runtime.services, runtime.use, verify=verify))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings, seeded = seeded_settings(tmp_path_factory.mktemp("ui-store"))
    with serve(settings) as base:
        yield Served(base, seeded, settings)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots (UI_SCREENSHOTS_DIR, else a
    temporary folder)."""
    wanted = os.environ.get("UI_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module: Playwright's sync API runs an event loop on this
    thread while it is open, so it must be closed before other async tests run."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "headless Chromium is required: apt-get install -y chromium"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page that fails the test on any dialog (alert, confirm) and
    collects console errors and CSP violations."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()
    assert not dialogs, f"a page opened a dialog: {dialogs}"
