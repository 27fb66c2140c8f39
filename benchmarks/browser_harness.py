"""JupyterLab in a temporary home (127.0.0.1, a random token, no news or update checks), driven
by headless Chromium through Python playwright, quiet on a closed network; every wait bounded.
Used by ``tests/test_browser.py`` and :mod:`benchmarks.browser_latency` (the benchmarks never
import the tests)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
).split()
JUPYTER_DIRS = (
    "JUPYTER_CONFIG_DIR JUPYTER_DATA_DIR JUPYTER_RUNTIME_DIR JUPYTERLAB_SETTINGS_DIR "
    "JUPYTERLAB_WORKSPACES_DIR IPYTHONDIR"
).split()
"""Each points to a folder of the server's home named after it in lower case."""


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$SDSAM_CHROMIUM``, else ``chromium`` on ``PATH``."""
    explicit = os.environ.get("SDSAM_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1, detail=None
):
    """Call ``check`` until it returns something truthy; return it.

    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds; ``detail`` (a callable
    returning text) is appended to the message, e.g. the tail of a server log.
    """
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)
    return value


def write_notebook(path: Path, *cells: str) -> None:
    """A notebook of code ``cells`` for the ``python3`` kernel; every cell but the first has
    its source collapsed, so that the outputs sit in the first screen."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    for cell in nb.cells[1:]:
        cell.metadata["jupyter"] = {"source_hidden": True}
    nbformat.write(nb, path)


class LabServer:
    """A JupyterLab server in ``home`` serving ``root``; start with :meth:`start`.

    ``env`` entries are added to the server's (and so the kernels') environment.
    """

    def __init__(self, home: Path, root: Path, env: dict[str, str] | None = None):
        self.home, self.root = Path(home), Path(root)
        self.extra_env = dict(env or {})
        self.token = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "jupyterlab.log"
        self._log = None

    def url(self, path: str) -> str:
        """The server's URL of ``path`` with the token as a query parameter."""
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def start(self, timeout: float = 60.0) -> LabServer:
        """Start the server and wait until ``/api/status`` answers (raises on timeout/exit)."""
        env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PATH"}
        for var in JUPYTER_DIRS:
            env[var] = str(self.home / var.lower())
            (self.home / var.lower()).mkdir(parents=True, exist_ok=True)
        # No news feed or update check: nothing may try to reach the network.
        notes = Path(env["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab", "apputils-extension")
        notes.mkdir(parents=True, exist_ok=True)
        (notes / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        env.update(self.extra_env)
        with socket.socket() as s:  # a port that is free now
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [
            *(sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root"),
            *("--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}"),
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout, "JupyterLab to answer /api/status", 0.25, self.log_tail)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {self.proc.returncode}\n{self.log_tail()}"
            )
        try:
            with urllib.request.urlopen(self.url("/api/status"), timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server (REST ``DELETE /api/kernels/<id>``)."""
        with urllib.request.urlopen(self.url("/api/kernels"), timeout=5) as r:
            kernels = json.loads(r.read())
        for kernel in kernels:  # the token in the URL authorises it
            url = self.url(f"/api/kernels/{kernel['id']}")
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=15).close()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- JupyterLab log (tail) ---\n" + "\n".join(lines[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL the group if needed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


class Chromium:
    """Headless Debian Chromium under playwright's sync API; one page, one viewport."""

    def __init__(self, executable: str, viewport=(1280, 1000)):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_FLAGS, timeout=30_000
            )
            width, height = viewport
            self.page = self.browser.new_page(viewport={"width": width, "height": height})
        except Exception:
            self._pw.stop()
            raise
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def close(self) -> None:
        pw, self._pw = self._pw, None
        if pw is None:
            return
        try:
            self.browser.close()
        finally:
            pw.stop()

    def run_notebook(
        self,
        server: LabServer,
        name: str,
        marker: Path,
        *,
        workspace: str | None = None,
        tries: int = 3,
        timeout: float = 60.0,
    ) -> None:
        """Open ``name`` (relative to the server root) in the Lab UI and run all its cells
        until the first cell's ``marker`` file appears on the kernel side.

        ``workspace``: a Lab workspace of that name (a new one opens only this notebook; the
        default workspace reopens the tabs of earlier pages). Raises ``TimeoutError``.
        """
        page, ms = self.page, timeout * 1000
        path = f"/lab/workspaces/{workspace}/tree/{name}" if workspace else f"/lab/tree/{name}"
        page.goto(server.url(path), timeout=ms)
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=ms)
        page.wait_for_selector(".jp-Notebook", timeout=ms)
        for attempt in range(1, tries + 1):
            page.wait_for_function(KERNEL_IDLE, timeout=ms)
            # Lab's command, not awaited: its promise settles only when every cell has run.
            page.evaluate("() => { jupyterapp.commands.execute('notebook:run-all-cells'); }")
            try:
                wait_for(marker.exists, 15, f"the first cell's marker (try {attempt})")
                return
            except TimeoutError:
                pass
        raise TimeoutError(
            f"Run All never reached the kernel ({tries} tries)\n{self.detail(server)}"
        )

    def canvas_box(self, selector: str) -> dict:
        """Wait for the canvas ``selector``, scroll it into view, let it settle; its bounding
        box in page pixels (``x``, ``y``, ``width``, ``height``)."""
        canvas = self.page.locator(selector)
        canvas.wait_for(state="visible", timeout=30_000)
        canvas.scroll_into_view_if_needed(timeout=10_000)
        self.page.wait_for_timeout(300)
        return canvas.bounding_box()

    def detail(self, server: LabServer) -> str:
        """The server log's and the browser console's tails, for an error message."""
        console = "\n".join(self.console[-20:])
        return f"{server.log_tail()}\n--- browser console (tail) ---\n{console}"


KERNEL_IDLE = """() => {
    // The status bar shows a kernel that is idle (it reads "Idle" before a kernel exists).
    const bar = document.querySelector('#jp-main-statusbar');
    return !!bar && bar.innerText.includes('| Idle') && !bar.innerText.includes('No Kernel');
}"""

PAINT_PROBE = """(selector) => {
    // Record (performance.now(), ms) every mousedown on the canvas or an element holding it and
    // every drawImage into the visible canvas, with the next animation frame; reset if called.
    if (window.__sdsamProbe) {
        Object.assign(window.__sdsamProbe, { selector, downs: [], paints: [] });
        return true;
    }
    const probe = { selector, downs: [], paints: [] };
    window.__sdsamProbe = probe;
    document.addEventListener('mousedown', (e) => {
        const t = e.target, sel = probe.selector;
        if (t instanceof Element && (t.matches(sel) || t.querySelector(sel))) {
            probe.downs.push(e.timeStamp);
        }
    }, true);
    const draw = CanvasRenderingContext2D.prototype.drawImage;
    CanvasRenderingContext2D.prototype.drawImage = function (...args) {
        const out = draw.apply(this, args);
        if (this.canvas instanceof HTMLCanvasElement && this.canvas.matches(probe.selector)) {
            const entry = [performance.now(), null];
            probe.paints.push(entry);
            requestAnimationFrame(() => { entry[1] = performance.now(); });
        }
        return out;
    };
    return true;
}"""


def timed_click(
    page,
    selector: str,
    x: float,
    y: float,
    done: Callable[[], Any],
    *,
    button: str = "left",
    settle_s: float = 0.2,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Click at page pixel ``(x, y)``; poll ``done()`` (the kernel handled the click), wait
    ``settle_s`` more. Returns, in ms from the mouse-down event, the ``first_paint`` and
    ``last_paint`` (``drawImage`` into the visible canvas ``selector``, as an ipycanvas view
    shows its picture), the animation frame after the last (``last_frame``), the number of
    ``paints`` and ``done()``'s value. Raises ``RuntimeError`` without a mouse-down or a paint.
    """
    page.evaluate(PAINT_PROBE, selector)
    page.mouse.click(x, y, button=button)
    value = wait_for(done, timeout, "the kernel to handle the click", 0.01)
    time.sleep(settle_s)
    data = page.evaluate("() => ({downs: __sdsamProbe.downs, paints: __sdsamProbe.paints})")
    if not data["downs"]:
        raise RuntimeError("the mouse-down never reached the canvas")
    down = data["downs"][0]
    paints = [p for p in data["paints"] if p[0] >= down]
    if not paints:
        raise RuntimeError("the canvas was not repainted after the click")
    last_frame = paints[-1][1]
    return {
        "first_paint": paints[0][0] - down,
        "last_paint": paints[-1][0] - down,
        "last_frame": None if last_frame is None else last_frame - down,
        "paints": len(paints),
        "done": value,
    }
