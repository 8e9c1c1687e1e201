"""Co-design analysis: where compute, memory and bandwidth go.

Modules:

* :mod:`sw.analysis.llm`: LLM proxy workloads from their published
  configurations (BERT-base, Llama-2-7B, OPT-13B): weight and KV-cache bytes,
  footprint against batch and sequence length, FLOPs and DRAM bytes of prefill
  and decode, and the layers themselves as PyTorch modules.
* :mod:`sw.analysis.traffic`: what a compiled program does to each memory
  (rows and bits per SRAM, DRAM bytes, MAC slots, lane operations), per layer,
  counted from its instruction words.
* :mod:`sw.analysis.perf`: the performance model: a compiled program's cycles, stalls,
  per-layer cycles and instruction timeline, simulated per instruction as the RTL
  times them (checked against the RTL's counters).
* :mod:`sw.analysis.energy`: those counts priced with a cited per-operation
  table (default: Horowitz, ISSCC 2014, 45 nm) or the user's own.
* :mod:`sw.analysis.roofline`: device roofs (an NPU config's from its array,
  clock and bus; a GPU's from its peaks) and plots of workloads on them.
* :mod:`sw.analysis.gpu`: a GPU reference measured with the torch profiler:
  per-layer time, achieved FLOP/s and bandwidth, and MBU against the GPU's peaks.
* :mod:`sw.analysis.layers`: the layer-level performance model (no program): per-layer
  cycles, MAC slots and real MACs, DRAM bytes and SRAM traffic, from the compiler's own
  tiling functions; what sweeps use.
* :mod:`sw.analysis.sweep`: design-space sweeps on a process pool or Dask distributed,
  with an area proxy, CSV and Pareto plots (``python -m sw.sweep``).
* :mod:`sw.analysis.scalesim`: the SCALE-Sim v3 baseline, its cached per-layer
  estimates (made by ``bench/scalesim_ref.py`` in SCALE-Sim's own environment).
"""
