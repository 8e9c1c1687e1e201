// A plain C++ Verilator driver for npu_harness: no Python and no VPI while the NPU runs.
//
// Usage: npu_fast JOBS_FILE CSR_BYTES [verilator args]
// Each line of JOBS_FILE: in_bin out_bin nbytes insn_base insn_count lo hi max_cycles result
// For each job: reset, copy in_bin into the in-design RAM, program the CSRs over
// AXI4-Lite, start, run until DONE or ERROR (or max_cycles), read every register,
// write the RAM back to out_bin and "status offset=value ..." (every register below
// CSR_BYTES) to the result file.
// If NPU_PROGRESS names a file, progress is written there every 500k cycles.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

static Vtop* top;
static uint64_t cycles;

static void tick() {
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    cycles++;
}

static void csr_write(uint32_t addr, uint32_t data) {
    top->s_axil_awaddr = addr;
    top->s_axil_awprot = 0;
    top->s_axil_awvalid = 1;
    top->s_axil_wdata = data;
    top->s_axil_wstrb = 0xF;
    top->s_axil_wvalid = 1;
    top->s_axil_bready = 1;
    for (int i = 0; i < 100; i++) {
        top->clk = 0;
        top->eval();
        bool fire = top->s_axil_awready && top->s_axil_wready;
        tick();
        if (fire) break;
    }
    top->s_axil_awvalid = 0;
    top->s_axil_wvalid = 0;
    for (int i = 0; i < 100 && !top->s_axil_bvalid; i++) tick();
    tick();  // B accepted (bready is high)
    top->s_axil_bready = 0;
}

static uint32_t csr_read(uint32_t addr) {
    top->s_axil_araddr = addr;
    top->s_axil_arprot = 0;
    top->s_axil_arvalid = 1;
    top->s_axil_rready = 0;
    for (int i = 0; i < 100; i++) {
        top->clk = 0;
        top->eval();
        bool fire = top->s_axil_arready;
        tick();
        if (fire) break;
    }
    top->s_axil_arvalid = 0;
    for (int i = 0; i < 100 && !top->s_axil_rvalid; i++) tick();
    uint32_t value = top->s_axil_rdata;
    top->s_axil_rready = 1;
    tick();
    top->s_axil_rready = 0;
    return value;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s JOBS_FILE CSR_BYTES\n", argv[0]);
        return 2;
    }
    const uint32_t csr_bytes = (uint32_t)std::strtoul(argv[2], nullptr, 0);
    Verilated::commandArgs(argc, argv);
    top = new Vtop;
    auto& mem = top->rootp->npu_harness__DOT__ram__DOT__mem;
    const size_t words = sizeof(mem) / sizeof(mem[0]);
    const size_t word_bytes = sizeof(mem[0]);
    const char* progress = std::getenv("NPU_PROGRESS");
    std::ifstream jobs(argv[1]);
    std::string line;
    size_t used_words = 0;
    int index = 0;
    top->use_ext = 0;
    top->mem_load = 0;
    top->mem_dump = 0;
    while (std::getline(jobs, line)) {
        if (line.empty()) continue;
        std::istringstream in(line);
        std::string in_bin, out_bin, result;
        uint64_t nbytes, base, count, lo, hi, max_cycles;
        in >> in_bin >> out_bin >> nbytes >> base >> count >> lo >> hi >> max_cycles >> result;
        size_t nwords = (nbytes + word_bytes - 1) / word_bytes;
        if (nwords > words) {
            std::fprintf(stderr, "job %d: image of %llu bytes exceeds the RAM\n", index,
                         (unsigned long long)nbytes);
            return 1;
        }
        // Load the image straight into the RAM array, clearing what the last job left.
        std::vector<uint8_t> image(nwords * word_bytes, 0);
        FILE* f = std::fopen(in_bin.c_str(), "rb");
        if (!f || std::fread(image.data(), 1, nbytes, f) != nbytes) {
            std::fprintf(stderr, "job %d: cannot read %s\n", index, in_bin.c_str());
            return 1;
        }
        std::fclose(f);
        for (size_t i = 0; i < std::max(nwords, used_words); i++) {
            if (i < nwords)
                std::memcpy(&mem[i], image.data() + i * word_bytes, word_bytes);
            else
                std::memset(&mem[i], 0, word_bytes);
        }
        used_words = nwords;

        top->rst = 1;
        for (int i = 0; i < 3; i++) tick();
        top->rst = 0;
        tick();
        csr_write(0x020, (uint32_t)base);
        csr_write(0x024, (uint32_t)count);
        csr_write(0x028, (uint32_t)lo);
        csr_write(0x02C, (uint32_t)hi);
        cycles = 0;
        csr_write(0x010, 1);
        uint64_t next_report = 500000;
        // Cycles per layer: a cycle counts (as in the CYCLES counter) when busy is high
        // before the clock edge, for the layer the compute unit is in.
        std::map<uint32_t, uint64_t> layer_cycles;
        uint32_t cur_layer = 0;
        uint64_t cur_count = 0;
        while (!top->done && !top->error && cycles < max_cycles) {
            const bool counted = top->busy;
            const uint32_t layer = top->layer;
            tick();
            if (counted) {
                if (layer != cur_layer) {
                    if (cur_count) layer_cycles[cur_layer] += cur_count;
                    cur_layer = layer;
                    cur_count = 0;
                }
                cur_count++;
            }
            if (progress && cycles >= next_report) {
                next_report += 500000;
                FILE* p = std::fopen(progress, "w");
                if (p) {
                    std::fprintf(p, "{\"job\": %d, \"cycles\": %llu}\n", index,
                                 (unsigned long long)cycles);
                    std::fclose(p);
                }
            }
        }
        const char* status = top->done ? "done" : top->error ? "error" : "timeout";
        std::ofstream res(result);
        res << status;
        for (uint32_t addr = 0; addr < csr_bytes; addr += 4) res << " " << addr << "=" << csr_read(addr);
        res << "\n";
        if (cur_count) layer_cycles[cur_layer] += cur_count;
        res << "layers";
        for (const auto& kv : layer_cycles) res << " " << kv.first << "=" << kv.second;
        res << "\n";
        FILE* o = std::fopen(out_bin.c_str(), "wb");
        for (size_t i = 0; i < nwords; i++) std::fwrite(&mem[i], 1, word_bytes, o);
        std::fclose(o);
        index++;
    }
    top->final();
    delete top;
    return 0;
}
