"""`serve`: watch in a real headless Chromium through textual-serve on 127.0.0.1. With the token
the page loads and the terminal it draws shows the session's rows; without it: refused."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from conftest import PY, cli, jsonl_runs, make_repo, wait_until

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]

# Before the page's own script runs: keep what the websocket delivers (the terminal's bytes), as
# text, so the test can read what xterm.js draws on its canvas.
CAPTURE = """
window.__ar_text = "";
const _WS = window.WebSocket;
window.WebSocket = function(url, protocols) {
  const ws = protocols === undefined ? new _WS(url) : new _WS(url, protocols);
  ws.addEventListener("message", (e) => {
    if (typeof e.data !== "string") { window.__ar_text += new TextDecoder().decode(new Uint8Array(e.data)); }
  });
  return ws;
};
window.WebSocket.prototype = _WS.prototype;
"""


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def test_serve_shows_the_rows_with_the_token_and_refuses_without(tmp_path):
    root = make_repo(tmp_path / "r")
    assert cli(root, "--headless", "--max-iterations", "2").returncode == 0
    rows = jsonl_runs(root)
    port, token = _free_port(), "tok-" + "x7" * 10
    server = subprocess.Popen([PY, "-m", "autoresearch_tui", "serve", "--port", str(port), "--token", token], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        def up() -> bool:
            try:
                urllib.request.urlopen(base + "/static/css/xterm.css", timeout=2)
                return True
            except OSError:
                return False

        wait_until(up, timeout=30, what="the server to listen")
        # without the token: the page and the websocket are refused
        for path in ("/", "/ws", f"/?token={token[:-1]}"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=5)
            assert e.value.code == 403, path
        driver = _driver()
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE})
        driver.get(base + "/")
        assert "needs the token" in driver.page_source
        driver.get(f"{base}/?token={token}")
        want = [rows[1]["commit"][:7], rows[2]["commit"][:7], "baseline"]
        wait_until(lambda: all(w in driver.execute_script("return window.__ar_text") for w in want), timeout=60,
                   what=lambda: "the rows in the browser's terminal: " + driver.execute_script("return window.__ar_text")[-500:])
        assert "-loaded" in driver.find_element("tag name", "body").get_attribute("class")
        text = driver.execute_script("return window.__ar_text")
        assert "Pause" not in text and "Kill run" not in text  # watching: no key that changes the session
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        try:
            out = server.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            out = server.communicate()[0]
    assert f"http://127.0.0.1:{port}/?token={token}" in out
