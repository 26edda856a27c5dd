"""The README's relevance report: the default bundle on two labelled catalogs,
then what fine-tuning does on a held-out split of each.

- ``emoji``: Twemoji products, OpenMoji image queries, Unicode subgroups as
  categories, the emoji's name as a text query (lookalike.eval.catalogs).
- ``fashion``: Fashion-MNIST product photos, 100 per category from its
  training split, image queries from its test split, four shopper's phrasings
  per category as text queries (lookalike.eval.fashion_catalog; needs Debian's
  ``dataset-fashion-mnist``, else it is skipped with a message).

For each: the catalog and the default bundle are built unless already there;
the catalog is encoded once into a local Collection and Precision@5, Recall@10,
MRR and nDCG@10 reported for image and text queries; then `lookalike train
head` is run twice on half of each category's products and category queries,
and measured on the other half (never seen in training), before and after:
``heads`` (projection heads on ``visual`` and ``joint``, triplet loss) and
``aligned`` (a head on ``visual``, and ``joint`` aligned from ``visual``).
Each tuning runs once per seed of ``--seeds``, a seed drawing both the split
and the training: a held-out half of 20 phrasings is too few for one split to
be the figure, so the summary gives the mean and range over seeds.

Writes bench/results/relevance.json (and the catalogs, bundles under --work).

    python bench/relevance.py                      # ~2.5 min on a 2-core VM
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.eval.relevance import embed_catalog, format_report, load_labelled_catalog, relevance_report

RESULTS = Path(__file__).resolve().parent / "results"


def progress(message: str) -> None:
    print(f"\r{message}   ", end="", file=sys.stderr, flush=True)


def tunings(steps: int, seed: int) -> dict[str, dict]:
    from lookalike.train.align import AlignConfig
    from lookalike.train.head import HeadConfig

    head = HeadConfig(steps=steps, seed=seed)
    return {"heads": {"spaces": ["visual", "joint"], "config": head},
            "aligned": {"spaces": ["visual"], "config": head, "align_from": "visual",
                        "align_config": AlignConfig(seed=seed)}}


def build_catalog(name: str, folder: Path) -> bool:
    """Builds catalog ``name`` into ``folder`` unless it is there; False when its data is missing."""
    if (folder / "queries.jsonl").exists():
        return True
    if name == "emoji":
        from lookalike.eval.catalogs import build_emoji_catalog

        products, queries = build_emoji_catalog(folder)
    else:
        from lookalike.eval.fashion_catalog import build_fashion_catalog

        try:
            products, queries = build_fashion_catalog(folder)
        except FileNotFoundError as e:
            print(f"skipping the fashion catalog: {e}", file=sys.stderr)
            return False
    print(f"built the {name} catalog: {products} products, {queries} queries", file=sys.stderr)
    return True


LICENSES = {"emoji": "CC-BY 4.0 (Twemoji) and CC-BY-SA 4.0 (OpenMoji) training images",
            "fashion": "MIT (Fashion-MNIST, Zalando SE) training images"}


def summary(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per measure (before, after, training half, known queries) and query
    kind: Precision@5's mean, min and max over the seeds' runs."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for measure in ("before", "after", "training_half_after", "known_queries_after"):
        for kind in runs[0][measure]:
            values = [run[measure][kind]["precision@5"] for run in runs]
            out.setdefault(measure, {})[kind] = {"mean": sum(values) / len(values), "min": min(values),
                                                 "max": max(values)}
    return out


def format_summary(name: str, tuning: str, seeds: list[int], table: dict) -> str:
    lines = [f"-- {name}, {tuning}: Precision@5 over seeds {seeds}, mean [min, max]"]
    for measure, kinds in table.items():
        for kind, v in kinds.items():
            lines.append(f"{measure:<20} {kind:<6} {v['mean']:.3f} [{v['min']:.3f}, {v['max']:.3f}]")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(RESULTS / "relevance"), help="folder for the catalogs and bundles")
    parser.add_argument("--catalogs", default="emoji,fashion", help="which catalogs to report on")
    parser.add_argument("--steps", type=int, default=300, help="training batches of the heads")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="one split and training per seed")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    work = Path(args.work)
    default_dir = work / "default-bundle"
    if not (default_dir / "manifest.json").exists():
        from lookalike.encoders.build_default import build_default

        build_default(default_dir)
    encoder = Encoder(default_dir, RuntimeConfig(device="cpu"))
    from lookalike.train.finetune import finetune, format_comparison

    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "steps": args.steps,
           "seeds": seeds, "catalogs": {}}
    for name in [c.strip() for c in args.catalogs.split(",") if c.strip()]:
        catalog_dir = work / f"{name}-catalog"
        if not build_catalog(name, catalog_dir):
            continue
        catalog = load_labelled_catalog(catalog_dir)
        start = time.monotonic()
        embeddings = embed_catalog(encoder, catalog, progress)  # once, for the report and the training
        print(file=sys.stderr)
        print(f"\n== {name}: default bundle, whole catalog ({len(catalog.ids)} products, "
              f"{len(set(catalog.categories))} categories; encoded in {time.monotonic() - start:.0f} s)")
        report = relevance_report(catalog, encoder, embeddings=embeddings)
        print(format_report(report))
        results = {"default": report}
        runs: dict[str, list[dict]] = {}
        for seed in seeds:
            for tuning, options in tunings(args.steps, seed).items():
                result = finetune(catalog, encoder, work / f"{name}-{tuning}-bundle", progress=progress,
                                  embeddings=embeddings, license=LICENSES[name], **options)
                print(file=sys.stderr)
                print(f"-- {name}, {tuning}, seed {seed}:")
                print(format_comparison(result))
                runs.setdefault(tuning, []).append({
                    "seed": seed, "before": result.before, "after": result.after,
                    "training_half_after": result.fit, "known_queries_after": result.known_queries,
                    "train_items": len(result.split.train), "held_out_items": len(result.split.held_out),
                    "held_out_queries": len(result.split.held_out_queries)})
        for tuning, tuning_runs in runs.items():
            results[tuning] = {"runs": tuning_runs, "precision@5": summary(tuning_runs)}
            print(format_summary(name, tuning, seeds, results[tuning]["precision@5"]))
        out["catalogs"][name] = results
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "relevance.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
