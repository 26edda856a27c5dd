"""Relevance of a model bundle on a labelled catalog: its products are encoded
into a local Collection (one index per space of the bundle, as the server
builds it) and every labelled query is searched; Precision, Recall and nDCG
at K and MRR come from lookalike.eval.metrics, per query kind.

The catalog folder holds ``catalog.csv`` (id, image, title, category, as
``lookalike ingest`` reads it) and ``queries.jsonl`` in the format of
lookalike.eval.queries (the one `lookalike eval` reads), image or text queries
only: ``{"id": "q1", "image": "queries/a.png", "relevant_category": "clothing"}``
or ``{"id": "q2", "text": "red dress", "relevant_ids": [3, 7]}``; an optional
``item`` names the product a query was made from (the split of ``lookalike
train`` keeps a product and its queries on one side).
lookalike.eval.catalogs and lookalike.eval.fashion_catalog build such folders.

Image queries search the bundle's preferred image space (as the server does),
text queries the space the text tower writes.

    python -m lookalike.eval.relevance --catalog relevance-catalog --bundle lookalike-data/models/default
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.eval.metrics import mean_metrics, query_metrics
from lookalike.eval.queries import LabelledQuery, load_queries

KS = (1, 5, 10)
QUERY_KINDS = ("image", "text")


@dataclass
class LabelledCatalog:
    """Products (rows aligned with ``ids``) and the queries labelled against them."""

    folder: Path
    ids: np.ndarray
    images: list[str]
    titles: list[str]
    categories: list[str]
    queries: list[LabelledQuery] = field(default_factory=list)

    def relevant(self, query: LabelledQuery) -> set[int]:
        """The product ids relevant to ``query``: its listed ids, else those of its category."""
        if query.relevant_ids is not None:
            return set(query.relevant_ids)
        return {int(i) for i, c in zip(self.ids, self.categories) if c == query.relevant_category}

    def subset(self, items: Iterable[int], queries: Iterable[str] = ()) -> LabelledCatalog:
        """The products ``items`` with the queries made from them (their
        ``item``); of the queries made from no product, those named in
        ``queries`` (by id) and those whose listed relevant ids are all among ``items``."""
        keep, named = {int(i) for i in items}, set(queries)

        def kept(q: LabelledQuery) -> bool:
            if q.item is not None:
                return q.item in keep
            return q.id in named or (q.relevant_ids is not None and q.relevant_ids <= keep)

        rows = [r for r, i in enumerate(self.ids) if int(i) in keep]
        return LabelledCatalog(self.folder, self.ids[rows], [self.images[r] for r in rows],
                               [self.titles[r] for r in rows], [self.categories[r] for r in rows],
                               [q for q in self.queries if kept(q)])

    def of_kind(self, kind: str) -> list[LabelledQuery]:
        return [q for q in self.queries if q.kind == kind]


def load_labelled_catalog(folder: str | Path) -> LabelledCatalog:
    """Reads ``catalog.csv`` and ``queries.jsonl``; ValueError names a bad line."""
    folder = Path(folder)
    ids, images, titles, categories = [], [], [], []
    with open(folder / "catalog.csv", newline="") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            try:
                ids.append(int(row["id"]))
                images.append(row["image"])
                titles.append(row.get("title") or "")
                categories.append(row.get("category") or "")
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"{folder / 'catalog.csv'}:{number}: needs an integer id and an image ({e})") from None
    path = folder / "queries.jsonl"
    queries = load_queries(path)
    known_categories = set(categories)
    for q in queries:
        where = f"{path}, line {q.line}: query {q.id!r}"
        if q.kind not in QUERY_KINDS:
            raise ValueError(f"{where} has both an image and a text; a relevance report takes one of them")
        if q.relevant_ids is None and q.relevant_category not in known_categories:
            raise ValueError(f"{where}: its relevant_category {q.relevant_category!r} is no product's category")
    return LabelledCatalog(folder, np.asarray(ids, dtype=np.int64), images, titles, categories, queries)


@dataclass
class Embeddings:
    """Vectors of a catalog by a bundle: per space, one row per product
    (``products``) and one row per image query (``image_queries``), in the
    catalog's order; ``text_queries`` in the text tower's space."""

    products: dict[str, np.ndarray]
    image_queries: dict[str, np.ndarray]
    text_queries: dict[str, np.ndarray]

    def rows(self, catalog: LabelledCatalog, subset: LabelledCatalog) -> Embeddings:
        """The rows of ``subset`` (made by ``catalog.subset``)."""
        row_of = {int(i): r for r, i in enumerate(catalog.ids)}
        products = [row_of[int(i)] for i in subset.ids]
        picks = {}
        for kind in QUERY_KINDS:
            position = {q.id: r for r, q in enumerate(catalog.of_kind(kind))}
            picks[kind] = [position[q.id] for q in subset.of_kind(kind)]
        return Embeddings({s: v[products] for s, v in self.products.items()},
                          {s: v[picks["image"]] for s, v in self.image_queries.items()},
                          {s: v[picks["text"]] for s, v in self.text_queries.items()})


def embed_catalog(encoder, catalog: LabelledCatalog, progress: Callable[[str], None] | None = None) -> Embeddings:
    """Encodes every product image and query of ``catalog`` with ``encoder``
    (a lookalike.encoders.Encoder)."""
    def images(paths: Sequence[Path], what: str) -> dict[str, np.ndarray]:
        chunks: list[dict[str, np.ndarray]] = []
        step = encoder.config.max_batch
        for lo in range(0, len(paths), step):
            chunks.append(encoder.encode_images([p.read_bytes() for p in paths[lo:lo + step]]))
            if progress:
                progress(f"{what}: {min(lo + step, len(paths))}/{len(paths)}")
        if not chunks:
            return encoder.encode_images([])
        return {space: np.concatenate([c[space] for c in chunks]) for space in chunks[0]}

    products = images([catalog.folder / p for p in catalog.images], "products")
    image_queries = images([q.image for q in catalog.of_kind("image")], "image queries")
    texts = [q.text for q in catalog.of_kind("text")]
    text_queries = encoder.encode_texts(texts) if "text" in encoder.bundle.manifest.towers else {}
    return Embeddings(products, image_queries, text_queries)


def query_spaces(manifest) -> dict[str, str | None]:
    """The space each query kind searches: the preferred image space for image
    queries, the text tower's space for text queries (None: the kind cannot be searched)."""
    text = manifest.towers.get("text")
    return {"image": manifest.image_query_space, "text": next(iter(text.outputs.values())) if text else None}


def collection_rankings(catalog: LabelledCatalog, embeddings: Embeddings, spaces: Mapping[str, str | None],
                        metrics: Mapping[str, str], k: int) -> dict[str, list[list[int]]]:
    """Per query kind, the ids each query's search returns from a Collection
    holding the catalog (one index per space, the service's defaults)."""
    from lookalike.index.collection import Collection, SpaceConfig

    collection = Collection([SpaceConfig(name, v.shape[1], metrics[name]) for name, v in embeddings.products.items()],
                            {"category": "keyword"})
    collection.upsert(catalog.ids, embeddings.products, {"category": [[c] for c in catalog.categories]})
    vectors = {"image": embeddings.image_queries, "text": embeddings.text_queries}
    rankings = {}
    for kind, space in spaces.items():
        if space is None or space not in vectors[kind]:
            continue
        rankings[kind] = [[int(i) for i in collection.search(space, v, k).ids] for v in vectors[kind][space]]
    return rankings


def exact_rankings(queries: np.ndarray, products: np.ndarray, ids: np.ndarray, k: int) -> list[list[int]]:
    """The k products of highest cosine similarity to each query (vectors unit length)."""
    order = np.argsort(-(queries @ products.T), axis=1, kind="stable")[:, :k]
    return [[int(ids[j]) for j in row] for row in order]


def score(catalog: LabelledCatalog, kind: str, rankings: Sequence[Sequence[int]],
          ks: Sequence[int] = KS) -> dict[str, float]:
    """The mean metrics of the queries of ``kind`` given their rankings, with the query count."""
    queries = catalog.of_kind(kind)
    if len(queries) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings for {len(queries)} {kind} queries")
    means = mean_metrics([query_metrics(r, catalog.relevant(q), ks) for q, r in zip(queries, rankings)])
    return {"queries": len(queries), **means}


def relevance_report(catalog: LabelledCatalog, encoder, ks: Sequence[int] = KS,
                     progress: Callable[[str], None] | None = None,
                     embeddings: Embeddings | None = None) -> dict[str, dict[str, float]]:
    """{query kind: mean metrics} of ``encoder``'s bundle on ``catalog``
    (``embeddings``: the catalog already encoded by that bundle)."""
    manifest = encoder.bundle.manifest
    embeddings = embeddings or embed_catalog(encoder, catalog, progress)
    metrics = {name: s.metric for name, s in manifest.spaces.items()}
    rankings = collection_rankings(catalog, embeddings, query_spaces(manifest), metrics, max(ks))
    return {kind: score(catalog, kind, r, ks) for kind, r in rankings.items() if r}


def format_report(report: Mapping[str, Mapping[str, float]]) -> str:
    columns = ["precision@5", "recall@10", "mrr", "ndcg@10", "precision@1"]
    lines = [f"{'kind':<6} {'queries':>7} " + " ".join(f"{c:>11}" for c in columns)]
    for kind, m in report.items():
        lines.append(f"{kind:<6} {int(m['queries']):>7} " + " ".join(f"{m[c]:>11.3f}" for c in columns))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from lookalike.encoders import Encoder, RuntimeConfig

    parser = argparse.ArgumentParser(prog="python -m lookalike.eval.relevance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", required=True, help="folder with catalog.csv and queries.jsonl")
    parser.add_argument("--bundle", required=True, help="model bundle folder")
    parser.add_argument("--json", help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    catalog = load_labelled_catalog(args.catalog)
    encoder = Encoder(args.bundle, RuntimeConfig(device="cpu"))
    report = relevance_report(catalog, encoder, progress=lambda s: print(f"\r{s}   ", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
