"""Per-field checks of request rows, and the messages a person reads when a row is rejected.

The checks run on a chunk's columns (object arrays, one per field of FIELDS) and write into
`msgs` (field -> object array, None where the field is fine); the first problem found for a
field of a row is the one kept. In order:
1. `clean_values`: every value must be a string (an empty string counts as missing);
2. `SchemaValidator`: presence, formats and lengths of the ids, kind and time, with Great
   Expectations (the requester's free-text `reason` is never a reason to reject: ingest
   stores it truncated to MAX_REASON_LEN characters);
3. `kind_rules`: which ids each kind requires, or forbids.
Whether the targets exist (dataset, ledger) is decided later, in `tru.requests.ingest`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd

from tru.data.validate import import_gx
from tru.requests.readers import json_type
from tru.requests.schema import (
    FIELDS,
    ID_REGEX,
    KINDS,
    MAX_ID_LEN,
    NEEDS_ITEM,
    NEEDS_USER,
    PATHLIKE_REGEX,
    REQUEST_ID_REGEX,
)


def clean_values(values: np.ndarray, field_: str, msgs: dict[str, np.ndarray]) -> np.ndarray:
    """Strings stay (empty -> None); anything else is a type error for that row.

    In: the raw values of one field; out: the cleaned values (str or None). Type errors go
    into `msgs[field_]`."""
    out = np.empty(len(values), dtype=object)
    bad = msgs[field_]
    for i, v in enumerate(values):
        if v is None or v == "":
            out[i] = None
        elif type(v) is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    bad[i] = f"{field_} holds an invalid character (a lone surrogate)"
                    out[i] = None
                    continue
            out[i] = v
        else:
            if isinstance(v, float) and v != v:  # NaN from a null in a frame
                out[i] = None
                continue
            bad[i] = f"{field_} must be a string, not {json_type(v)}"
            out[i] = None
    return out


def _show_kind(v: object) -> str:
    """Echo a bad kind only when it cannot carry personal data (short lowercase word)."""
    if isinstance(v, str) and 0 < len(v) <= 20 and v.replace("_", "").isalpha() and v.isascii():
        return f"kind '{v}'"
    return "kind"


def _request_id_problem(v: str) -> str:
    if len(v) > MAX_ID_LEN:
        return f"request_id is longer than {MAX_ID_LEN} characters"
    if re.search(PATHLIKE_REGEX, v):
        return "request_id must not look like a path (no '..', no leading '.')"
    return "request_id may only contain letters, digits and . _ : -"


def _id_problem(field_: str, v: str) -> str:
    if len(v) > MAX_ID_LEN:
        return f"{field_} is longer than {MAX_ID_LEN} characters"
    return f"{field_} must be printable characters without leading or trailing spaces"


def _expectations():
    """(field, column checked, GX expectation class, kwargs, message(row) -> str).

    GX finds the failing rows; the message explains the failure for each of them (row:
    the cleaned values of the row plus `absent`, the columns its file lacks). Which ids a
    kind requires is checked apart, vectorised (`kind_rules`): as GX row conditions those
    four checks cost a third of the validation time at 1M rows."""
    kinds = ", ".join(KINDS)

    def missing(field_):
        return lambda r: f"missing column {field_}" if field_ in r["absent"] else f"{field_} is missing"

    def ident(field_):
        return (
            field_,
            field_,
            "ExpectColumnValuesToMatchRegex",
            {"regex": ID_REGEX},
            lambda r: _id_problem(field_, r[field_]),
        )

    return [
        ("request_id", "request_id", "ExpectColumnValuesToNotBeNull", {}, missing("request_id")),
        (
            "request_id",
            "request_id",
            "ExpectColumnValuesToMatchRegex",
            {"regex": REQUEST_ID_REGEX},
            lambda r: _request_id_problem(r["request_id"]),
        ),
        ("kind", "kind", "ExpectColumnValuesToNotBeNull", {}, missing("kind")),
        (
            "kind",
            "kind",
            "ExpectColumnValuesToBeInSet",
            {"value_set": list(KINDS)},
            lambda r: f"{_show_kind(r['kind'])} is not one of {kinds}",
        ),
        ident("user_id"),
        ident("item_id"),
        (
            "received_at",
            "received_at_utc",
            "ExpectColumnValuesToNotBeNull",
            {},
            lambda r: (
                missing("received_at")(r) if r["received_at"] is None else "received_at is not an ISO-8601 timestamp"
            ),
        ),
    ]


class SchemaValidator:
    """One GX ephemeral context and suite (the deletion-request schema), built once and run on
    every chunk. Building it imports Great Expectations (seconds)."""

    def __init__(self) -> None:
        gx, gxe, ProgressBarsConfig = import_gx()
        self.specs = _expectations()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_pandas(name="requests")
        batch_definition = source.add_dataframe_asset(name="chunk").add_batch_definition_whole_dataframe("chunk")
        suite = context.suites.add(gx.ExpectationSuite(name="deletion_requests"))
        for i, (_field, column, factory, kwargs, _message) in enumerate(self.specs):
            exp = getattr(gxe, factory)(column=column, **kwargs, meta={"spec": i})
            suite.add_expectation(exp)
        self.definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="deletion_requests", data=batch_definition, suite=suite)
        )

    def failures(self, frame: pd.DataFrame) -> Iterator[tuple[int, np.ndarray]]:
        """In: the cleaned FIELDS plus `received_at_utc` (index = row position in the chunk).
        Out: (spec index, failing row positions) for every failed expectation."""
        outcome = self.definition.run(
            batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"}
        )
        for r in outcome.results:
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"request validation could not run {r.expectation_config.type}: "
                    f"{r.exception_info.get('exception_message')}"
                )
            if r.success:
                continue
            spec = int(r.expectation_config.meta["spec"])
            idx = np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype=np.int64)
            yield spec, idx

    def record_problems(
        self, frame: pd.DataFrame, clean: dict[str, np.ndarray], absent: np.ndarray, msgs: dict[str, np.ndarray]
    ) -> None:
        """Run the suite on `frame` (as for `failures`) and write each failing row's message
        into `msgs`, where its field has none yet. `clean`: the chunk's cleaned values per
        field; `absent`: per row, the FIELDS its file lacks (comma-separated)."""
        for spec, idx in self.failures(frame):
            field_, _, _, _, message = self.specs[spec]
            slot = msgs[field_]
            for i in idx:
                if slot[i] is None:
                    row = {f: clean[f][i] for f in FIELDS}
                    row["absent"] = absent[i].split(",") if isinstance(absent[i], str) else ()
                    slot[i] = message(row)


def kind_rules(
    clean: dict[str, np.ndarray], absent: np.ndarray, has_pre: np.ndarray, msgs: dict[str, np.ndarray]
) -> None:
    """user_id is required for user/interaction and must be empty for item; item_id is
    required for item/interaction and must be empty for user (first message per field wins).

    In: the cleaned values per field, per row the FIELDS its file lacks and whether the row
    was already rejected while reading; writes into `msgs`."""
    kind = clean["kind"].astype(str)
    for field_, needs, forbidden in (("user_id", NEEDS_USER, "item"), ("item_id", NEEDS_ITEM, "user")):
        # numpy's stubs reject None as an operand; at run time it compares elementwise
        present = np.not_equal(clean[field_], None)  # type: ignore[call-overload]
        slot = msgs[field_]
        free = np.equal(slot, None) & ~has_pre  # type: ignore[call-overload]
        for i in np.flatnonzero(np.isin(kind, needs) & ~present & free):
            lacks = isinstance(absent[i], str) and field_ in absent[i].split(",")
            slot[i] = f"missing column {field_}" if lacks else f"{field_} is required for kind {kind[i]}"
        for i in np.flatnonzero((kind == forbidden) & present & free):
            slot[i] = f"{field_} must be empty for kind {forbidden}"
