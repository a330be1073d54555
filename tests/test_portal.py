"""The evidence portal (`tru portal`, tru/portal/): a request looked up by a POSTed form shows
its status, batch, dates, verdict and checks; both PDFs download; each batch's badge is
recomputed on every page, so a flipped byte turns it red; request ids stay out of URLs and
logs; raw ids never reach a page; beyond localhost a token is required.

The fixture is the signed batch of test_evidence with its audit gate passed (test_certificate's
`_pass_the_gate`: a batch whose requests are erased). Most tests use FastAPI's TestClient; the
last drives the real portal (`tru portal` in a subprocess) in headless Chromium over the
DevTools protocol: it types the id and presses Enter, clicks the downloads, flips a byte of the
PDF on disk and looks again. Without /usr/bin/chromium it is skipped, except in CI (CI=true),
where .ci/run installs it.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import BIN
from cryptography.hazmat.primitives import serialization
from test_certificate import _pass_the_gate
from test_evidence import KEY, B, make_batch, pdf_text, raw_texts, sign_fixture
from test_signing import flip
from typer.testing import CliRunner

from tru.cli import app as cli
from tru.evidence import render_pdf, signing
from tru.portal import access, ids
from tru.portal.app import create_app
from tru.requests.pseudonym import subject

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "portal-test-token-0123456789"
PDF = f"reports/{B}/evidence.pdf"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = make_batch(tmp_path_factory.mktemp("portal"))
    _pass_the_gate(root)
    render_pdf(B, root)
    sign_fixture(root)
    return root


@pytest.fixture(scope="module")
def client(root):
    from fastapi.testclient import TestClient

    return TestClient(create_app(root))


def lookup(client, request_id: str):
    return client.post("/lookup", data={"request_id": request_id})


def private_texts(request_id: str) -> list[str]:
    """Raw user and item ids, the requesters' own text and every other request id."""
    return sorted({t for t in raw_texts() if t != request_id})


def test_a_lookup_shows_status_batch_dates_verdict_and_checks(client):
    r = lookup(client, "req-0002")
    assert r.status_code == 200
    page = r.text
    assert '<h1 id="title">request req-0002: erased</h1>' in page
    for row in (
        f"<th>pseudonym</th><td>{subject(KEY, 'user', 'rawuser-0002', None)} ",
        "<th>status</th><td>erased</td>",
        "<th>received</th><td>2025-12-31 09:05:00 UTC</td>",
        f"<th>erased</th><td>2026-01-01 02:00:00 UTC, by batch {B}</td>",
        f"<th>evidence</th><td>{PDF}, section Requests, row 2 of 12</td>",
    ):
        assert row in page, row
    assert f'The audit of batch {B}: <span class="verdict pass" id="verdict">PASS</span>' in page
    assert "<td>Service for everyone else</td>" in page and "<td>Detecting the erased data</td>" in page
    assert 'class="badge ok"' in page and "verified: every file matches, signed by key " in page
    assert f'href="/batches/{B}/evidence.pdf"' in page
    # a rejected request: its reason, no verdict, and a page that says "not erased"
    rejected = lookup(client, "req-0007").text
    assert "<th>status</th><td>rejected: unknown user_id (not in the dataset)</td>" in rejected
    assert "nothing of this request was audited" in rejected and 'id="verdict"' not in rejected
    assert "titled\n<em>not erased</em>" in rejected


def test_an_unknown_request_id_is_a_clear_message(client):
    r = lookup(client, "req-9999")
    assert r.status_code == 404
    assert "request &#39;req-9999&#39; is not in the ledger (data/ledger: 1 batch(es) searched)" in r.text
    assert 'id="lookup"' in r.text  # the form again, to correct the id
    assert lookup(client, "   ").status_code == 400
    assert "enter a request id" in lookup(client, "").text


def test_no_raw_id_in_any_page_and_external_text_is_escaped(client):
    for request_id in ("req-0002", "req-0005", "req-0007", "req-0010", "req-0011"):
        page = lookup(client, request_id).text
        for text in private_texts(request_id):
            assert text not in page, (request_id, text)
    page = lookup(client, "req-0005").text  # its status reason is an injection attempt
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    listed = client.post("/lookup", files={"ids": ("ids.txt", b"req-0002\nreq-0005\n")}).text
    for text in private_texts("req-0002"):
        if text != "req-0005":
            assert text not in listed, text


def test_request_ids_stay_out_of_urls_and_logs(client, caplog):
    caplog.set_level(logging.INFO, logger="tru.portal")
    pages = [
        lookup(client, "req-0002").text,
        client.post("/lookup", files={"ids": ("ids.txt", b"req-0002\nreq-0007\n")}).text,
    ]
    for page in pages:
        # every link and form target: none carries an id
        for url in re.findall(r'(?:href|action|src)="([^"]*)"', page):
            assert "req-" not in url, url
        assert re.findall(r'<form method="(\w+)"', page) and set(re.findall(r'<form method="(\w+)"', page)) == {"post"}
    client.post("/certificate", data={"request_id": "req-0002"})
    client.get("/lookup-req-0002?request_id=req-0002")  # a client may put anything in a URL: not logged
    client.get("/?request_id=req-0002")
    lines = [r.getMessage() for r in caplog.records if r.name == "tru.portal"]
    assert "POST /lookup 200" in lines and "POST /certificate 200" in lines
    assert "GET (no such page) 404" in lines and "GET / 200" in lines
    assert not any("req-" in line for line in lines), lines
    # a GET never looks anything up, even with the id in its query
    assert "req-0002" not in client.get("/?request_id=req-0002").text
    r = client.get("/lookup?request_id=req-0002")
    assert r.status_code == 405 and "reached through its form" in r.text and "req-0002" not in r.text


def test_a_file_of_ids_lists_each_request(client):
    r = client.post("/lookup", files={"ids": ("mine.txt", b"# answered today\nreq-0002\n\nreq-0007\nreq-0002\nnope\n")})
    assert r.status_code == 200
    assert "<h1>3 request id(s): 2 found, 1 not in the ledger</h1>" in r.text
    assert "<td>req-0002</td>" in r.text and "<td>rejected: unknown user_id (not in the dataset)</td>" in r.text
    assert '<ul class="missing">\n<li>nope</li>' in r.text and r.text.count('class="badge ok"') == 1
    # the request file itself: JSON Lines or CSV, its request_id column
    assert ids.request_ids(b'{"request_id": "a", "kind": "user"}\n{"request_id": "b"}\n') == ["a", "b"]
    assert ids.request_ids(b"\xef\xbb\xbfkind,request_id\nuser,a\nitem,b\n") == ["a", "b"]
    too_many = "\n".join(f"r{i}" for i in range(ids.MAX_IDS + 1)).encode()
    r = client.post("/lookup", files={"ids": ("many.txt", too_many)})
    assert r.status_code == 400 and f"more than {ids.MAX_IDS} at once: split it" in r.text
    r = client.post("/lookup", files={"ids": ("utf16.txt", "req-0002".encode("utf-16"))})
    assert r.status_code == 400 and "not UTF-8" in r.text


def test_downloads_give_the_batch_pdf_and_the_certificate(client, root):
    r = client.get(f"/batches/{B}/evidence.pdf")
    assert r.status_code == 200 and r.content == (root / PDF).read_bytes()
    assert r.headers["content-disposition"] == f'attachment; filename="evidence-{B}.pdf"'
    r = client.post("/certificate", data={"request_id": "req-0002"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    assert r.headers["content-disposition"] == 'attachment; filename="certificate-req-0002.pdf"'
    text = " ".join(pdf_text(r.content).split())
    assert "Certificate of erasure" in text and "req-0002" in text
    for private in private_texts("req-0002"):
        assert private not in text
    # the same bytes as `tru evidence get --pdf`, and nothing written in the checkout
    assert not (root / "data" / "certificates").exists()
    assert client.post("/certificate", data={"request_id": "req-9999"}).status_code == 404
    assert client.get("/batches/b20990101T000000Z/evidence.pdf").status_code == 404
    assert client.get("/batches/..%2F..%2Fetc/evidence.pdf").status_code == 404


def test_the_badge_turns_red_at_once_when_a_byte_changes(root, tmp_path):
    from fastapi.testclient import TestClient

    copy = shutil.copytree(root, tmp_path / "checkout")
    client = TestClient(create_app(copy))
    page = client.get(f"/batches/{B}").text
    assert 'data-state="ok"' in page and '<span class="verdict pass" id="verdict">PASS</span>' in page
    flip(copy / PDF)
    page = client.get(f"/batches/{B}").text
    assert 'data-state="bad"' in page and "NOT verified" in page
    assert f"<li>{PDF}: changed (recorded sha256 " in page
    assert f"<li>{PDF}: differs from what was signed" in page
    assert 'data-state="bad"' in lookup(client, "req-0002").text
    # the operator's key given with --key: evidence signed by another key is red
    other = signing.load_private_key(env={"TRU_SIGNING_KEY": "77" * 32}).public_key()
    pem = tmp_path / "other.pem"
    pem.write_bytes(other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    page = TestClient(create_app(root, trusted_key=pem)).get(f"/batches/{B}").text
    assert 'data-state="bad"' in page and "the statement names" in page
    # a batch without evidence yet: neither green nor red
    (copy / PDF).unlink()
    (copy / f"reports/{B}/manifest.json").unlink()
    assert 'data-state="none"' in client.get(f"/batches/{B}").text


def test_pages_load_nothing_from_elsewhere_and_run_no_script(client):
    r = client.get("/")
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none' covers scripts
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    for page in (r.text, lookup(client, "req-0002").text):
        assert "<script" not in page and "http://" not in page and "https://" not in page
    assert client.get("/portal.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_behind_a_reverse_proxy_links_keep_its_path_prefix(root):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(root), root_path="/evidence")  # `tru portal --root-path /evidence`
    page = lookup(client, "req-0002").text
    assert '<link rel="stylesheet" href="/evidence/portal.css">' in page
    assert 'action="/evidence/certificate"' in page and f'href="/evidence/batches/{B}/evidence.pdf"' in page


def test_the_token_is_required_when_set(root):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(root, token=TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic !!"}):
        r = client.get("/", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="tru evidence portal"')
        assert "Batches" not in r.text
    r = client.post("/lookup", data={"request_id": "req-0002"})
    assert r.status_code == 401 and "req-0002" not in r.text
    basic = base64.b64encode(f"dpo:{TOKEN}".encode()).decode()
    assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    r = client.post("/lookup", data={"request_id": "req-0002"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "request req-0002: erased" in r.text


def test_beyond_localhost_the_portal_refuses_to_start_without_a_token(monkeypatch):
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert access.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.10", "portal.example.org"):
        assert not access.is_loopback(host), host
    access.check_binding("127.0.0.1", None)
    access.check_binding("0.0.0.0", TOKEN)
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    r = CliRunner().invoke(cli, ["portal", "--host", "0.0.0.0"])
    assert r.exit_code == 2
    refusal = "error: the portal would listen on 0.0.0.0, beyond this machine, without an access token"
    assert r.stderr.startswith(refusal)
    r = CliRunner().invoke(cli, ["portal", "--host", "0.0.0.0"], env={access.TOKEN_ENV: "short"})
    assert r.exit_code == 2 and "fewer than 16" in r.stderr


# --- in a real browser -----------------------------------------------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page, its websocket): what a
    person does, as input events (typing, Enter, mouse clicks), and what they see, as the DOM."""

    FLAGS = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    )  # fmt: skip

    def __init__(self, profile: Path, downloads: Path) -> None:
        from websockets.sync.client import connect

        self.downloads = downloads
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *self.FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            active = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
            deadline = time.monotonic() + 60
            while not (active.is_file() and len(active.read_text().split()) == 2):
                assert self.proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
                time.sleep(0.1)
            port = active.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                page = next(t for t in json.load(answer) if t["type"] == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        except BaseException:
            stop(self.proc)
            raise
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.send("Page.enable")
        self.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads), eventsEnabled=True)

    def _receive(self, timeout: float) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        if "method" in message:
            self.events.append(message)
        return message

    def send(self, method: str, **params) -> dict:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = self._receive(60)
            if message.get("id") == number:
                assert "error" not in message, message
                return message["result"]

    def wait(self, method: str, since: int, timeout: float = 60, **match) -> dict:
        """The first event `method` (with params matching `match`) after event number `since`."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and all(event["params"].get(k) == v for k, v in match.items()):
                    return event["params"]
            seen = len(self.events)
            left = deadline - time.monotonic()
            assert left > 0, f"no {method} {match} within {timeout} s"
            self._receive(left)

    def js(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def go(self, url: str) -> None:
        since = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait("Page.loadEventFired", since)

    def type_and_enter(self, selector: str, text: str) -> None:
        """Focus the field, type the text, press Enter (the form submits), wait for the page."""
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)
        since = len(self.events)
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        self.send("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        self.send("Input.dispatchKeyEvent", type="keyUp", **key)
        self.wait("Page.loadEventFired", since)

    def click(self, selector: str) -> None:
        """A mouse click in the middle of the element."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView(); "
            "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        assert box, f"nothing matches {selector}"
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def download(self, selector: str) -> Path:
        """Click a download and wait until the file is complete."""
        since = len(self.events)
        self.click(selector)
        begun = self.wait("Browser.downloadWillBegin", since)
        self.wait("Browser.downloadProgress", since, guid=begun["guid"], state="completed")
        return self.downloads / begun["suggestedFilename"]

    def close(self) -> None:
        self.ws.close()
        stop(self.proc)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium (skipped without it, except in CI, where .ci/run installs it)."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Browser(tmp_path / "profile", downloads)
    yield browser
    browser.close()


@pytest.fixture
def portal(root, tmp_path):
    """`tru portal` over a copy of the signed batch, on a free port: (url, checkout, log file)."""
    checkout = shutil.copytree(root, tmp_path / "checkout")
    port, log = _free_port(), tmp_path / "portal.log"
    env = {k: v for k, v in os.environ.items() if k != access.TOKEN_ENV}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "tru"), "portal", "--port", str(port)], cwd=checkout, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"tru portal exited {proc.returncode}:\n{log.read_text()}"
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"tru portal did not answer:\n{log.read_text()}"
                time.sleep(0.3)
        yield url, checkout, log
    finally:
        stop(proc)


def test_a_data_protection_officer_in_a_real_browser(browser, portal):
    url, checkout, log = portal
    browser.go(url)
    assert browser.js("document.title") == "Evidence portal · tru"
    browser.type_and_enter("#request_id", "req-0002")
    assert browser.js("document.getElementById('title').textContent") == "request req-0002: erased"
    assert browser.js("document.querySelector('#fact-status td').textContent") == "erased"
    assert browser.js("document.querySelector('#fact-erased td').textContent") == (
        f"2026-01-01 02:00:00 UTC, by batch {B}"
    )
    assert browser.js("document.getElementById('verdict').textContent") == "PASS"
    badge = browser.js("document.querySelector('.badge').dataset.state")
    text = browser.js("document.querySelector('.badge p').textContent")
    assert badge == "ok" and "verified: every file matches, signed by key " in text, text
    # the id went in the form's body: no page the browser visited has it in its URL
    history = browser.send("Page.getNavigationHistory")["entries"]
    assert [e["url"] for e in history][-1] == f"{url}/lookup"
    assert not any("req-" in e["url"] for e in history)

    pdf = browser.download("a.button")
    assert pdf.name == f"evidence-{B}.pdf" and pdf.read_bytes() == (checkout / PDF).read_bytes()
    certificate = browser.download("button.certificate")
    assert certificate.name == "certificate-req-0002.pdf" and certificate.read_bytes().startswith(b"%PDF-")
    assert "req-0002" in pdf_text(certificate.read_bytes())

    flip(checkout / PDF)  # one byte of the batch's PDF, on disk, the portal still running
    browser.go(url)
    browser.type_and_enter("#request_id", "req-0002")
    assert browser.js("document.querySelector('.badge').dataset.state") == "bad"
    problems = browser.js("[...document.querySelectorAll('.badge li')].map(li => li.textContent)")
    assert any(p.startswith(f"{PDF}: changed") for p in problems), problems
    assert any(p.startswith(f"{PDF}: differs from what was signed") for p in problems), problems
    lines = log.read_text()
    assert "POST /lookup 200" in lines and "POST /certificate 200" in lines
    assert "req-" not in lines, lines
