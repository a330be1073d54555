"""The ML-100k knowledge graph and the repair of its item -> entity link.

RecBole's `ml-100k.link` (recbole 1.2.1, also hopwise) keys entities by ML-20M/ml-latest
movieIds, not ML-100k item ids: read as shipped, item 2 (GoldenEye) gets Jumanji's entity
and item 127 (The Godfather) a Tunisian film (RUCAIBox/RecSysDatasets issue #130). The
repair re-keys the file through titles: movieId -> (title, year) from ml-latest-small
(same id space), then (title, year) -> ML-100k item. ML-100k has duplicate titles (the
same film under two ids), so an entity can link to several items; it is never the other
way round (an item whose title+year matches two entities is left unlinked).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd

from tru.errors import DataError

LINK_COLUMNS = ["item_id", "entity_id"]
KG_COLUMNS = ["head_id", "relation_id", "tail_id"]

# Articles that ML titles move to the end ("Usual Suspects, The", "Postino, Il",
# "Uomo delle stelle, L'"); stripped on both sides, leading or trailing.
_ARTICLES = r"(?:the|a|an|les|la|le|l'|il|lo|gli|i|das|der|die|den|det|el|los|las|un|une)"
_TRAILING_ARTICLE = re.compile(r",\s*" + _ARTICLES + r"$")
_LEADING_ARTICLE = re.compile(r"^" + _ARTICLES + r"\s+")
_LEADING_AKA = re.compile(r"^a\.?k\.?a\.?\s+")
_INNER_PARENS = re.compile(r"\(([^()]*)\)")
_SUBTITLE = re.compile(r"\s*(?::|\s-\s)\s*")


def read_atomic(path: str | Path) -> pd.DataFrame:
    """A RecBole atomic file (tab-separated, header `name:type`) as strings, `:type` stripped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (run the fetch stage first)")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a tab-separated RecBole atomic file ({err.__class__.__name__})") from None
    df.columns = [str(c).split(":", 1)[0] for c in df.columns]
    return df


def _require(df: pd.DataFrame, columns: list[str], path: Path | str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    return df[columns]


def read_link(path: str | Path) -> pd.DataFrame:
    """`<name>.link` as columns item_id, entity_id (strings, ids exactly as in the file)."""
    return _require(read_atomic(path), LINK_COLUMNS, path)


def read_kg(path: str | Path) -> pd.DataFrame:
    """`<name>.kg` as columns head_id, relation_id, tail_id (strings)."""
    return _require(read_atomic(path), KG_COLUMNS, path)


def parse_year(value) -> int | None:
    """A release year, or None for missing or junk values (ML-100k has one `unkonwn`)."""
    try:
        year = int(float(value))
    except (TypeError, ValueError):
        return None
    return year if 1800 <= year <= 2100 else None


_TITLE_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)\s*$")


def item_title_year(title: str, year) -> tuple[str, int | None]:
    """An ML-100k item's (title, year), repairing rows whose year is junk.

    Item 1412 reads "Land Before Time III: The Time of the Great Giving (1995)" with year
    "V" (a video release): the year is taken from the title. Item 267 is "unkonwn" in
    both columns and stays without a year.
    """
    title = str(title)
    y = parse_year(year)
    if y is None and (m := _TITLE_YEAR.match(title)) and parse_year(m.group(2)) is not None:
        return m.group(1), int(m.group(2))
    return title, y


def _clean(text: str) -> str:
    s = text.strip().lower()
    s = _LEADING_AKA.sub("", s)
    s = _TRAILING_ARTICLE.sub("", s)
    s = _LEADING_ARTICLE.sub("", s)
    s = s.replace("&", " and ").replace("+", " and ")
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return " ".join(s.split())


def title_keys(title: str) -> tuple[str, list[str]]:
    """(primary key, alternate keys) of a movie title, for matching across MovieLens releases.

    Primary: the title without any parenthetical, accents folded, lowercased, articles
    dropped ("Usual Suspects, The" and "The Usual Suspects" -> "usual suspects"),
    punctuation removed. Alternates: each parenthetical ("Seven (Se7en)", "(a.k.a. ...)",
    foreign titles) and each part of a subtitled title ("Star Wars: Episode IV - A New
    Hope" -> "star wars", "episode iv", "new hope"), so a film titled differently in the
    two releases can still match.
    """
    s = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode()
    parens: list[str] = []
    while True:  # innermost first, so nested parentheses ("En avoir (ou pas)") unwind
        found = _INNER_PARENS.findall(s)
        if not found:
            break
        parens.extend(found)
        s = _INNER_PARENS.sub(" ", s)
    s = s.replace("(", " ").replace(")", " ")
    primary = _clean(s)
    alternates: list[str] = []
    for part in [*_SUBTITLE.split(s), *parens]:
        key = _clean(part)
        if key and key != primary and key not in alternates:
            alternates.append(key)
    return primary, alternates


def repair_links(link_df: pd.DataFrame, ml20m_titles_df: pd.DataFrame, ml100k_items_df: pd.DataFrame) -> pd.DataFrame:
    """Re-key the shipped link file to ML-100k items by title + year.

    link_df: item_id (an ML-20M movieId, as shipped), entity_id.
    ml20m_titles_df: movieId, title, year (ml-latest-small, the same id space).
    ml100k_items_df: item_id, movie_title, release_year (ML-100k `.item`).
    Returns item_id (ML-100k raw id, str), entity_id, one row per linked item, sorted by
    item id. Pass 1 matches primary key + year; pass 2, for links and items pass 1 left
    over, matches any key of one side to any key of the other (same year), accepted only
    when it names exactly one film.
    """
    link_df = _require(link_df, LINK_COLUMNS, "link table")
    ml20m_titles_df = _require(ml20m_titles_df, ["movieId", "title", "year"], "ml-latest titles table")
    ml100k_items_df = _require(ml100k_items_df, ["item_id", "movie_title", "release_year"], "ML-100k item table")

    movie_key: dict[str, tuple[str, list[str], int]] = {}
    for movie_id, title, year in ml20m_titles_df.itertuples(index=False):
        y = parse_year(year)
        if y is not None and pd.notna(movie_id):
            primary, alternates = title_keys(title)
            movie_key[str(int(movie_id))] = (primary, alternates, y)

    # ML-100k films: (primary key, year) -> items (duplicate titles share a film)
    films: dict[tuple[str, int], list[str]] = {}
    film_alternates: dict[tuple[str, int], list[str]] = {}
    for item_id, raw_title, raw_year in ml100k_items_df.itertuples(index=False):
        title, y = item_title_year(raw_title, raw_year)
        if y is None:
            continue
        primary, alternates = title_keys(title)
        films.setdefault((primary, y), []).append(str(item_id))
        film_alternates[(primary, y)] = alternates

    entity_of: dict[tuple[str, int], set[str]] = {}  # film -> candidate entities
    leftover: list[tuple[str, str, list[str], int]] = []
    for movie_id, entity in link_df.itertuples(index=False):
        key = movie_key.get(str(movie_id).strip())
        if key is None:  # movieId not in ml-latest-small: no title to match by
            continue
        primary, alternates, y = key
        if (primary, y) in films:
            entity_of.setdefault((primary, y), set()).add(entity)
        else:
            leftover.append((entity, primary, alternates, y))

    # pass 2: any key against any key, among films pass 1 did not link
    index: dict[tuple[str, int], set[tuple[str, int]]] = {}
    for film, alternates in film_alternates.items():
        if film in entity_of:
            continue
        for k in [film[0], *alternates]:
            index.setdefault((k, film[1]), set()).add(film)
    second: dict[tuple[str, int], set[str]] = {}
    for entity, primary, alternates, y in leftover:
        hits = set().union(*(index.get((k, y), set()) for k in [primary, *alternates]))
        if len(hits) == 1:
            second.setdefault(hits.pop(), set()).add(entity)
    for film, entities in second.items():
        entity_of.setdefault(film, set()).update(entities)

    rows = [
        (item, next(iter(entities)))
        for film, entities in entity_of.items()
        if len(entities) == 1  # ambiguous: two entities claim one film, link neither
        for item in films[film]
    ]
    out = pd.DataFrame(rows, columns=LINK_COLUMNS)
    order = out["item_id"].map(lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))
    return out.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def kg_tails(kg_df: pd.DataFrame, links: pd.DataFrame) -> dict[str, set[str]]:
    """Item raw id -> {"relation=tail"} over the triples whose head is the item's entity.

    Only linked items whose entity heads at least one triple appear; the KG also holds
    triples that point at films (film.producer.film ...), which are not used here.
    """
    kg_df = _require(kg_df, KG_COLUMNS, "kg table")
    links = _require(links, LINK_COLUMNS, "link table")
    wanted = set(links["entity_id"])
    heads = kg_df[kg_df["head_id"].isin(wanted)]
    tokens = heads["relation_id"] + "=" + heads["tail_id"]
    by_entity: dict[str, set[str]] = {}
    for head, token in zip(heads["head_id"], tokens):
        by_entity.setdefault(head, set()).add(token)
    return {str(item): by_entity[entity] for item, entity in links.itertuples(index=False) if entity in by_entity}
