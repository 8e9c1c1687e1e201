// A fast AXI4 RAM for simulation: the NPU's DRAM inside the simulated design.
// Loaded and dumped in bulk with $readmemh / $writememh (file names from the
// plusargs +DRAM_IN=... and +DRAM_OUT=...), so a whole program runs without
// Python on every cycle. One read burst and one write burst at a time, INCR
// bursts, byte strobes; addresses past the end answer SLVERR. Error injection: a beat
// with a byte in [err_lo, err_hi) answers err_resp (SLVERR 2'b10 or DECERR
// 2'b11; 2'b00 injects nothing): a read beat there returns zeros, a write beat there is
// dropped and its burst's response is err_resp.
module axi_ram_fast #(
    parameter int DW = 128,
    parameter int IDW = 2,
    parameter int WORDS_LOG2 = 20
) (
    input  logic clk,
    input  logic rst,
    input  logic mem_load,                  // pulse: read +DRAM_IN into the RAM
    input  logic mem_dump,                  // pulse: write words [dump_lo, dump_hi] to +DRAM_OUT
    input  logic [31:0] dump_lo,
    input  logic [31:0] dump_hi,
    input  logic [31:0] err_lo,
    input  logic [31:0] err_hi,
    input  logic [1:0] err_resp,
    input  logic [IDW-1:0] awid, input logic [31:0] awaddr, input logic [7:0] awlen,
    input  logic awvalid, output logic awready,
    input  logic [DW-1:0] wdata, input logic [DW/8-1:0] wstrb, input logic wlast,
    input  logic wvalid, output logic wready,
    output logic [IDW-1:0] bid, output logic [1:0] bresp, output logic bvalid, input logic bready,
    input  logic [IDW-1:0] arid, input logic [31:0] araddr, input logic [7:0] arlen,
    input  logic arvalid, output logic arready,
    output logic [IDW-1:0] rid, output logic [DW-1:0] rdata, output logic [1:0] rresp,
    output logic rlast, output logic rvalid, input logic rready
);
    localparam int BL2 = $clog2(DW / 8);
    localparam longint WORDS = 64'd1 << WORDS_LOG2;
    logic [DW-1:0] mem [0:WORDS-1];
    string fin, fout;

    initial begin
        if (!$value$plusargs("DRAM_IN=%s", fin)) fin = "dram_in.hex";
        if (!$value$plusargs("DRAM_OUT=%s", fout)) fout = "dram_out.hex";
    end

    always @(posedge clk) begin
        if (mem_load) $readmemh(fin, mem);
        if (mem_dump) $writememh(fout, mem, dump_lo, dump_hi);
    end

    // Reads
    logic r_busy;
    logic [31:0] r_word;
    logic [7:0] r_left;
    logic [IDW-1:0] r_id;
    logic r_oob, r_inj;
    assign arready = !r_busy || (rvalid && rready && rlast);   // back-to-back bursts
    assign rvalid = r_busy;
    assign rid = r_id;
    assign r_oob = (r_word >> WORDS_LOG2) != 0;
    assign r_inj = err_resp != 2'b00 && {r_word + 1, {BL2{1'b0}}} > {{BL2{1'b0}}, err_lo}
                   && {r_word, {BL2{1'b0}}} < {{BL2{1'b0}}, err_hi};
    assign rdata = (r_oob || r_inj) ? '0 : mem[r_word[WORDS_LOG2-1:0]];
    assign rresp = r_oob ? 2'b10 : r_inj ? err_resp : 2'b00;
    assign rlast = r_left == 0;
    always @(posedge clk) begin
        if (rst) begin
            r_busy <= 1'b0;
        end else if (arvalid && arready) begin
            r_busy <= 1'b1;
            r_word <= araddr >> BL2;
            r_left <= arlen;
            r_id <= arid;
        end else if (rvalid && rready) begin
            r_word <= r_word + 1;
            r_left <= r_left - 1;
            if (rlast) r_busy <= 1'b0;
        end
    end

    // Writes
    logic w_busy, b_pend, w_oob_any, w_inj, w_inj_any;
    logic [1:0] w_inj_resp;
    logic [31:0] w_word;
    logic [IDW-1:0] w_id;
    assign awready = !w_busy && !b_pend;
    assign wready = w_busy;
    assign bvalid = b_pend;
    assign bid = w_id;
    assign bresp = w_oob_any ? 2'b10 : w_inj_any ? w_inj_resp : 2'b00;
    assign w_inj = err_resp != 2'b00 && {w_word + 1, {BL2{1'b0}}} > {{BL2{1'b0}}, err_lo}
                   && {w_word, {BL2{1'b0}}} < {{BL2{1'b0}}, err_hi};
    always @(posedge clk) begin
        if (rst) begin
            w_busy <= 1'b0;
            b_pend <= 1'b0;
        end else begin
            if (awvalid && awready) begin
                w_busy <= 1'b1;
                w_word <= awaddr >> BL2;
                w_id <= awid;
                w_oob_any <= 1'b0;
                w_inj_any <= 1'b0;
            end
            if (wvalid && wready) begin
                if (w_inj) begin
                    w_inj_any <= 1'b1;
                    w_inj_resp <= err_resp;
                end else if ((w_word >> WORDS_LOG2) == 0) begin
                    for (int i = 0; i < DW / 8; i++)
                        if (wstrb[i]) mem[w_word[WORDS_LOG2-1:0]][8*i +: 8] <= wdata[8*i +: 8];
                end else begin
                    w_oob_any <= 1'b1;
                end
                w_word <= w_word + 1;
                if (wlast) begin
                    w_busy <= 1'b0;
                    b_pend <= 1'b1;
                end
            end
            if (bvalid && bready) b_pend <= 1'b0;
        end
    end
endmodule
