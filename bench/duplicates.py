"""The duplicate classifier with a real model bundle, on generated pairs
(lookalike.duplicates.synthetic: crops, JPEG recompression, colour jitter and
retitled copies of products cut from the sample photos, against distinct
products that share photos, words and brands).

Reported:
- held-out precision / recall of the classifier at P >= 0.5 (trained as
  `lookalike train duplicates` trains it), and of classifiers restricted to
  the image features or to the other features, to show what each part adds;
- the catalog view: every product of a second generated catalog against every
  other, as a scan sees them: how many true duplicate pairs reach the image
  similarity threshold (the range search's recall, per kind of near-duplicate),
  and the classifier's precision / recall over all candidate pairs.

    python bench/duplicates.py --bundle DIR [--products 96] [--threshold 0.95]

Writes bench/results/duplicates.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from lookalike.duplicates.classifier import fit, precision_recall
from lookalike.duplicates.features import PairFeatures
from lookalike.duplicates.synthetic import make_catalog, write_pairs
from lookalike.duplicates.train import pair_views, read_pairs, train_duplicates
from lookalike.encoders import Encoder, RuntimeConfig

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--products", type=int, default=96)
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    result: dict = {"products": args.products, "threshold": args.threshold}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = shutil.copytree(args.bundle, tmp / "bundle")
        products, pairs = make_catalog(args.products, seed=1)
        path = write_pairs(tmp / "pairs", products, pairs)
        report = train_duplicates(path, bundle, held_out=0.3, seed=0)
        result["held_out"] = report.held_out
        result["weights"] = dict(zip(report.classifier.features, report.classifier.weights.tolist()))
        print(f"held-out ({report.held_out['pairs']} pairs): precision {report.held_out['precision']:.3f} "
              f"recall {report.held_out['recall']:.3f}", file=sys.stderr)

        # Ablations on the same split.
        encoder = Encoder(bundle, RuntimeConfig(device="cpu", intra_op_threads=2))
        a, b, y = read_pairs(path)
        views = pair_views(encoder, path.parent, a + b)
        features = PairFeatures(tuple(encoder.bundle.manifest.towers["image"].outputs.values()))
        x = features.matrix(list(zip(views[:len(y)], views[len(y):])))
        order = np.random.default_rng(0).permutation(len(y))
        cut = int(round(len(y) * 0.7))
        train, test = order[:cut], order[cut:]
        names = features.feature_names
        for label, keep in (("image features only", [n.startswith("image_cos_") for n in names]),
                            ("without image features", [not n.startswith("image_cos_") for n in names])):
            cols = np.flatnonzero(keep)
            model = fit(x[train][:, cols], y[train], [names[c] for c in cols])
            r = precision_recall(model.probability(x[test][:, cols]), y[test])
            result[label] = r
            print(f"{label}: precision {r['precision']:.3f} recall {r['recall']:.3f}", file=sys.stderr)

        # The catalog view, on another generated catalog.
        from lookalike.duplicates.classifier import load_classifier

        classifier = load_classifier(bundle)
        catalog, truth_pairs = make_catalog(args.products, seed=2)
        vectors = encoder.encode_images([p.image for p in catalog])
        titles = sorted({p.title for p in catalog})
        title_vectors = dict(zip(titles, encoder.encode_texts(titles)["joint"]))
        space = next(iter(encoder.bundle.manifest.image_query))
        sim = vectors[space] @ vectors[space].T
        kinds = {(p.a, p.b): p.kind for p in truth_pairs if p.duplicate}
        passed = {kind: 0 for kind in set(kinds.values())}
        for (i, j), kind in kinds.items():
            passed[kind] += int(sim[i, j] >= args.threshold)
        per_kind = {kind: passed[kind] / sum(1 for k in kinds.values() if k == kind) for kind in passed}
        candidates = [(i, j) for i in range(len(catalog)) for j in range(i + 1, len(catalog))
                      if sim[i, j] >= args.threshold]
        from lookalike.duplicates.features import ProductView

        def view(i: int) -> ProductView:
            p = catalog[i]
            return ProductView(i, {s: v[i] for s, v in vectors.items()}, p.title, title_vectors[p.title], p.attributes)

        if candidates:
            xc = features.matrix([(view(i), view(j)) for i, j in candidates])
            pc = classifier.probability(xc)
        else:
            pc = np.empty(0)
        flagged = {c for c, p in zip(candidates, pc) if p >= classifier.threshold}
        true = set(kinds)
        result["catalog"] = {
            "products": len(catalog), "all_pairs": len(catalog) * (len(catalog) - 1) // 2,
            "candidates": len(candidates), "range_recall_by_kind": per_kind,
            "range_recall": sum(passed.values()) / len(kinds),
            "precision": len(flagged & true) / len(flagged) if flagged else 1.0,
            "recall": len(flagged & true) / len(true)}
        c = result["catalog"]
        print(f"catalog of {c['products']}: {c['candidates']} candidate pairs of {c['all_pairs']} at cosine >= "
              f"{args.threshold} ({space}); duplicates reaching it: {c['range_recall']:.3f} {per_kind}; "
              f"flagged precision {c['precision']:.3f} recall {c['recall']:.3f}", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "duplicates.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
