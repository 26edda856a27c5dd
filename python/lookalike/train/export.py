"""A tuned bundle: a copy of a bundle with projection heads folded into its
ONNX graphs, so that serving it needs nothing new.

For a tuned space, every tower that writes it (the image tower, and the text
tower too when it writes the same space, so the two stay comparable) gets two
nodes appended after that output: MatMul by the head's weight, then
LpNormalization (p=2). The graph output keeps its name; the manifest gets the
space's new dimension, a weights entry per head saying what it was trained on,
and the tuning record in its notes.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lookalike.encoders.bundle import Bundle, Space, WeightsSource, load_bundle, save_manifest


def fold_head(source: Path, target: Path, output: str, weight: np.ndarray) -> None:
    """Writes ``source`` (an ONNX file) to ``target`` with the output named
    ``output`` replaced by L2norm(output @ weight)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if output not in outputs:
        raise ValueError(f"{source}: the graph has no output {output!r} (it has {sorted(outputs)})")
    untuned, projected, weight_name = f"{output}__untuned", f"{output}__projected", f"{output}__head_weight"
    # The nodes that produced or read the output now produce or read its untuned value.
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == output:
                    names[i] = untuned
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), weight_name))
    graph.node.extend([
        helper.make_node("MatMul", [untuned, weight_name], [projected], name=f"{output}_head_matmul"),
        helper.make_node("LpNormalization", [projected], [output], name=f"{output}_head_l2norm", axis=-1, p=2),
    ])
    dims = outputs[output].type.tensor_type.shape.dim
    dims[len(dims) - 1].ClearField("dim_param")
    dims[len(dims) - 1].dim_value = int(weight.shape[1])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def export_tuned_bundle(bundle: Bundle | str | Path, heads: Mapping[str, np.ndarray], out: str | Path, *,
                        trained_on: str, license: str, model_id: str | None = None, model_version: str = "1",
                        record: str = "") -> Bundle:
    """Copies ``bundle`` into ``out`` with ``heads`` ({space: (dim, out_dim)
    weight}) folded into its graphs; returns the new bundle, validated by the
    loader. ``trained_on`` and ``license`` describe the training data in the
    manifest; ``record`` (what was tuned and how, the metrics) goes to its notes."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    manifest = bundle.manifest
    out = Path(out)
    if out.resolve() == bundle.path.resolve():
        raise ValueError("the tuned bundle must go to a new folder, not over its source")
    for space, weight in heads.items():
        if space not in manifest.spaces:
            raise ValueError(f"no space {space!r} in the bundle (it has {', '.join(manifest.spaces)})")
        if weight.ndim != 2 or weight.shape[0] != manifest.spaces[space].dim:
            raise ValueError(f"the head of {space!r} has shape {weight.shape}; it needs ({manifest.spaces[space].dim}, n)")
    out.mkdir(parents=True, exist_ok=True)
    for tower in manifest.towers.values():
        tuned = {name: space for name, space in tower.outputs.items() if space in heads}
        if not tuned:
            shutil.copyfile(bundle.file(tower.file), out / tower.file)
            continue
        source = bundle.file(tower.file)
        for name, space in tuned.items():  # a tower writing two tuned spaces is folded twice
            fold_head(source, out / tower.file, name, heads[space])
            source = out / tower.file
    for tower in manifest.towers.values():
        if tower.tokenizer is not None:
            shutil.copyfile(bundle.file(tower.tokenizer.file), out / tower.tokenizer.file)
    spaces = {name: (Space(int(heads[name].shape[1]), s.metric) if name in heads else s)
              for name, s in manifest.spaces.items()}
    head_sources = tuple(
        WeightsSource(f"projection head of space {space} (lookalike train)", trained_on, license) for space in heads)
    notes = " ".join(part for part in (manifest.notes, f"Tuned by lookalike train: {record}".strip()) if part)
    save_manifest(dataclasses.replace(
        manifest, model_id=model_id or f"{manifest.model_id}-tuned", model_version=model_version, spaces=spaces,
        weights=manifest.weights + head_sources, notes=notes), out)
    return load_bundle(out)
