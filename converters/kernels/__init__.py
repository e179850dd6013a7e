"""GPU kernels for the export paths (OpenAI Triton). Importable without Triton; calling a
kernel without it raises BfexportError. See converters/GPU.md for what has been verified."""

from converters.kernels.budgeted_attention import (
    KernelAttention,
    budgeted_attention,
    reference_budgeted_attention,
    use_kernel_attention,
)

__all__ = ["KernelAttention", "budgeted_attention", "reference_budgeted_attention", "use_kernel_attention"]
