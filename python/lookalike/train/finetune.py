"""`lookalike train`: fine-tunes a bundle on a labelled catalog and exports a
new bundle.

1. The catalog (lookalike.eval.relevance's format) is encoded once by the
   bundle; the encoder itself stays frozen.
2. Its products are split, per category and seeded, into training items and
   held-out items; a held-out product's images and queries are never seen in
   training.
3. A projection head per tuned space (lookalike.train.head) is trained on the
   training items' vectors in that space: product images, image queries
   (another rendering of the same product) and, where the text tower writes
   the space, text queries; the label of each is its category. Optionally, the
   text tower's space is aligned from an image space instead
   (lookalike.train.align): the image tower then writes it from that space's
   features, trained against the training half's text queries.
4. Before and after: the held-out queries searched among the held-out
   products, exactly, scored by lookalike.eval.metrics; after, also the
   training half's queries among the training products (the fit) and its
   category queries among the held-out products (known words, new products).
5. The heads and alignments are folded into a copy of the bundle
   (lookalike.train.export), which is then loaded and checked to give the
   vectors they give.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lookalike.eval.relevance import (
    Embeddings,
    LabelledCatalog,
    embed_catalog,
    exact_rankings,
    query_spaces,
    score,
)
from lookalike.train.align import AlignConfig, train_alignment
from lookalike.train.export import Alignment, export_tuned_bundle
from lookalike.train.head import HeadConfig, apply_head, train_head

KS = (1, 5, 10)


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]  # product ids
    held_out: tuple[int, ...]
    # Queries made from no product (no ``item``), labelled by category: split on their own.
    train_queries: tuple[str, ...] = ()
    held_out_queries: tuple[str, ...] = ()


def split_items(catalog: LabelledCatalog, held_out_fraction: float, seed: int) -> Split:
    """Product ids split per category: round(fraction x size) of each category
    held out, at least one item on each side of a category of two or more.
    A query made from a product goes with it; the category queries made from
    none (a photo that is not a catalog image, a shopper's words) are split
    the same way per kind and category, so none is seen on both sides."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = np.random.default_rng(seed)

    def halves(groups: dict) -> tuple[list, list]:
        train, held_out = [], []
        for key in sorted(groups):
            members = np.array(groups[key])
            rng.shuffle(members)
            n = len(members) if len(members) == 1 else min(max(1, round(held_out_fraction * len(members))),
                                                          len(members) - 1)
            held_out += members[:n].tolist()
            train += members[n:].tolist()
        return sorted(train), sorted(held_out)

    products: dict[str, list[int]] = {}
    for i, c in zip(catalog.ids, catalog.categories):
        products.setdefault(c, []).append(int(i))
    queries: dict[tuple[str, str], list[str]] = {}
    for q in catalog.queries:
        if q.item is None and q.relevant_ids is None:
            queries.setdefault((q.kind, q.relevant_category), []).append(q.id)
    (train, held_out), (train_queries, held_out_queries) = halves(products), halves(queries)
    return Split(tuple(train), tuple(held_out), tuple(train_queries), tuple(held_out_queries))


def training_vectors(catalog: LabelledCatalog, embeddings: Embeddings, space: str) -> tuple[np.ndarray, list[str]]:
    """Every vector of ``space`` the catalog gives, with its category: product
    images, then the category-labelled image and text queries."""
    parts, labels = [embeddings.products[space]], list(catalog.categories)
    for kind, vectors in (("image", embeddings.image_queries), ("text", embeddings.text_queries)):
        if space in vectors:
            queries = catalog.of_kind(kind)
            keep = [r for r, q in enumerate(queries) if q.relevant_ids is None]
            parts.append(vectors[space][keep])
            labels += [queries[r].relevant_category for r in keep]
    return np.concatenate(parts), labels


@dataclass(frozen=True)
class Tuning:
    """What training made: projection heads by space, and alignments by the space they recompute."""

    heads: Mapping[str, np.ndarray]
    aligned: Mapping[str, Alignment]

    def image_side(self, space: str, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """``space``'s vectors as the tuned image tower writes them, from the untuned ones of every space."""
        if space in self.aligned:
            return apply_head(self.aligned[space].weight, vectors[self.aligned[space].source])
        return apply_head(self.heads[space], vectors[space]) if space in self.heads else vectors[space]

    def text_side(self, space: str, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """The same for the text tower, which an alignment leaves as it was."""
        return apply_head(self.heads[space], vectors[space]) if space in self.heads else vectors[space]


UNTUNED = Tuning({}, {})


def search_metrics(catalog: LabelledCatalog, embeddings: Embeddings, spaces: Mapping[str, str | None],
                   tuning: Tuning = UNTUNED, ks: Sequence[int] = KS) -> dict[str, dict[str, float]]:
    """Per query kind, the metrics of exact search among ``catalog``'s products,
    their vectors and the queries' as the ``tuning``'s towers write them."""
    report = {}
    for kind, queries in (("image", embeddings.image_queries), ("text", embeddings.text_queries)):
        space = spaces.get(kind)
        if space is None or space not in queries or not catalog.of_kind(kind):
            continue
        side = tuning.image_side if kind == "image" else tuning.text_side
        rankings = exact_rankings(side(space, queries), tuning.image_side(space, embeddings.products),
                                  catalog.ids, max(ks))
        report[kind] = score(catalog, kind, rankings, ks)
    return report


@dataclass
class FinetuneResult:
    split: Split
    spaces: tuple[str, ...]  # the spaces given a projection head
    aligned: tuple[str, ...]  # the spaces recomputed by an alignment
    before: dict[str, dict[str, float]]  # held-out half, untuned
    after: dict[str, dict[str, float]]  # held-out half, tuned
    fit: dict[str, dict[str, float]]  # training half, tuned
    # The training half's category queries (made from no product) among the
    # held-out products, tuned: known words and photos finding new products.
    known_queries: dict[str, dict[str, float]]
    bundle: Path


def finetune(catalog: LabelledCatalog, encoder, out: str | Path, *, spaces: Sequence[str] | None = None,
             config: HeadConfig = HeadConfig(), align_from: str | None = None,
             align_config: AlignConfig = AlignConfig(), held_out_fraction: float = 0.5,
             license: str = "see the catalog", progress: Callable[[str], None] | None = None,
             embeddings: Embeddings | None = None) -> FinetuneResult:
    """Tunes ``spaces`` of ``encoder``'s bundle on ``catalog`` with a
    projection head each, and with ``align_from`` (an image space) aligns the
    text tower's space from it (lookalike.train.align); writes the tuned bundle
    to ``out``. ``spaces`` defaults to the space image queries search, or to
    none when aligning. ``embeddings``: the catalog already encoded by that bundle."""
    manifest = encoder.bundle.manifest
    searched = query_spaces(manifest)
    spaces = tuple(spaces if spaces is not None else ([] if align_from else [searched["image"]]))
    image = manifest.towers.get("image")
    for space in (*spaces, *([align_from] if align_from else [])):
        if image is None or space not in image.outputs.values():
            raise ValueError(f"space {space!r} is not written by the bundle's image tower")
    aligned_space = searched["text"] if align_from else None
    if align_from and (aligned_space is None or aligned_space not in image.outputs.values()
                       or aligned_space == align_from):
        raise ValueError("aligning needs a bundle whose image tower writes the text tower's space and "
                         f"another space to align it from (the text tower writes {aligned_space!r})")
    if aligned_space in spaces:
        raise ValueError(f"space {aligned_space!r} cannot have a projection head and be aligned at once")
    if not spaces and not align_from:
        raise ValueError("nothing to tune: give spaces or align_from")
    embeddings = embeddings or embed_catalog(encoder, catalog, progress)
    split = split_items(catalog, held_out_fraction, config.seed)
    train = catalog.subset(split.train, split.train_queries)
    held_out = catalog.subset(split.held_out, split.held_out_queries)
    train_vectors, held_vectors = embeddings.rows(catalog, train), embeddings.rows(catalog, held_out)
    before = search_metrics(held_out, held_vectors, searched)
    heads, aligned = {}, {}
    for space in spaces:
        vectors, labels = training_vectors(train, train_vectors, space)
        codes = np.unique(labels, return_inverse=True)[1]
        heads[space] = train_head(vectors, codes, config, progress=(lambda s, sp=space: progress(f"{sp}: {s}"))
                                  if progress else None)
    if align_from:
        images, image_labels = training_vectors(train, train_vectors, align_from)
        texts = train.of_kind("text")
        kept = [r for r, q in enumerate(texts) if q.relevant_ids is None]
        if not kept:
            raise ValueError("aligning needs text queries labelled by category in the training half")
        weight = train_alignment(images, np.array(image_labels), train_vectors.text_queries[aligned_space][kept],
                                 np.array([texts[r].relevant_category for r in kept]), align_config,
                                 progress=(lambda s: progress(f"align {aligned_space}: {s}")) if progress else None)
        aligned[aligned_space] = Alignment(align_from, weight)
    tuning = Tuning(heads, aligned)
    after = search_metrics(held_out, held_vectors, searched, tuning)
    # The same search on the training half shows how much of the fit carries over.
    fit = search_metrics(train, train_vectors, searched, tuning)
    # Apart from the held-out result, which needs both new words and new
    # products, this tells whether the tuning carries over to new products.
    trained_queries = set(split.train_queries)
    known = replace(held_out, queries=[q for q in catalog.queries if q.id in trained_queries])
    known_queries = search_metrics(known, embeddings.rows(catalog, known), searched, tuning)
    record = {"catalog": catalog.folder.name, "spaces": list(spaces), "train_items": len(split.train),
              "held_out_items": len(split.held_out), "categories": len(set(catalog.categories)),
              "head": asdict(config), "held_out_before": before, "held_out_after": after,
              "training_half_after": fit, "known_queries_on_held_out_after": known_queries}
    if aligned:
        record["aligned"] = {space: a.source for space, a in aligned.items()}
        record["align"] = asdict(align_config)
    how = ", ".join(([f"{config.loss} loss"] if heads else []) + ([f"aligned from {align_from}"] if aligned else []))
    tuned = export_tuned_bundle(
        encoder.bundle, heads, out, license=license, record=json.dumps(record, sort_keys=True), aligned=aligned,
        trained_on=f"{len(split.train)} products of {len(set(train.categories))} categories of catalog "
                   f"{catalog.folder.name!r}, {how}, seed {config.seed}")
    _check_tuned(tuned, encoder, catalog, tuning)
    return FinetuneResult(split, spaces, tuple(aligned), before, after, fit, known_queries, tuned.path)


def _check_tuned(tuned, encoder, catalog: LabelledCatalog, tuning: Tuning) -> None:
    """The exported graphs must give what the heads and alignments give on the encoder's vectors."""
    from lookalike.encoders import Encoder

    images = [(catalog.folder / p).read_bytes() for p in catalog.images[:4]]
    want = encoder.encode_images(images)
    got = Encoder(tuned, encoder.config).encode_images(images)
    for space in (*tuning.heads, *tuning.aligned):
        error = float(np.abs(got[space] - tuning.image_side(space, want)).max())
        if error > 1e-4:
            raise RuntimeError(f"the exported {space!r} graph differs from its training by {error:.2e}")


def format_comparison(result: FinetuneResult) -> str:
    columns = ("precision@5", "recall@10", "mrr", "ndcg@10")
    lines = [f"held-out split: {len(result.split.held_out)} products (trained on {len(result.split.train)}); "
             f"tuned spaces: {', '.join(result.spaces) or 'none'}"
             + "".join(f"; {space} aligned from the image tower's features" for space in result.aligned),
             f"{'kind':<6} {'':<7} " + " ".join(f"{c:>11}" for c in columns)]
    for kind in result.before:
        for when, report in (("before", result.before), ("after", result.after)):
            lines.append(f"{kind:<6} {when:<7} " + " ".join(f"{report[kind][c]:>11.3f}" for c in columns))
    fit = ", ".join(f"{kind} {m['precision@5']:.3f}" for kind, m in result.fit.items())
    lines.append(f"(precision@5 of the training half, tuned: {fit})")
    if result.known_queries:
        known = ", ".join(f"{kind} {m['precision@5']:.3f}" for kind, m in result.known_queries.items())
        lines.append(f"(precision@5 of the training half's category queries among the held-out products: {known})")
    return "\n".join(lines)
