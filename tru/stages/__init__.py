"""One function per pipeline stage, one module per stage (dvc.yaml names the module among each
stage's dependencies). The `tru` CLI (hence every DVC stage) and the Prefect tasks call these
and nothing else, so both produce the same files with the same hashes.

Each function takes validated params and the paths it reads and writes, and returns a small
JSON-able summary (paths and hashes, never tensors or frames).

| dvc.yaml stage | function |
|---|---|
| fetch, featurize, split | `tru.stages.data`: `fetch_stage`, `featurize_stage`, `split_stage` |
| train, evaluate | `tru.stages.model`: `train_stage`, `evaluate_stage` |
| (ingest: `tru ingest`, not a DVC stage) | `tru.stages.ingest.ingest_stage` |
| sets | `tru.stages.sets.sets_stage` |
| map | `tru.stages.components.map_stage` |
| erase | `tru.stages.erase.erase_stage` |
| repair | `tru.stages.repair.repair_stage` |
| evaluate_batch | `tru.stages.evaluate_batch.evaluate_batch_stage` |
| audit | `tru.stages.audit.audit_stage` |
| report | `tru.stages.report.report_stage` |

`tru.stages.context` holds what the batch stages share (the batch's context, seed, metrics);
`tru.stages.plotdata` the per-batch DVC plot files that evaluate_batch and audit write.
"""
