"""A first start: `lookalike serve` with nothing to serve builds the default
bundle (first_run.py) or says what to install; `lookalike demo` serves the
sample photos with the console. The builder here exports the tiny random CLIP
(the real default build is tests/test_build_default.py's, and takes a minute)."""

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from lookalike.encoders.export_clip import export_clip
from lookalike.first_run import MissingBuildExtra, ensure_model
from lookalike.index.collection import SpaceConfig
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server


def test_without_the_build_extra_the_start_says_what_to_install(tmp_path):
    script = ("import sys; sys.modules['torch'] = None  # as if the build extra were not installed\n"
              "from lookalike.cli import main\n"
              "sys.exit(main(['serve', '--address', '127.0.0.1:0', '--data-dir', sys.argv[1]]))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert "torch is missing" in done.stderr and "pip install 'lookalike[build]'" in done.stderr
    assert not (tmp_path / "data" / "models" / "default").exists()


def test_a_first_start_builds_the_default_bundle_with_progress(tiny_clip_checkpoint, tmp_path):
    def build(out, progress):
        progress("exporting the tiny CLIP")
        return export_clip(str(tiny_clip_checkpoint), out, model_id="tiny-clip")

    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "data"))
    shown = io.StringIO()
    built = ensure_model(config, build=build, out=shown)
    assert built == tmp_path / "data" / "models" / "default" == config.model_path()
    assert re.search(r"\[\s*\d+\.\d s\] exporting the tiny CLIP", shown.getvalue())
    assert "first start: no model bundle" in shown.getvalue()
    assert ensure_model(config, build=build) is None           # there is one now
    assert ensure_model(ServiceConfig(data_dir=str(tmp_path / "other"), spaces=(SpaceConfig("v", 4),)),
                        build=build) is None                   # vectors only: nothing to build
    server = Server(config)
    server.start()
    try:
        assert server.encoder.model_id.startswith("tiny-clip@")
    finally:
        server.stop(grace=1)


def test_a_build_cut_short_leaves_no_bundle(tmp_path):
    def build(out, progress):
        out.mkdir(parents=True)
        (out / "manifest.json").write_text("{}")
        raise ModuleNotFoundError("no module named 'efficientnet_lite_pytorch'", name="efficientnet_lite_pytorch")

    config = ServiceConfig(data_dir=str(tmp_path / "data"))
    with pytest.raises(MissingBuildExtra, match="efficientnet_lite_pytorch is missing"):
        ensure_model(config, build=build, out=io.StringIO())
    assert config.model_path() is None and os.listdir(tmp_path / "data" / "models") == []


def test_demo_serves_the_sample_photos_with_the_console(tiny_clip_bundle, tmp_path):
    config = tmp_path / "demo.toml"
    config.write_text(f'model = "{tiny_clip_bundle}"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "demo", "--config", str(config), "--address", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "demo")],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url, seen, deadline = None, [], time.monotonic() + 120
        for line in process.stderr:
            seen.append(line)
            found = re.search(r"lookalike demo: 24 products in .*; open (http://127\.0\.0\.1:\d+/)", line)
            if found or time.monotonic() > deadline:
                url = found and found.group(1)
                break
        assert url, "".join(seen[-20:])
        with urllib.request.urlopen(url + "lookalike.v1.SearchService/Stats", timeout=30) as response:
            stats = json.loads(response.read())
        assert stats["products"] == "24" and set(stats["attribute_schema"]) == {"category", "price", "in_stock"}
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"lookalike console" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=60)
