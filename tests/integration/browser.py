"""Open a page in headless Chromium and collect its console errors, through the DevTools protocol."""

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


def open_page(url: str, *, settle_s: float = 3.0, timeout_s: float = 60.0) -> dict:
    """Load ``url``; return {"errors": [...], "title": str, "text": str}.

    Errors are uncaught exceptions, console.error/assert calls and browser log entries of
    level "error" (failed loads among them), collected until ``settle_s`` after the load.
    """
    import websocket

    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("Chromium did not start its DevTools endpoint")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                page = next(t for t in json.load(response) if t["type"] == "page")
            ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout_s)
            return _drive(ws, url, settle_s, timeout_s)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _drive(ws, url, settle_s, timeout_s) -> dict:
    import websocket

    ids = iter(range(1, 10**6))
    errors, loaded_at = [], None

    def send(method, **params):
        message_id = next(ids)
        ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        return message_id

    for domain in ("Runtime", "Log", "Page"):
        send(f"{domain}.enable")
    send("Page.navigate", url=url)
    deadline = time.monotonic() + timeout_s
    ws.settimeout(0.5)
    probe = None
    while time.monotonic() < deadline and (loaded_at is None or time.monotonic() - loaded_at < settle_s):
        try:
            message = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            if loaded_at is None:  # no event for a while: ask the page whether it has loaded
                probe = send("Runtime.evaluate", returnByValue=True,
                             expression=f"document.readyState === 'complete' && location.href === {json.dumps(url)}")
            continue
        method, params = message.get("method"), message.get("params", {})
        if method == "Page.loadEventFired" or (
            message.get("id") == probe and message.get("result", {}).get("result", {}).get("value") is True
        ):
            loaded_at = loaded_at or time.monotonic()
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details.get("text"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"] + " " + params["entry"].get("url", ""))
    if loaded_at is None:
        raise RuntimeError(f"{url} did not finish loading")
    final = send("Runtime.evaluate", expression="JSON.stringify([document.title, document.body.innerText])",
                 returnByValue=True)
    ws.settimeout(timeout_s)
    while True:
        message = json.loads(ws.recv())
        if message.get("id") == final:
            title, text = json.loads(message["result"]["result"]["value"])
            return {"errors": errors, "title": title, "text": text}
