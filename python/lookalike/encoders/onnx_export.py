"""torch module -> ONNX file, shared by the exporters (build time only: needs
the ``build`` extra)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

OPSET = 17


def export_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Exports ``module`` in eval mode to a single ONNX file at ``path``.

    Uses torch's TorchScript-based exporter (``dynamo=False``): it traces these
    feed-forward towers in seconds and gives plain graphs that onnxruntime
    optimises well; the dynamo exporter takes far longer on transformer code
    and adds nothing for graphs without data-dependent control flow.
    """
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns about tracing Python values into constants
        # (shapes fixed by the config, e.g. the image size): intended here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the weights of MatMul/Gemm nodes (activations
    stay float, scales are computed per batch at run time).

    Per-channel scales: on all-MiniLM-L6-v2 they keep the cosine to the fp32
    vector at 0.99+, where one scale per tensor drops it to 0.95.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs a hint about shape-inference pre-processing through the
    # root logger; it changes nothing for dynamic weight-only quantisation.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
