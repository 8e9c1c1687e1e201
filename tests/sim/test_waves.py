"""The waveform switch: a traced build dumps the run (FST, or VCD without lz4 headers)."""
import pathlib

import numpy as np

from hw import NPUConfig
from hw import isa
from sim.functional import place_program
from sim.rtl import Job, RTLSimulator


def test_waves_switch_dumps_a_waveform(tmp_path):
    dram = np.zeros(1024, np.uint8)
    n = place_program(dram, 0, [isa.sync(queue="compute"), isa.finish()])
    result = RTLSimulator(NPUConfig.preset("tiny"), waves=True).run([Job(dram, 0, n)],
                                                                    workdir=tmp_path)[0]
    assert result.status == "done"
    dumps = list(pathlib.Path(tmp_path).glob("dump.*"))
    assert dumps and dumps[0].suffix in (".fst", ".vcd") and dumps[0].stat().st_size > 0
    if pathlib.Path("/usr/include/lz4.h").exists():
        assert dumps[0].suffix == ".fst"
