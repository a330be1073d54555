"""Benchmarks: speed, memory and quality figures written under reports/bench/. Each measured run
happens in a fresh child process so that its peak RSS is its own. Nothing here is a test:
figures are recorded, not asserted.

- process: a run in a child process, its peak RSS, the host's matrix-multiply speed
- store: the resumable results CSV (one row per finished cell) the benchmarks share
- train: training speed and quality per seed (`tru bench train`)
- ingest: ingesting a large generated request file (`tru bench ingest`)
- unlearn: deletions per regime erased per method (`tru bench unlearn`); the deletion and
  erasure steps the audit benchmark and the grid share
- audit: membership and backdoor audits after a user-level deletion (`tru bench audit`)
- gate: the audit gate's false alarms and misses (`tru bench gate`)
- grid: the paper's comparison as one resumable grid (`tru bench grid`)
"""
