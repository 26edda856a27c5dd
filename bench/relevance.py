"""The README's relevance report: the default bundle on the emoji catalog
(lookalike.eval.catalogs), then what fine-tuning does on a held-out split.

1. Builds the catalog (Twemoji products, OpenMoji image queries, Unicode
   subgroups as categories) and the default bundle, unless already there.
2. Encodes the catalog into a local Collection with the default bundle and
   reports Precision@5, Recall@10, MRR and nDCG@10 for image and text queries.
3. `lookalike train head` on the ``visual`` and ``joint`` spaces: trained on
   half of each category's products, measured on the other half (products,
   their image queries and their names never seen in training), before and after.

Writes bench/results/relevance.json (and the catalog, bundles under --work).

    python bench/relevance.py                      # ~2.5 min on the shared 2-core VM
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.eval.catalogs import build_emoji_catalog
from lookalike.eval.relevance import embed_catalog, format_report, load_labelled_catalog, relevance_report

RESULTS = Path(__file__).resolve().parent / "results"


def progress(message: str) -> None:
    print(f"\r{message}   ", end="", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(RESULTS / "relevance"), help="folder for the catalog and bundles")
    parser.add_argument("--steps", type=int, default=300, help="training batches of the head")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(args.work)
    catalog_dir, default_dir = work / "emoji-catalog", work / "default-bundle"
    if not (catalog_dir / "queries.jsonl").exists():
        products, queries = build_emoji_catalog(catalog_dir)
        print(f"built the catalog: {products} products, {queries} queries", file=sys.stderr)
    if not (default_dir / "manifest.json").exists():
        from lookalike.encoders.build_default import build_default

        build_default(default_dir)
    catalog = load_labelled_catalog(catalog_dir)
    encoder = Encoder(default_dir, RuntimeConfig(device="cpu"))

    start = time.monotonic()
    embeddings = embed_catalog(encoder, catalog, progress)  # once, for the report and the training
    print(file=sys.stderr)
    print(f"default bundle, whole catalog ({len(catalog.ids)} products, {len(set(catalog.categories))} "
          f"categories; encoded in {time.monotonic() - start:.0f} s)")
    report = relevance_report(catalog, encoder, embeddings=embeddings)
    print(format_report(report))

    from lookalike.train.finetune import finetune, format_comparison
    from lookalike.train.head import HeadConfig

    result = finetune(catalog, encoder, work / "tuned-bundle", spaces=["visual", "joint"],
                      config=HeadConfig(steps=args.steps, seed=args.seed), progress=progress, embeddings=embeddings,
                      license="CC-BY 4.0 (Twemoji) and CC-BY-SA 4.0 (OpenMoji) training images")
    print(file=sys.stderr)
    print(format_comparison(result))
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "default": report,
           "held_out": {"before": result.before, "after": result.after, "training_half_after": result.fit,
                        "train_items": len(result.split.train),
                        "held_out_items": len(result.split.held_out), "steps": args.steps, "seed": args.seed}}
    (RESULTS / "relevance.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
