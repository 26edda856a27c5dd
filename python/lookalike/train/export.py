"""A tuned bundle: a copy of a bundle with projection heads folded into its
ONNX graphs, so that serving it needs nothing new.

For a tuned space, every tower that writes it (the image tower, and the text
tower too when it writes the same space, so the two stay comparable) gets two
nodes appended after that output: MatMul by the head's weight, then
LpNormalization (p=2). An aligned space (lookalike.train.align) is recomputed
in the image tower alone, from another of its outputs, and what computed it
before is dropped; the text tower's output of the space is left as it is. The
graph output keeps its name; the manifest gets the space's new dimension, a
weights entry per head or alignment saying what it was trained on, and the
tuning record in its notes.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.encoders.bundle import Bundle, Space, WeightsSource, load_bundle, save_manifest


@dataclass(frozen=True)
class Alignment:
    """An image-tower space recomputed as L2norm(``source`` @ ``weight``),
    ``source`` another space the image tower writes."""

    source: str
    weight: np.ndarray


def fold_head(source: Path, target: Path, output: str, weight: np.ndarray, reads: str | None = None) -> None:
    """Writes ``source`` (an ONNX file) to ``target`` with the output named
    ``output`` replaced by L2norm(x @ weight): x is the untuned ``output``, or
    the graph's output ``reads`` (then the nodes that only computed the old
    ``output`` are dropped)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    for name in {output, reads or output}:
        if name not in outputs:
            raise ValueError(f"{source}: the graph has no output {name!r} (it has {sorted(outputs)})")
    untuned, projected, weight_name = f"{output}__untuned", f"{output}__projected", f"{output}__head_weight"
    # The nodes that produced or read the output now produce or read its untuned value.
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == output:
                    names[i] = untuned
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), weight_name))
    graph.node.extend([
        helper.make_node("MatMul", [reads or untuned, weight_name], [projected], name=f"{output}_head_matmul"),
        helper.make_node("LpNormalization", [projected], [output], name=f"{output}_head_l2norm", axis=-1, p=2),
    ])
    if reads is not None:
        _drop_unused(graph)
    dims = outputs[output].type.tensor_type.shape.dim
    dims[len(dims) - 1].ClearField("dim_param")
    dims[len(dims) - 1].dim_value = int(weight.shape[1])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _drop_unused(graph) -> None:
    """Removes the nodes and initializers no graph output depends on. A graph
    with subgraphs (If, Loop) is left whole: the outer names a subgraph reads
    are not listed among its node's inputs."""
    from onnx import AttributeProto

    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):  # ONNX keeps nodes in topological order
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def export_tuned_bundle(bundle: Bundle | str | Path, heads: Mapping[str, np.ndarray], out: str | Path, *,
                        trained_on: str, license: str, model_id: str | None = None, model_version: str = "1",
                        record: str = "", aligned: Mapping[str, Alignment] | None = None) -> Bundle:
    """Copies ``bundle`` into ``out`` with ``heads`` ({space: (dim, out_dim)
    weight}) and ``aligned`` ({space: Alignment}) folded into its graphs;
    returns the new bundle, validated by the loader. ``trained_on`` and
    ``license`` describe the training data in the manifest; ``record`` (what
    was tuned and how, the metrics) goes to its notes."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    manifest = bundle.manifest
    aligned = dict(aligned or {})
    out = Path(out)
    if out.resolve() == bundle.path.resolve():
        raise ValueError("the tuned bundle must go to a new folder, not over its source")
    for space, weight in heads.items():
        if space not in manifest.spaces:
            raise ValueError(f"no space {space!r} in the bundle (it has {', '.join(manifest.spaces)})")
        if weight.ndim != 2 or weight.shape[0] != manifest.spaces[space].dim:
            raise ValueError(f"the head of {space!r} has shape {weight.shape}; it needs ({manifest.spaces[space].dim}, n)")
    image = manifest.towers.get("image")
    image_spaces = set(image.outputs.values()) if image else set()
    for space, alignment in aligned.items():
        if space in heads:
            raise ValueError(f"space {space!r} is given both a head and an alignment")
        if not {space, alignment.source} <= image_spaces:
            raise ValueError(f"aligning {space!r} from {alignment.source!r} needs both written by the image tower")
        want = (manifest.spaces[alignment.source].dim, manifest.spaces[space].dim)
        if alignment.weight.shape != want:
            raise ValueError(f"the alignment of {space!r} has shape {alignment.weight.shape}; it needs {want}")
    out.mkdir(parents=True, exist_ok=True)
    for kind, tower in manifest.towers.items():
        output_of = {space: name for name, space in tower.outputs.items()}
        # Alignments first: they read their source before a head of it renames it.
        folds = [(output_of[space], a.weight, output_of[a.source]) for space, a in aligned.items() if kind == "image"]
        folds += [(name, heads[space], None) for name, space in tower.outputs.items() if space in heads]
        source = bundle.file(tower.file)
        if not folds:
            shutil.copyfile(source, out / tower.file)
        for name, weight, reads in folds:  # a tower with two tuned spaces is folded twice
            fold_head(source, out / tower.file, name, weight, reads)
            source = out / tower.file
    for tower in manifest.towers.values():
        if tower.tokenizer is not None:
            shutil.copyfile(bundle.file(tower.tokenizer.file), out / tower.tokenizer.file)
    spaces = {name: (Space(int(heads[name].shape[1]), s.metric) if name in heads else s)
              for name, s in manifest.spaces.items()}
    sources = tuple(
        WeightsSource(f"projection head of space {space} (lookalike train)", trained_on, license) for space in heads)
    sources += tuple(WeightsSource(f"alignment of space {space} from {a.source} (lookalike train)", trained_on, license)
                     for space, a in aligned.items())
    notes = " ".join(part for part in (manifest.notes, f"Tuned by lookalike train: {record}".strip()) if part)
    save_manifest(dataclasses.replace(
        manifest, model_id=model_id or f"{manifest.model_id}-tuned", model_version=model_version, spaces=spaces,
        weights=manifest.weights + sources, notes=notes), out)
    return load_bundle(out)
