"""The evidence portal (`tru portal`): a read-only web page over the checkout for a
data-protection officer: look a request up by its id (or a file of ids), see its status,
batch, dates, the audit's verdict and checks, download the batch's evidence PDF and the
person's certificate, and see whether the batch's evidence still matches what was signed.

FastAPI and uvicorn are imported only when the portal is started (`tru.portal.app`).
"""

DEFAULT_PORT = 8300  # `tru portal`'s port; the flows link their evidence to http://127.0.0.1:<it>
