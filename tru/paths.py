"""Where everything lives, relative to the project root: one place for every path the stages,
the CLI, the flows and the benchmarks share (dvc.yaml spells the same paths out).

Per batch B every path derives from the id, so nothing else needs recording:

- data/deletions/batches/B/input/  the request files as received (archived from the inbox)
- data/ledger/B/                    the ledger of B (append-only Parquet)
- data/batches/B/sets/              forget / retain sets (a split-like folder)
- data/batches/B/unlearned|model/   the erased and the repaired checkpoint
- reports/B/                        components.json, metrics, audit.json, evidence
"""

from __future__ import annotations

from pathlib import Path

# the base pipeline (dvc.yaml: fetch, featurize, split, train, evaluate)
RAW = Path("data/raw")
SPLIT = Path("data/split")
BASE_MODEL = Path("data/models/base")
TRAIN_REPORTS = Path("reports/train")
TRAIN_LOG = TRAIN_REPORTS / "train_log.json"
BASE_METRICS = TRAIN_REPORTS / "metrics.json"

# the data lifecycle (tracked by git): the suppression list every fetch and featurize applies,
# and the record of consolidations (data generations), retention and purges
LIFECYCLE = Path("lifecycle")
SUPPRESSION = LIFECYCLE / "suppression.tsv"
GENERATIONS = LIFECYCLE / "generations.yaml"

# deletion batches
BATCHES_FILE = Path("batches.yaml")
INBOX = Path("data/deletions/inbox")
ARCHIVE = Path("data/deletions/batches")
LEDGER = Path("data/ledger")
BATCH_DATA = Path("data/batches")
REPORTS = Path("reports")

# benchmarks: generated results (committed) and scratch (prepared datasets, base models; not committed)
BENCH_REPORTS = REPORTS / "bench"
BENCH_SCRATCH = Path("data/bench")


def input_dir(batch_id: str) -> Path:
    """The archived request files of batch `batch_id`."""
    return ARCHIVE / batch_id / "input"


def ledger_dir(batch_id: str) -> Path:
    """The ledger partition of batch `batch_id`."""
    return LEDGER / batch_id


def batch_dir(batch_id: str) -> Path:
    """The DVC-tracked data of batch `batch_id` (sets and checkpoints)."""
    return BATCH_DATA / batch_id


def sets_dir(batch_id: str) -> Path:
    """The forget / retain sets of batch `batch_id`."""
    return batch_dir(batch_id) / "sets"


def report_dir(batch_id: str) -> Path:
    """The reports of batch `batch_id` (metrics, audit, evidence)."""
    return REPORTS / batch_id
