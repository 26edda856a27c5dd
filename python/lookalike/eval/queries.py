"""Labelled query sets for offline evaluation: JSONL, one query a line.

    {"id": "q1", "image": "photos/red_dress.jpg", "relevant_ids": [12, 40]}
    {"id": "q2", "text": "red dress", "relevant_category": "dresses"}
    {"id": "q3", "image": "photos/red_dress.jpg", "text": "in blue", "relevant_ids": [7], "using": "joint"}

- `image` is a path relative to the query file's folder; `text` is words; both
  make a hybrid query. The query's kind (image / text / hybrid) follows.
- Exactly one of `relevant_ids` (product ids) and `relevant_category` (every
  product whose category attribute holds that value is relevant).
- `using` (optional) names the vector space; otherwise the server chooses.
- `item` (optional) is the product id the query was made from, as the emoji
  catalog (eval/catalogs.py) writes it; it is not a label, but `lookalike train`
  keeps a product and the queries made from it on one side of its split.
Blank lines are skipped; anything else that is wrong is a QueryFileError
naming the file, the line and the problem. Unknown keys are errors too: a
misspelt "relevant_id" must not silently drop a query's labels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

KINDS = ("image", "text", "hybrid")
_KEYS = {"id", "image", "text", "relevant_ids", "relevant_category", "using", "item"}


class QueryFileError(ValueError):
    """A query file that cannot be evaluated; the message names file and line."""


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    line: int                          # 1-based line in the file, for messages
    image: Path | None                 # resolved against the file's folder
    text: str | None
    relevant_ids: frozenset[int] | None
    relevant_category: str | None
    using: str = ""
    item: int | None = None            # the product the query was made from, if any

    @property
    def kind(self) -> str:
        return "hybrid" if self.image and self.text else "image" if self.image else "text"


def load_queries(path: str | os.PathLike[str]) -> list[LabelledQuery]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise QueryFileError(f"{path}: cannot read the query file ({e})") from e
    queries, seen = [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        query = _parse(line, path, number)
        if query.id in seen:
            raise QueryFileError(f"{path}, line {number}: id {query.id!r} repeats the query of line {seen[query.id]}")
        seen[query.id] = number
        queries.append(query)
    if not queries:
        raise QueryFileError(f"{path}: no queries in the file")
    return queries


def _parse(line: str, path: Path, number: int) -> LabelledQuery:
    def fail(problem: str) -> QueryFileError:
        return QueryFileError(f"{path}, line {number}: {problem}")

    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise fail(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise fail(f"a query is a JSON object, got {type(data).__name__}")
    unknown = set(data) - _KEYS
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(_KEYS))})")
    id_ = data.get("id")
    if isinstance(id_, bool) or not isinstance(id_, (str, int)) or id_ == "":
        raise fail("'id' is required: a non-empty string (or an integer)")
    image, text = data.get("image"), data.get("text")
    if image is None and text is None:
        raise fail("give 'image' (a path), 'text' (words) or both")
    if image is not None:
        if not isinstance(image, str) or not image:
            raise fail("'image' must be a path (a non-empty string)")
        image = path.parent / image
        if not image.is_file():
            raise fail(f"image {image} does not exist")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise fail("'text' must be non-empty words")
    ids, category = data.get("relevant_ids"), data.get("relevant_category")
    if (ids is None) == (category is None):
        raise fail("give exactly one of 'relevant_ids' and 'relevant_category'")
    if ids is not None:
        if not isinstance(ids, list) or not ids:
            raise fail("'relevant_ids' must be a non-empty list of product ids")
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i < 0]
        if bad:
            raise fail(f"'relevant_ids' holds what is not a product id (an integer >= 0): {bad[:5]}")
        ids = frozenset(ids)
    if category is not None and (not isinstance(category, str) or not category):
        raise fail("'relevant_category' must be a non-empty string")
    using = data.get("using", "")
    if not isinstance(using, str):
        raise fail("'using' must be a space name (a string)")
    item = data.get("item")
    if item is not None and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
        raise fail(f"'item' must be a product id (an integer >= 0), got {item!r}")
    return LabelledQuery(str(id_), number, image, text, ids, category, using, item)
