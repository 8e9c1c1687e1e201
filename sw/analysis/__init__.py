"""Co-design analysis: where compute, memory and bandwidth go.

Modules:

* :mod:`sw.analysis.llm`: LLM proxy workloads from their published
  configurations (BERT-base, Llama-2-7B, OPT-13B): weight and KV-cache bytes,
  footprint against batch and sequence length, FLOPs and DRAM bytes of prefill
  and decode, and the layers themselves as PyTorch modules.
* :mod:`sw.analysis.gpu`: a GPU reference measured with the torch profiler:
  per-layer time, achieved FLOP/s and bandwidth, and MBU against the GPU's peaks.
"""
