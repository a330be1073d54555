"""The training recipe: Adam, BPR with one uniform negative per positive, early stopping
on validation Recall@20 (never on test). Seeded and deterministic on CPU.

`fit` is the one implementation: base training and Retrain (from scratch on the retain
set) both call it. Given a `resume` folder it snapshots the run there every
`checkpoint_every` epochs (weights, Adam and scheduler state, the random generators, the
best model so far, the history) and a killed run called again continues from the last
snapshot to the bit-identical result of an uninterrupted run. The snapshot holds tensors
(safetensors) and JSON, no pickled objects, and is only used when it was written for the
same model, recipe, seed and data.

`train_steps` is the mini-batch loop (loss, backward, optimiser step): fit's epochs run it,
and so do the unlearning passes that step on the model's own loss (repair, gradient ascent).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tru.config import TrainParams
from tru.data.dataset import group_by_user
from tru.io import atomic_path, read_json, write_json
from tru.metrics import ranked_metrics_batched
from tru.models.base import Recommender


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed every generator and make torch deterministic: two runs, one checkpoint hash."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    # the same switch as torch.use_deterministic_algorithms(True) for eager code, without the
    # import of torch._inductor's config that the public call makes (about 3.5 s in every
    # process; nothing here is compiled). tests/test_train.py checks the switch is on.
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    # deterministic mode also NaN-fills every new empty tensor; our kernels never read
    # uninitialised memory, and the fill costs a sizeable share of each step. (The type stubs miss
    # the attribute: torch.utils.deterministic defines it as a property of its module's class.)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    if threads is not None:
        torch.set_num_threads(threads)


@dataclass
class EvalSet:
    """Users to rank, their positives and the items masked for them (their training items)."""

    users: np.ndarray
    positives: list[np.ndarray]
    exclude: list[np.ndarray]

    @classmethod
    def build(cls, eval_pairs: np.ndarray, exclude_pairs: np.ndarray, n_users: int) -> EvalSet:
        """Every user with at least one `eval_pairs` row; their `exclude_pairs` items masked."""
        pos = group_by_user(eval_pairs, n_users)
        exc = group_by_user(exclude_pairs, n_users)
        users = np.array([u for u in range(n_users) if len(pos[u])], dtype=np.int64)
        return cls(users, [pos[u] for u in users], [exc[u] for u in users])


def evaluate(model: Recommender, eval_set: EvalSet, ks=(10, 20), batch_users: int = 4096) -> dict:
    """Full-ranking Recall and NDCG at each k of `ks` over `eval_set` ({"recall@k": ..., ...});
    the model's train/eval mode is left as it was."""
    was_training = model.training
    model.eval()
    try:
        score = model.score_fn()
        return ranked_metrics_batched(score, eval_set.users, eval_set.positives, eval_set.exclude, ks, batch_users)
    finally:
        model.train(was_training)


class NegativeSampler:
    """Uniform negatives among candidate items the user has not interacted with in training."""

    def __init__(self, pairs: np.ndarray, n_items: int, candidates: np.ndarray | None = None):
        self.n_items = n_items
        self.keys = np.unique(pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1])
        self.candidates = np.arange(n_items) if candidates is None else np.asarray(candidates, dtype=np.int64)

    def known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a training pair: a binary search in the sorted keys
        (np.isin would hash all the keys again on every call)."""
        q = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        if len(self.keys) == 0:
            return np.zeros(q.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q

    def sample(self, users: np.ndarray, rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
        """One negative item per entry of `users`, drawn from `rng` (clashes with training pairs
        redrawn, `max_rounds` times at most)."""
        neg = self.candidates[rng.integers(0, len(self.candidates), size=len(users))]
        for _ in range(max_rounds):
            clash = self.known(users, neg)
            if not clash.any():
                break
            neg[clash] = self.candidates[rng.integers(0, len(self.candidates), size=int(clash.sum()))]
        return neg


class Resume:
    """A training run's snapshot folder: `state.safetensors` + `state.json`.

    `fingerprint` names everything the run's result depends on; a snapshot with another one
    (another model, recipe, seed or data) is never used, and is replaced by the next one.
    """

    TENSORS, META = "state.safetensors", "state.json"

    def __init__(self, folder: str | Path, fingerprint: str = ""):  # no fingerprint: only to clear
        self.folder, self.fingerprint = Path(folder), fingerprint

    def load(self) -> tuple[dict, dict] | None:
        """(meta, tensors) of the folder's snapshot, or None when there is none of this run."""
        if not (self.folder / self.META).is_file() or not (self.folder / self.TENSORS).is_file():
            return None
        meta = read_json(self.folder / self.META)
        if meta.get("fingerprint") != self.fingerprint:
            print(
                f"{self.folder}: snapshot of another run (model, recipe, seed or data differ): starting afresh",
                flush=True,
            )
            return None
        return meta, load_file(str(self.folder / self.TENSORS))

    def save(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Replace the folder's snapshot with `meta` (JSON) and `tensors`, atomically."""
        with atomic_path(self.folder) as tmp:
            tmp.mkdir(parents=True)
            save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp / self.TENSORS))
            write_json(tmp / self.META, {"fingerprint": self.fingerprint, **meta})

    def clear(self) -> None:
        """Remove the snapshot folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def run_fingerprint(
    model: Recommender,
    train_pairs: np.ndarray,
    valid_set: EvalSet | None,
    params: TrainParams,
    seed: int,
    candidates: np.ndarray | None,
) -> str:
    """sha256 over what a training run's result depends on (not how often it snapshots)."""
    h = hashlib.sha256(
        json.dumps({"model": model.config(), "train": params.recipe(), "seed": seed}, sort_keys=True).encode()
    )
    parts = [np.ascontiguousarray(train_pairs, dtype=np.int64)]
    if valid_set is not None:
        parts += [valid_set.users, *valid_set.positives, *valid_set.exclude]
    if candidates is not None:
        parts.append(candidates)
    for a in parts:
        a = np.ascontiguousarray(a, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _snapshot(model, opt, sched, rng, state: dict, best_state: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    opt_sd = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    tensors["torch_rng"] = torch.get_rng_state()
    tensors.update({f"model_rng.{k}": v for k, v in model.generator_states().items()})
    opt_meta = {}
    for i, st in opt_sd["state"].items():
        opt_meta[str(i)] = sorted(st)
        tensors.update({f"opt.{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v) for k, v in st.items()})
    meta = {
        **state,
        "rng": rng.bit_generator.state,
        "scheduler": sched.state_dict(),
        "optimizer": {"param_groups": opt_sd["param_groups"], "state_keys": opt_meta},
    }
    return meta, tensors


def _restore(model, opt, sched, rng, meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Load a snapshot into the run; returns the best model's state."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    state = {int(i): {k: tensors[f"opt.{i}.{k}"] for k in keys} for i, keys in meta["optimizer"]["state_keys"].items()}
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    rng.bit_generator.state = meta["rng"]
    torch.set_rng_state(tensors["torch_rng"])
    model.set_generator_states({k[10:]: v for k, v in tensors.items() if k.startswith("model_rng.")})
    return best_state


@dataclass
class FitResult:
    """What `fit` returns: the model at its best epoch, that epoch and its validation metrics,
    one row per epoch run, and the training seconds."""

    model: Recommender
    best_epoch: int
    best_valid: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0  # the snapshot's epoch a resumed run continued after (0: a fresh run)
    resumed_seconds: float = 0.0  # training seconds the snapshot had recorded (before this process)


def train_steps(
    model: Recommender,
    opt: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ascent: bool = False,
    after_step: Callable[[], None] | None = None,
) -> tuple[float, int, dict[str, float]]:
    """One optimiser step on `model.loss` per (users, positives, negatives) batch: descent, or
    ascent with `ascent`; `after_step()` runs after every step. The model's mode is the
    caller's. Returns the sum of the batch losses, the number of steps and the sums of the
    loss parts."""
    total, steps = 0.0, 0
    parts_sum: dict[str, float] = {}
    for users, pos, neg in batches:
        loss, parts = model.loss(users, pos, neg)
        opt.zero_grad(set_to_none=True)
        (-loss if ascent else loss).backward()
        opt.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach())
        steps += 1
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v
    return total, steps, parts_sum


def _epoch_batches(
    pairs: np.ndarray, sampler: NegativeSampler, rng: np.random.Generator, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """fit's epoch: `pairs` shuffled, one negative per pair drawn for the whole epoch at once,
    then sliced into batches of index tensors."""
    order = rng.permutation(len(pairs))
    users_all = pairs[order, 0]
    items_all = pairs[order, 1]
    negs_all = sampler.sample(users_all, rng)
    for s in range(0, len(order), batch_size):
        yield (
            torch.as_tensor(users_all[s : s + batch_size]),
            torch.as_tensor(items_all[s : s + batch_size]),
            torch.as_tensor(negs_all[s : s + batch_size]),
        )


def _progress_line(
    desc: str, row: dict, max_epochs: int, best_epoch: int, best_key: float, history: list[dict], seconds: float
) -> str:
    per_epoch = sorted(h["seconds"] for h in history)[len(history) // 2]
    valid = (
        f", valid R@20 {row['valid_recall@20']:.4f} (best {best_key:.4f} at epoch {best_epoch})"
        if "valid_recall@20" in row
        else ""
    )
    return (
        f"{desc}: epoch {row['epoch']}/{max_epochs}, loss {row['loss']:.4f}{valid}, "
        f"{per_epoch:.1f} s per epoch, {seconds / 60:.1f} min so far"
    )


def fit(
    model: Recommender,
    train_pairs: np.ndarray,
    valid_set: EvalSet | None,
    params: TrainParams,
    seed: int,
    candidates: np.ndarray | None = None,
    progress: bool = True,
    desc: str = "train",
    resume: str | Path | None = None,
) -> FitResult:
    """Train `model` on `train_pairs` (graph set from them) with early stopping on valid Recall@20.

    Returns the model at its best validation epoch. With max_epochs = 0 the model is returned as is.
    With `resume` (a folder), a snapshot is written there every `params.checkpoint_every`
    epochs and a run with the same inputs continues from it; the caller clears it
    (`Resume.clear`) once the result is saved.
    """
    t0 = time.perf_counter()
    seed_everything(seed, params.threads)
    rng = np.random.default_rng(seed)
    model.set_graph(train_pairs, None if candidates is None else np.isin(np.arange(model.n_items), candidates))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=params.lr, fused=True)  # fused: ~12% faster steps on CPU
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: params.lr_decay ** (e / params.lr_decay_every))
    sampler = NegativeSampler(train_pairs, model.n_items, candidates)
    best_state = copy.deepcopy(model.state_dict())
    best_epoch, best_valid, best_key = 0, {}, -1.0
    history: list[dict] = []
    bad, start, elapsed = 0, 1, 0.0
    snap = None
    if resume is not None and params.checkpoint_every > 0:
        snap = Resume(resume, run_fingerprint(model, train_pairs, valid_set, params, seed, candidates))
        found = snap.load()
        if found is not None:
            meta, tensors = found
            best_state = _restore(model, opt, sched, rng, meta, tensors)
            best_epoch, best_valid, best_key = meta["best_epoch"], meta["best_valid"], meta["best_key"]
            history, bad, elapsed = meta["history"], meta["bad"], meta["seconds"]
            start = meta["epoch"] + 1
            print(f"{desc}: resuming after epoch {meta['epoch']} from {snap.folder}", flush=True)
    bar = tqdm(
        range(start, params.max_epochs + 1),
        desc=desc,
        unit="epoch",
        disable=not progress or None,
        dynamic_ncols=True,
        leave=False,
        initial=start - 1,
        total=params.max_epochs,
    )
    # no bar when the output is not a terminal (a log file: the grid's base models train for
    # hours there): a plain line every `checkpoint_every` (else 10) epochs and at the stop instead
    log_every = (params.checkpoint_every or 10) if progress and bar.disable else 0
    for epoch in bar:
        e0 = time.perf_counter()
        total, n_batches, parts_sum = train_steps(
            model, opt, _epoch_batches(train_pairs, sampler, rng, params.batch_size)
        )
        sched.step()
        # "seconds" is the training pass alone (as MMRec reports it); validation is timed apart
        row = {"epoch": epoch, "loss": total / max(n_batches, 1), "seconds": time.perf_counter() - e0}
        row.update({k: v / max(n_batches, 1) for k, v in parts_sum.items()})
        if valid_set is not None and epoch % params.eval_every == 0:
            v0 = time.perf_counter()
            metrics = evaluate(model, valid_set, ks=(20,), batch_users=params.eval_batch_users)
            row["eval_seconds"] = time.perf_counter() - v0
            row["valid_recall@20"] = metrics["recall@20"]
            row["valid_ndcg@20"] = metrics["ndcg@20"]
            if metrics["recall@20"] > best_key:
                best_key, best_epoch, best_valid, bad = metrics["recall@20"], epoch, metrics, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            bar.set_postfix(loss=f"{row['loss']:.4f}", valid_r20=f"{metrics['recall@20']:.4f}", best=best_epoch)
        else:
            if valid_set is None:  # no validation: the last epoch is the model
                best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        history.append(row)
        if log_every and (epoch % log_every == 0 or bad >= params.patience or epoch == params.max_epochs):
            print(
                _progress_line(
                    desc, row, params.max_epochs, best_epoch, best_key, history, elapsed + time.perf_counter() - t0
                ),
                flush=True,
            )
        if bad >= params.patience:
            break
        if snap is not None and epoch % params.checkpoint_every == 0:
            state = {
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_valid": best_valid,
                "best_key": best_key,
                "bad": bad,
                "history": history,
                "seconds": elapsed + time.perf_counter() - t0,
            }
            snap.save(*_snapshot(model, opt, sched, rng, state, best_state))
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, best_epoch, best_valid, history, elapsed + time.perf_counter() - t0, start - 1, elapsed)
