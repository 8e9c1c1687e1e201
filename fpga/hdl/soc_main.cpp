// A C++ Verilator harness for the FPGA SoC top (fpga/soc.py): the host's end of the UART,
// served over stdin/stdout, so that Python talks to the simulated SoC in bytes only.
//
// The harness knows no protocol: it shifts the bytes it is given onto the SoC's uart_rx
// line (8N1, DIVISOR clock cycles a bit) and decodes the SoC's uart_tx line into bytes,
// as a USB serial adapter would. One command a line, one reply a line:
//   reset                      pulse rst; forget bytes queued and received      -> ok
//   send HEX                   queue bytes for the SoC's uart_rx                -> ok
//   recv N TIMEOUT IDLE        run until N bytes have come, or some have and the
//                              line has been idle IDLE cycles, or none came in
//                              TIMEOUT cycles; the bytes (hex, maybe none)      -> ok HEX
//   wait CYCLES                run CYCLES cycles, or until the busy LED goes off -> ok RAN
//   leds                       the LEDs                                         -> ok VALUE
//   cycles                     cycles since the start                           -> ok CYCLES
// A bad command answers "error MESSAGE". End of input ends the harness. Bytes keep
// moving on both lines in every command that runs the clock; bytes received outside a
// recv are kept for the next one.
#include <cstdint>
#include <cstdio>
#include <deque>
#include <iostream>
#include <sstream>
#include <string>

#include "Vsoc.h"
#include "verilated.h"

static Vsoc* top;
static uint64_t now = 0;
static int divisor = 8;

// Host to SoC: the byte being sent and its position (bit 0 start, 1-8 data, 9 stop).
static std::deque<uint8_t> to_soc;
static int tx_bit = -1;
static int tx_timer = 0;
// SoC to host.
static std::deque<uint8_t> from_soc;
static int rx_state = 0;  // 0 idle, 1 start, 2..9 data bits, 10 stop
static int rx_timer = 0;
static uint8_t rx_byte = 0;
static uint64_t rx_last = 0;  // cycle when the last byte ended

static int host_line() {
    if (tx_bit < 0) {
        if (to_soc.empty()) return 1;
        tx_bit = 0;
        tx_timer = divisor;
    }
    const uint8_t byte = to_soc.front();
    if (tx_bit == 0) return 0;
    if (tx_bit <= 8) return (byte >> (tx_bit - 1)) & 1;
    return 1;
}

static void host_advance() {
    if (tx_bit < 0) return;
    if (--tx_timer == 0) {
        tx_timer = divisor;
        if (++tx_bit == 10) {
            to_soc.pop_front();
            tx_bit = -1;
        }
    }
}

static void host_sample(int line) {
    switch (rx_state) {
    case 0:
        if (!line) {
            rx_state = 1;
            rx_timer = divisor / 2;
        }
        break;
    default:
        if (--rx_timer > 0) break;
        if (rx_state == 1) {
            if (line) { rx_state = 0; break; }   // a glitch
        } else if (rx_state <= 9) {
            rx_byte = (rx_byte >> 1) | (line ? 0x80 : 0);
        } else {
            if (line) from_soc.push_back(rx_byte);  // a bad stop bit drops the byte
            rx_last = now;
            rx_state = 0;
            break;
        }
        rx_state++;
        rx_timer = divisor;
    }
}

static void tick() {
    top->uart_rx = host_line();
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    now++;
    host_advance();
    host_sample(top->uart_tx);
}

static std::string hex(const std::deque<uint8_t>& bytes, size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < n; i++) {
        out += digits[bytes[i] >> 4];
        out += digits[bytes[i] & 15];
    }
    return out;
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIVISOR\n", argv[0]);
        return 2;
    }
    divisor = std::atoi(argv[1]);
    top = new Vsoc;
    top->uart_rx = 1;
    top->rst = 1;
    for (int i = 0; i < 4; i++) tick();
    top->rst = 0;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        std::ostringstream reply;
        if (cmd == "reset") {
            top->rst = 1;
            to_soc.clear();
            from_soc.clear();
            tx_bit = -1;
            rx_state = 0;
            for (int i = 0; i < 4; i++) tick();
            top->rst = 0;
            reply << "ok";
        } else if (cmd == "send") {
            std::string data;
            in >> data;
            if (data.size() % 2) {
                reply << "error odd hex string";
            } else {
                for (size_t i = 0; i < data.size(); i += 2)
                    to_soc.push_back((uint8_t)std::stoul(data.substr(i, 2), nullptr, 16));
                reply << "ok";
            }
        } else if (cmd == "recv") {
            uint64_t n = 0, timeout = 0, idle = 0;
            in >> n >> timeout >> idle;
            const uint64_t begin = now;
            while (from_soc.size() < n) {
                const bool got = !from_soc.empty();
                if (got && rx_state == 0 && to_soc.empty() && now - rx_last >= idle) break;
                if (!got && now - begin >= timeout) break;
                tick();
            }
            const size_t take = from_soc.size() < n ? from_soc.size() : n;
            reply << "ok " << hex(from_soc, take);
            from_soc.erase(from_soc.begin(), from_soc.begin() + take);
        } else if (cmd == "wait") {
            uint64_t cycles = 0, ran = 0;
            in >> cycles;
            while (ran < cycles && (top->leds >> 1 & 1)) {
                tick();
                ran++;
            }
            reply << "ok " << ran;
        } else if (cmd == "leds") {
            reply << "ok " << (unsigned)top->leds;
        } else if (cmd == "cycles") {
            reply << "ok " << now;
        } else {
            reply << "error unknown command " << cmd;
        }
        std::cout << reply.str() << std::endl;
    }
    top->final();
    delete top;
    return 0;
}
