"""Run SCALE-Sim v3 once, with its quadratic read-buffer trace fixed in memory.

    python bench/scalesim_runner.py -c CFG -t TOPO -l LAYOUT -p LOGDIR [--gemm] [--unpatched]

Executed by ``bench/scalesim_ref.py`` inside SCALE-Sim's own virtual environment (it
imports nothing from this project). It calls SCALE-Sim's normal entry point, the
``scalesim.scale_sim.scalesim`` class that ``python -m scalesim.scale`` uses, with traces
off, and writes its usual reports (COMPUTE_REPORT.csv, BANDWIDTH_REPORT.csv,
DETAILED_ACCESS_REPORT.csv) under LOGDIR/<run_name>/.

The patch (skipped with --unpatched): ``memory.read_buffer.read_buffer.new_prefetch``
appends every prefetch to its DRAM trace with
``self.trace_matrix = np.concatenate((self.trace_matrix, this_prefetch_trace), axis=0)``,
which copies the whole trace on every prefetch: quadratic in the number of prefetches
(448 s for a 512^3 GEMM at 16x16 with 32 KiB buffers). Here ``trace_matrix`` becomes a
property over a list of chunks that concatenates once, when the trace is read, and that
one line of ``new_prefetch`` becomes an append. The line is replaced in the installed
method's own source (``inspect.getsource``), so nothing else of SCALE-Sim is copied and
the package on disk is untouched; if the line is not found (another SCALE-Sim version),
the runner stops with an error instead of running unpatched. Row order and dtype are
those of the repeated concatenation, so the reports are byte-identical.
"""
import argparse
import inspect
import sys
import textwrap
import time

import numpy as np

_SLOW_LINE = "self.trace_matrix = np.concatenate((self.trace_matrix, this_prefetch_trace), axis=0)"
_FAST_LINE = "self._trace_chunks.append(this_prefetch_trace)"


def _get_trace(self):
    chunks = self.__dict__["_trace_chunks"]
    if len(chunks) > 1:
        chunks[:] = [np.concatenate(chunks, axis=0)]
    return chunks[0]


def _set_trace(self, value):
    self.__dict__["_trace_chunks"] = [value]


def patch_read_buffer() -> None:
    """Make SCALE-Sim's read-buffer DRAM trace linear instead of quadratic.

    Raises
    ------
    RuntimeError
        The installed ``read_buffer.new_prefetch`` does not contain the line this patch
        replaces exactly once (a SCALE-Sim other than 3.0.0).
    """
    from scalesim.memory import read_buffer as module

    cls = module.read_buffer
    source = textwrap.dedent(inspect.getsource(cls.new_prefetch))
    if source.count(_SLOW_LINE) != 1:
        raise RuntimeError(
            f"scalesim.memory.read_buffer.new_prefetch does not contain {_SLOW_LINE!r} "
            f"exactly once; this patch is written for scalesim 3.0.0")
    namespace: dict = {}
    exec(compile(source.replace(_SLOW_LINE, _FAST_LINE), module.__file__, "exec"),
         module.__dict__, namespace)
    cls.new_prefetch = namespace["new_prefetch"]
    cls.trace_matrix = property(_get_trace, _set_trace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", required=True, metavar="CFG", help="SCALE-Sim config file")
    parser.add_argument("-t", required=True, metavar="TOPO", help="topology CSV")
    parser.add_argument("-l", required=True, metavar="LAYOUT", help="layout CSV")
    parser.add_argument("-p", required=True, metavar="LOGDIR", help="report directory")
    parser.add_argument("--gemm", action="store_true", help="the topology is M,N,K rows")
    parser.add_argument("--unpatched", action="store_true",
                        help="run SCALE-Sim as installed (quadratic read buffer)")
    args = parser.parse_args(argv)
    if not args.unpatched:
        patch_read_buffer()
    from scalesim.scale_sim import scalesim

    t0 = time.perf_counter()
    sim = scalesim(save_disk_space=True, verbose=False, config=args.c, topology=args.t,
                   layout=args.l, input_type_gemm=args.gemm)
    sim.run_scale(top_path=args.p)
    print(f"scalesim_runner: {'unpatched' if args.unpatched else 'patched'} run "
          f"in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
