"""Base training flow: fetch -> featurize -> split -> train -> evaluate.

The same functions as the DVC stages (tru.stages), so both write the same files.
Run: `python -m flows.train` (an ephemeral Prefect server starts if none is configured).
"""

from __future__ import annotations

from prefect import flow

from tasks.data import featurize_task, fetch_task, split_task
from tasks.model import evaluate_task, train_task


@flow(name="base-training", log_prints=True)
def base_training(params_path: str = "params.yaml") -> dict:
    """Every base-training step with the params at `params_path`; the sha256 of each step's output."""
    fetched = fetch_task(params_path)
    built = featurize_task(params_path, fetched["raw_dir"])
    split = split_task(params_path, built["dataset_dir"])
    trained = train_task(params_path, split["split_dir"])
    metrics = evaluate_task(params_path, trained["checkpoint"], split["split_dir"])
    print(
        f"checkpoint {trained['checkpoint']} sha256 {trained['weights_sha256'][:12]}…; test {metrics['values']['test']}"
    )
    return {
        "fetch": fetched["sha256"],
        "dataset": built["sha256"],
        "split": split["sha256"],
        "checkpoint": trained["weights_sha256"],
        "metrics": metrics["sha256"],
    }


if __name__ == "__main__":
    base_training()
