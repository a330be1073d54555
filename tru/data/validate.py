"""Data expectations on a split (Great Expectations 1.x, ephemeral context).

Great Expectations takes seconds to import, so it is imported only when a suite is built
(`import_gx`, which the deletion-request checks use too); importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tru.errors import ValidationFailed

SPLIT_NAMES = ("train", "valid", "test")


def import_gx():
    """Import Great Expectations (seconds; analytics off) and return the three names every
    suite here is built from: (`great_expectations`, `great_expectations.expectations`,
    `ProgressBarsConfig`)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"  # offline machine: never phone home
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return gx, gxe, ProgressBarsConfig


def run_expectations(prefix: str, frames: dict[str, tuple[pd.DataFrame, list]]):
    """Validate each named frame against its expectations in one ephemeral GX context;
    yields (name, validation result). Progress bars off: this runs inside pipeline stages."""
    gx, _, ProgressBarsConfig = import_gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(name=prefix)
    for name, (frame, expectations) in frames.items():
        batch_definition = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=f"{prefix}_{name}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{prefix}_{name}", data=batch_definition, suite=suite)
        )
        yield name, definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


def _describe(result, ranges: dict[str, tuple[float, float]]) -> str:
    cfg = result.expectation_config
    kind = cfg.type
    kw = cfg.kwargs
    info = result.result or {}
    bad = info.get("unexpected_count")
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{kind} could not be evaluated: {result.exception_info.get('exception_message')}"
    if kind == "expect_compound_columns_to_be_unique":
        cols = ", ".join(kw["column_list"])
        return f"{kind}({cols}) — {bad} rows share a ({cols}) pair with another row"
    col = kw.get("column")
    sample = info.get("partial_unexpected_list") or []
    example = f" (e.g. {sample[:5]})" if sample else ""
    if kind == "expect_column_values_to_be_between":
        low, high = ranges[col]
        return f"{kind}({col}) — {bad} rows out of range {_fmt_range(low, high)}{example}"
    if kind == "expect_column_values_to_be_in_set" and col == "has_train":
        return f"{kind}({col}) — {bad} valid/test rows belong to users with no training rows"
    if kind == "expect_column_values_to_be_in_set":
        return f"{kind}({col}) — {bad} rows not in {list(kw['value_set'])}{example}"
    return f"{kind}({col or ''}) — {bad} unexpected rows"


def _fmt_range(low: float, high: float) -> str:
    if float(high).is_integer() and float(low).is_integer():  # id ranges: [0, n)
        return f"[{int(low)}, {int(high) + 1})"
    return f"[{low:g}, {high:g}]"


def validate_split(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    test: pd.DataFrame,
    n_users: int,
    n_items: int,
    fractions: Sequence[float] | None,
    tolerance: float,
) -> None:
    """Raise ValidationFailed unless the split (frames with `user`, `item` columns) holds:

    - user ids in [0, n_users) and item ids in [0, n_items);
    - no (user, item) pair twice in the whole split (train, valid and test together);
    - every user with valid or test rows has at least one training row;
    - the realised fractions of rows per split lie within `tolerance` of `fractions`.
      Pass fractions=None to skip this check: a split given by the dataset (MMRec x_label)
      is authoritative, whatever its proportions.

    The message names each failed expectation and how many rows broke it.
    """
    _, gxe, _ = import_gx()
    parts = {"train": train, "valid": valid, "test": test}
    pairs = pd.concat(
        [
            pd.DataFrame({"user": df["user"].to_numpy(np.int64), "item": df["item"].to_numpy(np.int64)})
            for df in parts.values()
        ],
        ignore_index=True,
    )
    train_users = np.unique(train["user"].to_numpy(np.int64))
    heldout_users = np.concatenate([valid["user"].to_numpy(np.int64), test["user"].to_numpy(np.int64)])
    has_train = np.isin(heldout_users, train_users)
    heldout = pd.DataFrame({"user": heldout_users, "has_train": has_train})

    frames: dict[str, tuple[pd.DataFrame, list]] = {}
    ranges: dict[str, tuple[float, float]] = {"user": (0, n_users - 1), "item": (0, n_items - 1)}
    frames["pairs"] = (
        pairs,
        [
            gxe.ExpectColumnValuesToBeBetween(column="user", min_value=0, max_value=n_users - 1),
            gxe.ExpectColumnValuesToBeBetween(column="item", min_value=0, max_value=n_items - 1),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["user", "item"]),
        ],
    )
    frames["heldout"] = (heldout, [gxe.ExpectColumnValuesToBeInSet(column="has_train", value_set=[True])])
    realised = {}
    if fractions is not None:
        total = max(1, len(pairs))
        realised = {s: len(parts[s]) / total for s in SPLIT_NAMES}
        frac = pd.DataFrame(
            {
                "split": list(SPLIT_NAMES),
                "fraction_deviation": [abs(realised[s] - t) for s, t in zip(SPLIT_NAMES, fractions)],
            }
        )
        ranges["fraction_deviation"] = (0.0, tolerance)
        frames["fractions"] = (
            frac,
            [gxe.ExpectColumnValuesToBeBetween(column="fraction_deviation", min_value=0.0, max_value=tolerance)],
        )

    failures = []
    for name, outcome in run_expectations("split", frames):
        failures += [_describe(r, ranges) for r in outcome.results if not r.success]
        if name == "heldout" and not outcome.success:
            users = np.unique(heldout_users[~has_train])
            failures[-1] += f" ({len(users)} users, e.g. {users[:5].tolist()})"
        if name == "fractions" and not outcome.success:
            assert fractions is not None  # the fractions frame exists only when fractions are given
            got = ", ".join(f"{s} {realised[s]:.3f} (target {t:g})" for s, t in zip(SPLIT_NAMES, fractions))
            failures[-1] += f": realised {got}, tolerance {tolerance:g}"
    if failures:
        raise ValidationFailed("split validation failed: " + "; ".join(failures))
