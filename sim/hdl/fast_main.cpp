// A plain C++ Verilator harness for npu_harness: a register bus and a memory, served
// over stdin/stdout, with no Python and no VPI while the NPU runs.
//
// The harness knows no register: the driver (hw/driver.py, through sim/rtl.py's
// HarnessSession) owns the CSR sequence and sends it here as bus operations, as it
// will to the FPGA's UART bridge. One command a line, one reply a line:
//   reset                       pulse rst                                  -> ok
//   write OFFSET VALUE          AXI4-Lite write of a CSR                   -> ok
//   read OFFSET                 AXI4-Lite read of a CSR                    -> VALUE
//   wait CYCLES                 run until done or error, or CYCLES cycles  -> ok RAN
//   load ADDR NBYTES FILE       FILE's first NBYTES into the RAM at ADDR   -> ok
//   dump ADDR NBYTES FILE       NBYTES of the RAM from ADDR into FILE      -> ok
//   clear                       zero the whole RAM                         -> ok
//   layers                      busy cycles per layer since the last call  -> ok L=C ...
//   size                        bytes of RAM                               -> ok BYTES
//   trace on | off              record the trace port's events or stop     -> ok
//   trace dump FILE             the events recorded, into FILE; forgotten  -> ok EVENTS
//   inject LO HI RESP           RAM beats at byte addresses [LO, HI) answer RESP
//                               (2 SLVERR, 3 DECERR, 0 nothing)             -> ok
//   monitor LO HI               watch the bus against the window [LO, HI),
//                               forgetting what was seen                    -> ok
//   monitor                     what the bus monitor saw since then         -> ok AR W BAD KIND ADDR
//   pins                        the NPU's output pins                       -> ok DONE ERROR BUSY IRQ
// A bad command answers "error MESSAGE". End of input ends the harness.
// Cycles per layer: a cycle counts (as in the CYCLES counter) when busy is high before
// the clock edge, for the layer the compute unit is in.
// Trace events: while tracing, in each counted cycle, for each queue q (0 load, 1 compute,
// 2 store) whose trace_begin bit is high an event (cycle, q, 0, stall) and whose trace_end
// bit is high an event (cycle, q, 1, 0), begin before end; cycle counts from 0 at the run's
// first busy cycle (the CYCLES counter's value then), stall is the cycles the queue waited
// for tokens (trace_stall) since its last begin. FILE holds 4 little-endian uint64 per event.
// Untraced runs only test one flag per busy cycle.
// Bus monitor: in every cycle, each AR handshake's burst [ARADDR, ARADDR + (ARLEN+1)*BEAT)
// must lie in the window widened to whole beats (a read of a window's edge byte reads its
// beat), and each W handshake's bytes with their strobe set must lie in the window itself.
// AR counts read bursts, W write beats, BAD the accesses outside; KIND (0 none, 1 read,
// 2 write) and ADDR name the first of those.
#include <cstdint>
#if VM_COVERAGE
#include "verilated_cov.h"
#endif
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

static Vtop* top;
static std::map<uint32_t, uint64_t> layer_cycles;
static uint32_t cur_layer = 0;   // counted in cur_count, flushed into layer_cycles on a change
static uint64_t cur_count = 0;

static bool tracing = false;
static bool was_busy = false;
static uint64_t run_cycle = 0;              // cycles since the run's first busy cycle
static uint64_t stall_count[3] = {0, 0, 0}; // stall cycles per queue since its last begin
static std::vector<uint64_t> events;        // 4 words per event

static uint64_t beat_bytes = 4;
static uint64_t mon_lo = 0, mon_hi = 1ull << 40;
static uint64_t mon_ar = 0, mon_w = 0, mon_bad = 0, mon_kind = 0, mon_addr = 0;
static std::deque<std::pair<uint64_t, uint64_t>> mon_bursts;   // write bursts: address, beats left

static void mon_fault(uint64_t kind, uint64_t addr) {
    if (!mon_bad++) {
        mon_kind = kind;
        mon_addr = addr;
    }
}

static void monitor_cycle() {
    if (top->mon_ar) {
        const uint64_t lo = mon_lo / beat_bytes * beat_bytes;
        const uint64_t hi = (mon_hi + beat_bytes - 1) / beat_bytes * beat_bytes;
        const uint64_t addr = top->ext_axi_araddr;
        const uint64_t end = addr + ((uint64_t)top->ext_axi_arlen + 1) * beat_bytes;
        mon_ar++;
        if (addr < lo || end > hi) mon_fault(1, addr);
    }
    if (top->mon_aw) mon_bursts.push_back({top->ext_axi_awaddr, (uint64_t)top->ext_axi_awlen + 1});
    if (top->mon_w) {
        mon_w++;
        if (mon_bursts.empty()) {
            mon_fault(2, ~0ull);   // a W beat before its AW
        } else {
            auto& burst = mon_bursts.front();
            const uint8_t* strb = reinterpret_cast<const uint8_t*>(&top->ext_axi_wstrb);
            for (uint64_t i = 0; i < beat_bytes; i++) {
                const uint64_t a = burst.first + i;
                if ((strb[i / 8] >> (i % 8) & 1) && (a < mon_lo || a >= mon_hi)) {
                    mon_fault(2, a);
                    break;
                }
            }
            burst.first += beat_bytes;
            if (--burst.second == 0) mon_bursts.pop_front();
        }
    }
}

static void trace_cycle() {
    if (!was_busy) {   // a new run: CYCLES restarts from 0 on START
        run_cycle = 0;
        for (auto& c : stall_count) c = 0;
    }
    const uint8_t begin = top->trace_begin, end = top->trace_end, stall = top->trace_stall;
    for (int q = 0; q < 3; q++) {
        if (begin >> q & 1) {
            events.insert(events.end(), {run_cycle, (uint64_t)q, 0, stall_count[q]});
            stall_count[q] = 0;
        }
        if (end >> q & 1) events.insert(events.end(), {run_cycle, (uint64_t)q, 1, 0});
        if (stall >> q & 1) stall_count[q]++;
    }
    run_cycle++;
    was_busy = true;
}

static void flush_layer() {
    if (cur_count) layer_cycles[cur_layer] += cur_count;
    cur_count = 0;
}

static void tick() {
    if (top->busy) {
        if (top->layer != cur_layer) {
            flush_layer();
            cur_layer = top->layer;
        }
        cur_count++;
        if (tracing) trace_cycle();
    } else {
        was_busy = false;
    }
    top->clk = 0;
    top->eval();
    if (top->mon_ar | top->mon_aw | top->mon_w) monitor_cycle();
    top->clk = 1;
    top->eval();
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
    Verilated::commandArgs(argc, argv);
    top = new Vtop;
    auto& mem = top->rootp->npu_harness__DOT__ram__DOT__mem;
    // The RAM's words are little-endian and contiguous: byte address = offset here.
    uint8_t* ram = reinterpret_cast<uint8_t*>(&mem[0]);
    const uint64_t ram_bytes = sizeof(mem);
    top->use_ext = 0;
    top->mem_load = 0;
    top->mem_dump = 0;
    top->err_lo = top->err_hi = top->err_resp = 0;
    beat_bytes = sizeof(mem[0]);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        std::ostringstream reply;
        if (cmd == "reset") {
            top->rst = 1;
            for (int i = 0; i < 3; i++) tick();
            top->rst = 0;
            tick();
            tick();   // the NPU sees rst through a flip-flop (npu_harness's CPP_HARNESS)
            cur_count = 0;
            layer_cycles.clear();
            mon_bursts.clear();
            reply << "ok";
        } else if (cmd == "write") {
            uint64_t offset, value;
            in >> offset >> value;
            csr_write((uint32_t)offset, (uint32_t)value);
            reply << "ok";
        } else if (cmd == "read") {
            uint64_t offset;
            in >> offset;
            reply << csr_read((uint32_t)offset);
        } else if (cmd == "wait") {
            uint64_t budget, ran = 0;
            in >> budget;
            while (!top->done && !top->error && ran < budget) {
                tick();
                ran++;
            }
            reply << "ok " << ran;
        } else if (cmd == "load" || cmd == "dump") {
            uint64_t addr, nbytes;
            std::string path;
            in >> addr >> nbytes >> path;
            if (in.fail() || addr > ram_bytes || nbytes > ram_bytes - addr) {
                reply << "error " << cmd << " of " << nbytes << " bytes at " << addr
                      << " is outside the RAM of " << ram_bytes << " bytes";
            } else if (cmd == "load") {
                FILE* f = std::fopen(path.c_str(), "rb");
                if (!f || std::fread(ram + addr, 1, nbytes, f) != nbytes) reply << "error cannot read " << path;
                else reply << "ok";
                if (f) std::fclose(f);
            } else {
                FILE* f = std::fopen(path.c_str(), "wb");
                if (!f || std::fwrite(ram + addr, 1, nbytes, f) != nbytes) reply << "error cannot write " << path;
                else reply << "ok";
                if (f) std::fclose(f);
            }
        } else if (cmd == "clear") {
            std::memset(ram, 0, ram_bytes);
            reply << "ok";
        } else if (cmd == "layers") {
            flush_layer();
            reply << "ok";
            for (const auto& kv : layer_cycles) reply << " " << kv.first << "=" << kv.second;
            layer_cycles.clear();
        } else if (cmd == "trace") {
            std::string what, path;
            in >> what;
            if (what == "on" || what == "off") {
                tracing = what == "on";
                events.clear();
                reply << "ok";
            } else if (what == "dump" && (in >> path)) {
                FILE* f = std::fopen(path.c_str(), "wb");
                if (!f || std::fwrite(events.data(), sizeof(uint64_t), events.size(), f) != events.size())
                    reply << "error cannot write " << path;
                else reply << "ok " << events.size() / 4;
                if (f) std::fclose(f);
                events.clear();
            } else {
                reply << "error trace takes on, off or dump FILE, not '" << line << "'";
            }
        } else if (cmd == "inject") {
            uint64_t lo, hi, resp;
            in >> lo >> hi >> resp;
            if (in.fail() || resp > 3 || lo > 0xFFFFFFFFull || hi > 0xFFFFFFFFull) {
                reply << "error inject takes LO HI RESP (32-bit addresses, RESP 0 to 3), not '"
                      << line << "'";
            } else {
                top->err_lo = (uint32_t)lo;
                top->err_hi = (uint32_t)hi;
                top->err_resp = (uint8_t)resp;
                reply << "ok";
            }
        } else if (cmd == "monitor") {
            uint64_t lo, hi;
            if (in >> lo >> hi) {
                mon_lo = lo;
                mon_hi = hi;
                mon_ar = mon_w = mon_bad = mon_kind = mon_addr = 0;
                reply << "ok";
            } else {
                reply << "ok " << mon_ar << " " << mon_w << " " << mon_bad << " " << mon_kind
                      << " " << mon_addr;
            }
        } else if (cmd == "pins") {
            reply << "ok " << (int)top->done << " " << (int)top->error << " " << (int)top->busy
                  << " " << (int)top->irq;
        } else if (cmd == "size") {
            reply << "ok " << ram_bytes;
        } else {
            reply << "error unknown command '" << cmd << "'";
        }
        std::cout << reply.str() << std::endl;
    }
    top->final();
#if VM_COVERAGE
    // Built with coverage (NPU_VERILATOR_ARGS, python -m sim.coverage): the counts, into
    // the working folder as cocotb's harness writes them.
    VerilatedCov::write("coverage.dat");
#endif
    delete top;
    return 0;
}
