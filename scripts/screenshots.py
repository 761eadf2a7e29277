"""Screenshots of the operator's Dagster UI over real data, taken in headless Chromium.

    .venv/bin/python scripts/screenshots.py            # writes screenshots/*.png

End to end and by itself: installs Debian's `chromium` and `fonts-noto-cjk` when missing (as root,
apt-get), builds the sample inbox and runs the year with the CLI into a temporary DAGSTER_HOME
(a copy of the repo's dagster.yaml, so the UI shows real materializations and the FAILED check of
package_validation), starts `dagster-webserver` on a free loopback port, drives Chromium over the
DevTools protocol (stdlib only) until each page shows its data, and saves:

    screenshots/asset_graph.png            the global asset lineage, one group per pipeline stage
    screenshots/asset_metadata.png         year_exports' page: its latest materialization's metadata
    screenshots/reconciliation_table.png   reconciliation's money table (per project and funding source)
    screenshots/failed_check.png           package_validation's check no_fatal_findings, FAILED
    screenshots/failed_check_findings.png  that check's findings table (sheet, row, column, value, fix)

Everything it starts (the webserver, Chromium) runs in a process group of its own and is stopped
on the way out, whatever happens. The repo's inbox, exports, warehouse and .dagster_home are not
touched.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
YEAR = 2023
WIDTH, HEIGHT = 1600, 1000
CHROMIUM = "/usr/bin/chromium"
# Debian's chromium as root in a sandbox-less container; the background-networking flags keep it
# from reaching for Google's hosts (no route out here: it would stall).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=zh-CN", f"--window-size={WIDTH},{HEIGHT}"]


def log(message: str) -> None:
    print(f"[screenshots] {message}", flush=True)


# ---------------------------------------------------------------- prerequisites

def has_cjk_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False).stdout
    return bool(out.strip())


def ensure_browser() -> None:
    """Debian's chromium and a CJK font (without one, every Chinese label renders as tofu boxes)."""
    if Path(CHROMIUM).exists() and has_cjk_font():
        return
    if os.geteuid() != 0:
        sys.exit("chromium or fonts-noto-cjk missing: run as root, or `apt-get install -y chromium fonts-noto-cjk`")
    log("installing chromium and fonts-noto-cjk (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-noto-cjk"],
                   check=True, env=env)
    if not (Path(CHROMIUM).exists() and has_cjk_font()):
        sys.exit("chromium or a CJK font is still missing after apt-get install")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes we own

class Processes:
    """Every child is the leader of a new session; stop() ends each whole group, children included."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        child = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the group may outlive its leader
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self.children.clear()


# ---------------------------------------------------------------- data and webserver

def prepare_data(work: Path, env: dict[str, str]) -> None:
    """The sample inbox and one real run of the year (the CLI, into this DAGSTER_HOME)."""
    python = sys.executable
    subprocess.run([python, "-m", "etl", "sample", "--year", str(YEAR), "--out", str(work / "inbox")],
                   cwd=REPO, env=env, check=True)
    subprocess.run([python, "-m", "etl", "run", "--year", str(YEAR), "--inbox", str(work / "inbox"),
                    "--export", str(work / "exports"), "--national-mock", str(work / "national" / "state.sqlite3")],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait_for_webserver(base: str, server: subprocess.Popen, timeout: float = 240) -> list[str]:
    """Until the code location is loaded; returns the asset keys the UI knows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"dagster-webserver exited with {server.returncode}")
        with contextlib.suppress(OSError, ValueError):
            nodes = graphql(base, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"]
            if nodes:
                return ["/".join(n["assetKey"]["path"]) for n in nodes]
        time.sleep(2)
    sys.exit(f"dagster-webserver did not answer at {base} within {timeout:.0f} s")


# ---------------------------------------------------------------- DevTools protocol, stdlib only

class DevTools:
    """A minimal WebSocket client (RFC 6455, client frames masked) speaking CDP to one page."""

    def __init__(self, ws_url: str) -> None:
        rest = ws_url.removeprefix("ws://")
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the upgrade: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read_message(self) -> str:
        parts = []
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8))[0]
            payload = self._recv_exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: the browser does not ping a client; ignore
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._read_message())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def start_chromium(processes: Processes, profile: Path) -> DevTools:
    browser = processes.start([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                               "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if browser.poll() is not None or time.monotonic() > deadline:
            sys.exit("chromium did not open its DevTools port")
        time.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        pages = [t for t in json.load(response) if t["type"] == "page"]
    page = DevTools(pages[0]["webSocketDebuggerUrl"])
    page.call("Page.enable")
    page.call("Runtime.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
    return page


def text_on_page(page: DevTools) -> str:
    return page.evaluate("document.body ? document.body.innerText : ''") or ""


def wait_for_text(page: DevTools, needles: list[str], timeout: float = 60) -> None:
    """Until every needle is on the page (the UI fetches its data after the first paint)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = text_on_page(page)
        if all(n in text for n in needles):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not on the page after {timeout:.0f} s: {[n for n in needles if n not in text_on_page(page)]}")


CLICKABLE = "button, a, [role=tab], [role=button], div, span, td"


def click_text(page: DevTools, text: str, selector: str = CLICKABLE) -> bool:
    """Click the innermost visible element whose own text is exactly `text`."""
    script = f"""(() => {{
        const want = {json.dumps(text)};
        const els = [...document.querySelectorAll({json.dumps(selector)})]
            .filter(e => e.innerText && e.innerText.trim() === want && e.offsetParent !== null);
        const inner = els.filter(e => !els.some(o => o !== e && e.contains(o)));
        if (!inner.length) return false;
        inner[0].scrollIntoView({{block: 'center'}});
        inner[0].click();
        return true;
    }})()"""
    return bool(page.evaluate(script))


def navigate(page: DevTools, url: str) -> None:
    page.call("Page.navigate", url=url)
    deadline = time.monotonic() + 60
    while page.evaluate("document.readyState") != "complete" and time.monotonic() < deadline:
        time.sleep(0.3)


def settle(page: DevTools, seconds: float = 2.0) -> None:
    """Let the last GraphQL answers render and animations end."""
    time.sleep(seconds)


def screenshot(page: DevTools, path: Path) -> None:
    if "Join the Dagster community" in text_on_page(page):
        dismiss_nux(page)
    data = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
    path.write_bytes(base64.b64decode(data))
    log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({path.stat().st_size // 1024} KiB)")


# ---------------------------------------------------------------- the pages

def metadata_labels(base: str, asset: str) -> list[tuple[str, str]]:
    """(label, type) of the asset's latest materialization's metadata, from the webserver's GraphQL."""
    query = ("{ assetOrError(assetKey: {path: [" + json.dumps(asset) + "]}) { ... on Asset { "
             "assetMaterializations(limit: 1) { metadataEntries { label __typename } } } } }")
    events = graphql(base, query)["data"]["assetOrError"]["assetMaterializations"]
    if not events:
        sys.exit(f"{asset} has no materialization: the run did not produce real data")
    return [(e["label"], e["__typename"]) for e in events[0]["metadataEntries"]]


def group_names(base: str) -> list[str]:
    nodes = graphql(base, "{ assetNodes { groupName } }")["data"]["assetNodes"]
    return sorted({n["groupName"] for n in nodes})


# Tall enough for the stages' groups stacked two high (evidence under reconciliation, reports over exports).
_GRAPH_HEIGHT = 1200


def viewport(page: DevTools, width: int, height: int) -> None:
    page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)


def mouse_click(page: DevTools, x: float, y: float, clicks: int = 1) -> None:
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=clicks)


def dismiss_nux(page: DevTools) -> None:
    """Dagster's first-visit "Join the community" dialog (shown unless dagster.yaml has nux: enabled: false)."""
    with contextlib.suppress(TimeoutError):
        wait_for_text(page, ["Skip"], timeout=3)
        click_text(page, "Skip")
        time.sleep(0.5)


def open_markdown(page: DevTools, label: str | None = None) -> None:
    """Open a Markdown metadata value (the UI folds long ones behind [Show Markdown]), in the row of
    `label` if given, and grow the viewport to the dialog's height so the whole table is in the shot."""
    clicked = page.evaluate("""(label => {
        const links = [...document.querySelectorAll('*')].filter(e =>
            e.children.length === 0 && e.textContent.trim() === '[Show Markdown]' && e.offsetParent !== null);
        const row = l => l.closest('tr') || l.parentElement.parentElement;
        const link = label ? links.find(l => row(l).innerText.includes(label)) : links[0];
        if (!link) return false;
        link.click();
        return true;
    })(""" + json.dumps(label) + ")")
    if not clicked:
        raise RuntimeError(f"no [Show Markdown] for {label!r}")
    deadline = time.monotonic() + 20
    while not page.evaluate("!!document.querySelector('[role=dialog]')"):
        if time.monotonic() > deadline:
            raise TimeoutError("the Markdown dialog did not open")
        time.sleep(0.3)
    settle(page, 1)
    height = page.evaluate("document.querySelector('[role=dialog]').getBoundingClientRect().height")
    if height + 120 > HEIGHT:
        viewport(page, WIDTH, min(int(height) + 120, 4000))
        settle(page, 1.5)


def shoot(page: DevTools, base: str, out: Path) -> list[Path]:
    shots = []
    # UI preferences live in the browser's localStorage: set them on the webserver's origin first.
    # Node facets add each asset's (Chinese) description to the graph; the pipeline reads left to right.
    navigate(page, f"{base}/server_info")
    page.evaluate("""localStorage.setItem('asset-node-facets', JSON.stringify(
        ['description', 'checks', 'latest-event', 'status', 'kind-tag', 'partitions']));
        localStorage.setItem('asset-graph-direction', JSON.stringify('horizontal'));""")

    # (a) The global asset lineage with every group (= pipeline stage) expanded, zoomed to fit. Wide
    # enough that the nodes keep their details (the UI drops to bare names below 60 % zoom).
    viewport(page, 2400, _GRAPH_HEIGHT)
    expanded = ",".join(f"global@global:{g}" for g in group_names(base))
    navigate(page, f"{base}/asset-groups?expanded={urllib.parse.quote(expanded)}")
    dismiss_nux(page)
    wait_for_text(page, ["Global asset lineage"])
    click_text(page, "Hide navigation")
    page.evaluate("document.querySelector('[aria-label=panel_show_right]')?.closest('button')?.click()")
    settle(page, 1)
    # Double-click on the background (bottom left: the groups start at the top): zoom to fit.
    mouse_click(page, 150, _GRAPH_HEIGHT - 60, clicks=2)
    wait_for_text(page, ["package_intake", "package_validation", "reconciliation", "national_sync",
                         "year_exports", "Latest event"])
    settle(page, 3)
    shots.append(out / "asset_graph.png")
    screenshot(page, shots[-1])

    # (b) year_exports' page: the latest materialization's metadata (projects by status, findings by rule, files).
    viewport(page, WIDTH, 1250)
    labels = [label for label, _ in metadata_labels(base, "year_exports")]
    navigate(page, f"{base}/assets/year_exports")
    dismiss_nux(page)
    wait_for_text(page, ["year_exports", "Latest materialization", *labels[:2]])
    settle(page)
    shots.append(out / "asset_metadata.png")
    screenshot(page, shots[-1])

    # (b') reconciliation's money table (granted, spent, balance per project and funding source).
    viewport(page, WIDTH, HEIGHT)
    markdown = [label for label, kind in metadata_labels(base, "reconciliation") if kind == "MarkdownMetadataEntry"]
    navigate(page, f"{base}/assets/reconciliation")
    dismiss_nux(page)
    wait_for_text(page, ["reconciliation", "Latest materialization", markdown[0]])
    open_markdown(page, markdown[0])
    shots.append(out / "reconciliation_table.png")
    screenshot(page, shots[-1])

    # (c) package_validation's check no_fatal_findings: FAILED on the sample (units with fatal findings),
    # with its counts; then its findings table (sheet, row, column, value, what to do).
    viewport(page, WIDTH, HEIGHT)
    navigate(page, f"{base}/assets/package_validation?view=checks")
    dismiss_nux(page)
    wait_for_text(page, ["no_fatal_findings", "Failed", "Latest execution", "[Show Markdown]"])
    settle(page)
    shots.append(out / "failed_check.png")
    screenshot(page, shots[-1])
    open_markdown(page)
    shots.append(out / "failed_check_findings.png")
    screenshot(page, shots[-1])
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "screenshots", help="where the PNG files go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DAGSTER_HOME and data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    ensure_browser()
    work = Path(tempfile.mkdtemp(prefix="etl-screenshots-"))
    processes = Processes()
    # SIGTERM/SIGHUP become SystemExit, so the finally below still stops what was started.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda s, _f: sys.exit(128 + s))
    try:
        home = work / "dagster_home"
        home.mkdir()
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(home), "ETL_INBOX": str(work / "inbox"),
               "ETL_EXPORT_DIR": str(work / "exports"), "ETL_DATABASE_URL": f"sqlite:///{work / 'warehouse.db'}",
               "PYTHONUNBUFFERED": "1"}
        for name in ("NATIONAL_SYSTEM_URL", "NATIONAL_SYSTEM_TOKEN"):
            env.pop(name, None)
        log(f"running the {YEAR} sample into {work}")
        prepare_data(work, env)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        webserver = Path(sys.executable).parent / "dagster-webserver"
        server = processes.start([str(webserver), "-m", "etl.definitions", "-h", "127.0.0.1", "-p", str(port)],
                                 cwd=REPO, env=env, stdout=(work / "webserver.log").open("w"), stderr=subprocess.STDOUT)
        log(f"dagster-webserver at {base}")
        keys = wait_for_webserver(base, server)
        log(f"UI knows {len(keys)} assets: {', '.join(keys)}")
        # What an operator's first "Skip" does: the instance records that its "Join the Dagster
        # community" dialog was seen (a file under DAGSTER_HOME/.nux), so it does not cover a shot.
        graphql(base, "mutation { setNuxSeen }")

        page = start_chromium(processes, work / "chromium-profile")
        try:
            shots = shoot(page, base, args.out)
        finally:
            page.close()
    finally:
        processes.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    log(f"{len(shots)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
