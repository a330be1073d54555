"""The ingest benchmark (`tru bench ingest`): a generated request file against an
Amazon-Baby-sized catalog, ingested in a child process: wall time and peak RSS."""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tru.bench.process import in_child, peak_rss_mb
from tru.io import write_json
from tru.requests.ingest import Catalog, ingest_batch


def _ingest_rows(rows: int, workdir: str) -> dict:
    """Generate `rows` requests against an Amazon-Baby-sized catalog (95% valid) and ingest them."""
    root = Path(workdir)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_users, n_items, n_pairs = 19_445, 7_050, 160_792
    users = [f"A{i:08d}" for i in range(n_users)]
    items = [f"B{i:09d}" for i in range(n_items)]
    pairs = np.unique(
        np.stack([rng.integers(0, n_users, 2 * n_pairs), rng.integers(0, n_items, 2 * n_pairs)], 1), axis=0
    )[:n_pairs]
    kinds = rng.choice(4, rows, p=[0.25, 0.10, 0.60, 0.05])
    pick = rng.integers(0, len(pairs), rows)
    with open(inbox / "big.jsonl", "w") as f:
        for r in range(rows):
            u, i = pairs[pick[r]]
            k = kinds[r]
            if k == 0:
                row = {
                    "request_id": f"req-{r:09d}",
                    "kind": "user",
                    "user_id": users[u],
                    "received_at": "2026-11-28T10:00:00Z",
                }
            elif k == 1:
                row = {
                    "request_id": f"req-{r:09d}",
                    "kind": "item",
                    "item_id": items[i],
                    "received_at": "2026-11-28T10:00:00+01:00",
                }
            elif k == 2:
                row = {
                    "request_id": f"req-{r:09d}",
                    "kind": "interaction",
                    "user_id": users[u],
                    "item_id": items[i],
                    "received_at": "2026-11-28",
                }
            else:  # bad rows: path-like id, unknown kind, wrong type, bad time
                row = {"request_id": f"../req-{r}", "kind": "account", "user_id": 12, "received_at": "later"}
            f.write(json.dumps(row) + "\n")
    size_mb = (inbox / "big.jsonl").stat().st_size / 1e6
    catalog = Catalog(users, items, pairs)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    summary = ingest_batch(
        inbox,
        root / "batches",
        root / "ledger",
        catalog,
        b"k" * 32,
        now=datetime(2026, 11, 28, 23, tzinfo=UTC),
    )
    return {
        "rows": summary["rows"],
        "by_status": summary["by_status"],
        "input_mb": round(size_mb, 1),
        "ingest_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb_before_ingest": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
        "ledger_mb": round(Path(summary["ledger"]).stat().st_size / 1e6, 1),
    }


def bench_ingest(out: str | Path, rows: int = 1_000_000) -> dict:
    """Ingest a generated file of `rows` requests in a child process; write its wall time and
    peak RSS (with the environment) to `out` (JSON) and return them."""
    with tempfile.TemporaryDirectory() as tmp:
        result = in_child(_ingest_rows, rows, tmp)
    result["environment"] = {"python": platform.python_version(), "cpus": mp.cpu_count()}
    write_json(out, result)
    return result
