"""The evidence portal: `tru portal`, a read-only web page over the checkout's ledger and
reports for a data-protection officer who does not use a shell.

Everything it shows comes from the functions `tru evidence` calls, never from a second
implementation: a request's facts and wording from `tru.evidence.certificate.request_facts`
and `summary_lines` (what `tru evidence get` prints), its certificate from `certificate_pdf`,
and a batch's verification badge from `tru.evidence.verify` (every hash of the manifest and the
signed statement), recomputed on every page, so a file changed on disk turns it red at once,
without a restart.

FastAPI on uvicorn, both already installed with Prefect and run by its server: a handful of
server-rendered pages (Jinja2, autoescape on) with plain HTML forms, no JavaScript and nothing
fetched from elsewhere, so it works on an offline machine. The Content-Security-Policy forbids
scripts and any source but the portal itself, so even a slip in escaping could run nothing.

No request id in a URL or a log line. A request id identifies a person's request, and URLs
are what access logs, proxies, browser histories and Referer headers keep: the search and the
certificate download are POSTed forms, so the id travels in the body only; the only thing a
URL names is a batch id (a time, no one's data). uvicorn's access log is off (a client may put
anything in a URL), and the portal logs one line per request of its own, with the route's
pattern, never the path as sent. Pages say `Cache-Control: no-store`: what the ledger says
about a person is not kept on disk by the browser.

Read-only: nothing is written; a certificate is rendered in memory and sent.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from tru.errors import DataError, TruError
from tru.evidence import layout, signing, verify
from tru.evidence.certificate import certificate_pdf, request_facts, summary_lines, when
from tru.evidence.lookup import known_batches
from tru.io import read_json
from tru.portal import DEFAULT_PORT, access, ids
from tru.requests.ledger import BATCH_ID_REGEX
from tru.requests.schema import REQUEST_ID_REGEX

LOGGER = "tru.portal"
log = logging.getLogger(LOGGER)
SHOWN_PROBLEMS = 5  # a red badge names the first problems; `tru evidence verify` lists all
MAX_ID_CHARS = 200  # longer than any valid request id (tru.requests.schema); what is typed beyond is an error
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# WeasyPrint renders under a process-wide SOURCE_DATE_EPOCH (tru.evidence.render): two
# certificates of different batches rendered at once in the server's threads would stamp each
# other's date into the fonts, and the bytes would no longer be reproducible
_RENDER = threading.Lock()
# "pseudonym: ...", "erased: ...": the lines of `summary_lines`, as a label and its text
_LINE = re.compile(r"^([a-z]+): (.*)$", re.S)


def environment() -> Environment:
    """The portal's templates: autoescape on, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("tru.portal", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda iso: when(iso) or "—"
    env.filters["num"] = _num
    return env


def _num(value: object) -> str:
    """A check's value or limit: four significant digits, "—" when there is none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def badge(batch_id: str, root: Path, trusted_key: Path | None = None) -> dict:
    """The verification badge of a batch, computed now: `ok` (every file matches its recorded
    hash, the statement's signature checks; with the key's fingerprint), `bad` (the first
    problems `tru.evidence.verify` names) or `none` (no evidence yet: no PDF and no manifest)."""
    if not (root / layout.pdf_path(batch_id)).is_file() and not (root / layout.manifest_path(batch_id)).is_file():
        return {
            "batch": batch_id,
            "state": "none",
            "text": "no evidence yet: its stages have not reached the report, or it awaits review",
            "problems": [],
            "more": 0,
        }
    try:
        problems = [_relative(p, root) for p in verify(batch_id, root, trusted_key)]
    except TruError as err:
        problems = [_relative(str(err), root)]
    if problems:
        return {
            "batch": batch_id,
            "state": "bad",
            "text": f"NOT verified: {len(problems)} problem(s)",
            "problems": problems[:SHOWN_PROBLEMS],
            "more": max(0, len(problems) - SHOWN_PROBLEMS),
        }
    fp, _ = signing.check(batch_id, root, trusted_key)
    return {
        "batch": batch_id,
        "state": "ok",
        "text": f"verified: every file matches, signed by key {str(fp)[:16]}…",
        "fingerprint": fp,
        "problems": [],
        "more": 0,
    }


def _relative(text: str, root: Path) -> str:
    """A library message with the checkout's paths relative to it, as `tru` prints them from
    the checkout: a page shows no path of the server's disk."""
    return text.replace(f"{root}{os.sep}", "")


def _pdf_exists(root: Path, batch_id: str) -> bool:
    return (root / layout.pdf_path(batch_id)).is_file()


def _verdict(root: Path, batch_id: str) -> str | None:
    """The audit gate's verdict of the batch (PASS, FAIL), None before its audit."""
    path = root / layout.report_dir(batch_id) / "audit.json"
    try:
        verdict = read_json(path).get("verdict") if path.is_file() else None
    except ValueError:
        return "unreadable audit.json"
    return str(verdict).upper() if verdict else None


def _lines(facts: dict) -> tuple[str, list[tuple[str, str]]]:
    """`summary_lines` (what `tru evidence get` prints) as a title and (label, text) rows."""
    title, *rest = summary_lines(facts)
    rows = []
    for line in rest:
        m = _LINE.match(line)
        rows.append((m.group(1), m.group(2)) if m else ("", line))
    return title, rows


def _certificate_refusal(facts: dict) -> str | None:
    """Why no certificate can be made now (None: it can): an erased request's certificate names
    its batch's PDF by its sha256, as `tru.evidence.certificate.write_certificate` requires."""
    if facts["erased_by"] and facts["evidence_sha256"] is None:
        return f"batch {facts['erased_by']} has no evidence yet, and a certificate of erasure names its PDF's sha256"
    return None


def _certificate_name(request_id: str) -> str:
    """The download's file name: the CLI's `<request id>.pdf`, for an id that can name a file."""
    return f"certificate-{request_id}.pdf" if re.match(REQUEST_ID_REGEX, request_id) else "certificate.pdf"


def create_app(
    root: str | Path = Path("."), token: str | None = None, trusted_key: str | Path | None = None
) -> FastAPI:
    """The portal over the checkout at `root`. With `token`, every page and download asks for
    it (tru.portal.access). `trusted_key`: the operator's public key (PEM) the badges check
    signatures against, instead of the one reports/keys/ holds (`tru evidence verify --key`)."""
    root = Path(root).resolve()
    key = Path(trusted_key).resolve() if trusted_key is not None else None
    env = environment()
    css = resources.files("tru.portal").joinpath("templates", "portal.css").read_bytes()
    # no OpenAPI page: FastAPI's loads its scripts from a CDN, and the portal has no API to describe
    app = FastAPI(title="tru evidence portal", docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        # links start with the prefix a reverse proxy serves the portal under (uvicorn's --root-path)
        base = str(request.scope.get("root_path") or "").rstrip("/")
        return HTMLResponse(env.get_template(template).render(base=base, **context), status_code=status)

    def index(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
        batches = known_batches(root)
        return page(request, "index.html.j2", status, batches=list(reversed(batches)), error=error)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """The token (when one is set), the security headers, and the log line."""
        if token is not None and not access.authorized(request.headers.get("authorization"), token):
            response: Response = PlainTextResponse(
                "401: this portal needs its access token (any user name, the token as the password)\n",
                status_code=401,
                headers=access.challenge(),
            )
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        route = request.scope.get("route")
        # the route's pattern, never the path as sent (a client may put anything in it)
        log.info("%s %s %d", request.method, getattr(route, "path", "(no such page)"), response.status_code)
        return response

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        """A page instead of FastAPI's JSON: no such page, or a form's address opened directly."""
        reasons = {404: "no such page", 405: "this page is reached through its form, not by its address"}
        return index(request, exc.status_code, reasons.get(exc.status_code, str(exc.detail)))

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return index(request)

    @app.get("/portal.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css")

    @app.post("/lookup", response_class=HTMLResponse)
    def lookup(
        request: Request,
        request_id: Annotated[str, Form()] = "",
        ids_file: Annotated[UploadFile | None, File(alias="ids")] = None,
    ) -> HTMLResponse:
        if ids_file is not None and ids_file.filename:
            try:
                wanted = ids.request_ids(ids_file.file.read(ids.MAX_BYTES + 1))
            except DataError as err:
                return index(request, 400, f"{ids_file.filename}: {err}")
            return _many(request, wanted)
        request_id = request_id.strip()
        if not request_id:
            return index(request, 400, "enter a request id, or choose a file of them")
        if len(request_id) > MAX_ID_CHARS:
            return index(request, 400, f"a request id has at most {MAX_ID_CHARS} characters")
        try:
            facts = request_facts(request_id, root)
        except DataError as err:
            return index(request, 404, _relative(str(err), root))
        title, rows = _lines(facts)
        shown = list(dict.fromkeys([facts["evidence_batch"], facts["batch"]]))
        return page(
            request,
            "request.html.j2",
            f=facts,
            title=title,
            rows=rows,
            badges=[badge(b, root, key) | {"pdf": _pdf_exists(root, b)} for b in shown],
            refusal=_certificate_refusal(facts),
        )

    def _many(request: Request, wanted: list[str]) -> HTMLResponse:
        found: list[dict] = []
        missing: list[str] = []
        for request_id in wanted:
            try:
                facts = request_facts(request_id, root)
            except DataError:
                missing.append(request_id)
                continue
            found.append({"f": facts, "refusal": _certificate_refusal(facts)})
        batches = sorted({r["f"]["evidence_batch"] for r in found})  # each batch verified once
        badges = [badge(b, root, key) | {"pdf": _pdf_exists(root, b)} for b in batches]
        return page(request, "requests.html.j2", found=found, missing=missing, badges=badges, asked=len(wanted))

    @app.post("/certificate")
    def certificate(request: Request, request_id: Annotated[str, Form()] = "") -> Response:
        request_id = request_id.strip()
        if not request_id or len(request_id) > MAX_ID_CHARS:
            return index(request, 400, "no request id given for the certificate")
        try:
            facts = request_facts(request_id, root)
        except DataError as err:
            return index(request, 404, _relative(str(err), root))
        refusal = _certificate_refusal(facts)
        if refusal:
            return index(request, 409, refusal)
        with _RENDER:
            data = certificate_pdf(facts)
        disposition = f'attachment; filename="{_certificate_name(request_id)}"'
        return Response(data, media_type="application/pdf", headers={"Content-Disposition": disposition})

    def _known(batch_id: str) -> bool:
        return bool(BATCH_ID_REGEX.match(batch_id)) and batch_id in known_batches(root)

    @app.get("/batches/{batch_id}", response_class=HTMLResponse)
    def batch(request: Request, batch_id: str) -> HTMLResponse:
        if not _known(batch_id):
            return index(request, 404, f"unknown batch {batch_id}")
        return page(
            request,
            "batch.html.j2",
            batch=batch_id,
            verdict=_verdict(root, batch_id),
            badge=badge(batch_id, root, key) | {"pdf": _pdf_exists(root, batch_id)},
        )

    @app.get("/batches/{batch_id}/evidence.pdf")
    def evidence_pdf(request: Request, batch_id: str) -> Response:
        if not _known(batch_id):
            return index(request, 404, f"unknown batch {batch_id}")
        path = root / layout.pdf_path(batch_id)
        if not path.is_file():
            return index(request, 404, f"batch {batch_id} has no evidence PDF here (`dvc pull`, or its report stage)")
        return FileResponse(path, media_type="application/pdf", filename=f"evidence-{batch_id}.pdf")

    return app


def log_config() -> dict:
    """uvicorn's logging, with the portal's own request lines (its access log is off)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][LOGGER] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve(
    root: str | Path = Path("."),
    host: str = access.DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    trusted_key: str | Path | None = None,
    root_path: str = "",
) -> None:
    """Serve the portal until interrupted. ConfigError, before anything listens, for a host
    beyond this machine without a token (tru.portal.access.check_binding). `root_path`: the
    path prefix a reverse proxy serves it under (`/evidence`), for its links."""
    import uvicorn

    access.check_binding(host, token)
    app = create_app(root, token, trusted_key)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=log_config(),
        server_header=False,
        root_path=root_path,
    )
