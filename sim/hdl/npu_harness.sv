// Simulation harness: the generated `npu` with its DRAM either inside the design
// (axi_ram_fast, use_ext = 0) or on the ext_axi_* ports for a cocotb AXI RAM
// model (use_ext = 1). One Verilator build serves both memory models.
//
// CPP_HARNESS = 1 builds it for the C++ harness (fast_main.cpp): the internal RAM only
// (use_ext and the ext_axi_* inputs are ignored) and rst and err_* through a flip-flop,
// so that no design logic hangs combinationally off a top-level input. Verilator
// evaluates every input-dependent net on each eval() (twice a cycle), and the
// synchronous reset of every Amaranth flip-flop made that most of the design; with the
// flip-flop the C++ harness runs about 3x faster (docs/verification.md). The NPU sees rst
// one cycle later (the harness's reset command clocks once more); nothing else changes.
module npu_harness #(
    parameter int DW = 128,
    parameter int WORDS_LOG2 = 20,
    parameter bit CPP_HARNESS = 0
) (
    input  logic clk,
    input  logic rst,
    input  logic use_ext,
    input  logic mem_load,
    input  logic mem_dump,
    input  logic [31:0] dump_lo,
    input  logic [31:0] dump_hi,
    // Error injection into the internal RAM (axi_ram_fast: err_lo, err_hi, err_resp)
    input  logic [31:0] err_lo,
    input  logic [31:0] err_hi,
    input  logic [1:0] err_resp,
    // CSRs (AXI4-Lite slave)
    input  logic [11:0] s_axil_awaddr, input logic [2:0] s_axil_awprot, input logic s_axil_awvalid,
    output logic s_axil_awready,
    input  logic [31:0] s_axil_wdata, input logic [3:0] s_axil_wstrb, input logic s_axil_wvalid,
    output logic s_axil_wready,
    output logic [1:0] s_axil_bresp, output logic s_axil_bvalid, input logic s_axil_bready,
    input  logic [11:0] s_axil_araddr, input logic [2:0] s_axil_arprot, input logic s_axil_arvalid,
    output logic s_axil_arready,
    output logic [31:0] s_axil_rdata, output logic [1:0] s_axil_rresp, output logic s_axil_rvalid,
    input  logic s_axil_rready,
    // DRAM for an external model (AXI4 master)
    output logic [1:0] ext_axi_awid, output logic [31:0] ext_axi_awaddr,
    output logic [7:0] ext_axi_awlen, output logic [2:0] ext_axi_awsize,
    output logic [1:0] ext_axi_awburst, output logic ext_axi_awvalid, input logic ext_axi_awready,
    output logic [DW-1:0] ext_axi_wdata, output logic [DW/8-1:0] ext_axi_wstrb,
    output logic ext_axi_wlast, output logic ext_axi_wvalid, input logic ext_axi_wready,
    input  logic [1:0] ext_axi_bid, input logic [1:0] ext_axi_bresp, input logic ext_axi_bvalid,
    output logic ext_axi_bready,
    output logic [1:0] ext_axi_arid, output logic [31:0] ext_axi_araddr,
    output logic [7:0] ext_axi_arlen, output logic [2:0] ext_axi_arsize,
    output logic [1:0] ext_axi_arburst, output logic ext_axi_arvalid, input logic ext_axi_arready,
    input  logic [1:0] ext_axi_rid, input logic [DW-1:0] ext_axi_rdata,
    input  logic [1:0] ext_axi_rresp, input logic ext_axi_rlast, input logic ext_axi_rvalid,
    output logic ext_axi_rready,
    output logic done,
    output logic error,
    output logic busy,
    output logic [31:0] layer,
    // Trace port: one bit per queue (load, compute, store): an instruction starts,
    // completes; the queue waits for tokens
    output logic [2:0] trace_begin,
    output logic [2:0] trace_end,
    output logic [2:0] trace_stall,
    output logic irq,
    // Bus monitor: the handshakes of the NPU's AXI4 master (addresses, lengths and strobes
    // are on the ext_axi_* outputs whichever memory model serves them)
    output logic mon_ar,
    output logic mon_aw,
    output logic mon_w
);
    logic [1:0] awid, arid, bid, rid, bresp, rresp, awburst, arburst;
    logic [31:0] awaddr, araddr;
    logic [7:0] awlen, arlen;
    logic [2:0] awsize, arsize;
    logic awvalid, awready, wlast, wvalid, wready, bvalid, bready;
    logic arvalid, arready, rlast, rvalid, rready;
    logic [DW-1:0] wdata, rdata;
    logic [DW/8-1:0] wstrb;

    // The inputs as the design sees them (registered in the C++ harness's build)
    logic rst_i, use_ext_i;
    logic [31:0] err_lo_i, err_hi_i;
    logic [1:0] err_resp_i;
    if (CPP_HARNESS) begin : g_cpp_inputs
        always @(posedge clk) begin
            rst_i <= rst;
            err_lo_i <= err_lo;
            err_hi_i <= err_hi;
            err_resp_i <= err_resp;
        end
        assign use_ext_i = 1'b0;
    end else begin : g_inputs
        assign rst_i = rst;
        assign use_ext_i = use_ext;
        assign err_lo_i = err_lo;
        assign err_hi_i = err_hi;
        assign err_resp_i = err_resp;
    end

    npu dut (
        .clk(clk), .rst(rst_i),
        .m_axi__awid(awid), .m_axi__awaddr(awaddr), .m_axi__awlen(awlen), .m_axi__awsize(awsize),
        .m_axi__awburst(awburst), .m_axi__awvalid(awvalid), .m_axi__awready(awready),
        .m_axi__wdata(wdata), .m_axi__wstrb(wstrb), .m_axi__wlast(wlast), .m_axi__wvalid(wvalid),
        .m_axi__wready(wready),
        .m_axi__bid(bid), .m_axi__bresp(bresp), .m_axi__bvalid(bvalid), .m_axi__bready(bready),
        .m_axi__arid(arid), .m_axi__araddr(araddr), .m_axi__arlen(arlen), .m_axi__arsize(arsize),
        .m_axi__arburst(arburst), .m_axi__arvalid(arvalid), .m_axi__arready(arready),
        .m_axi__rid(rid), .m_axi__rdata(rdata), .m_axi__rresp(rresp), .m_axi__rlast(rlast),
        .m_axi__rvalid(rvalid), .m_axi__rready(rready),
        .s_axil__awaddr(s_axil_awaddr), .s_axil__awprot(s_axil_awprot),
        .s_axil__awvalid(s_axil_awvalid), .s_axil__awready(s_axil_awready),
        .s_axil__wdata(s_axil_wdata), .s_axil__wstrb(s_axil_wstrb), .s_axil__wvalid(s_axil_wvalid),
        .s_axil__wready(s_axil_wready), .s_axil__bresp(s_axil_bresp),
        .s_axil__bvalid(s_axil_bvalid), .s_axil__bready(s_axil_bready),
        .s_axil__araddr(s_axil_araddr), .s_axil__arprot(s_axil_arprot),
        .s_axil__arvalid(s_axil_arvalid), .s_axil__arready(s_axil_arready),
        .s_axil__rdata(s_axil_rdata), .s_axil__rresp(s_axil_rresp),
        .s_axil__rvalid(s_axil_rvalid), .s_axil__rready(s_axil_rready),
        .irq(irq), .done(done), .error(error), .busy(busy), .layer(layer),
        .trace_begin(trace_begin), .trace_end(trace_end), .trace_stall(trace_stall)
    );

    // Internal RAM
    logic i_awready, i_wready, i_bvalid, i_arready, i_rlast, i_rvalid;
    logic [1:0] i_bid, i_bresp, i_rid, i_rresp;
    logic [DW-1:0] i_rdata;
    axi_ram_fast #(.DW(DW), .IDW(2), .WORDS_LOG2(WORDS_LOG2)) ram (
        .clk(clk), .rst(rst_i), .mem_load(mem_load), .mem_dump(mem_dump),
        .dump_lo(dump_lo), .dump_hi(dump_hi),
        .err_lo(err_lo_i), .err_hi(err_hi_i), .err_resp(err_resp_i),
        .awid(awid), .awaddr(awaddr), .awlen(awlen), .awvalid(awvalid & !use_ext_i),
        .awready(i_awready),
        .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wvalid(wvalid & !use_ext_i), .wready(i_wready),
        .bid(i_bid), .bresp(i_bresp), .bvalid(i_bvalid), .bready(bready & !use_ext_i),
        .arid(arid), .araddr(araddr), .arlen(arlen), .arvalid(arvalid & !use_ext_i),
        .arready(i_arready),
        .rid(i_rid), .rdata(i_rdata), .rresp(i_rresp), .rlast(i_rlast), .rvalid(i_rvalid),
        .rready(rready & !use_ext_i)
    );

    // External model
    assign ext_axi_awid = awid;       assign ext_axi_awaddr = awaddr;
    assign ext_axi_awlen = awlen;     assign ext_axi_awsize = awsize;
    assign ext_axi_awburst = awburst; assign ext_axi_awvalid = awvalid & use_ext_i;
    assign ext_axi_wdata = wdata;     assign ext_axi_wstrb = wstrb;
    assign ext_axi_wlast = wlast;     assign ext_axi_wvalid = wvalid & use_ext_i;
    assign ext_axi_bready = bready & use_ext_i;
    assign ext_axi_arid = arid;       assign ext_axi_araddr = araddr;
    assign ext_axi_arlen = arlen;     assign ext_axi_arsize = arsize;
    assign ext_axi_arburst = arburst; assign ext_axi_arvalid = arvalid & use_ext_i;
    assign ext_axi_rready = rready & use_ext_i;

    assign awready = use_ext_i ? ext_axi_awready : i_awready;
    assign wready  = use_ext_i ? ext_axi_wready  : i_wready;
    assign bid     = use_ext_i ? ext_axi_bid     : i_bid;
    assign bresp   = use_ext_i ? ext_axi_bresp   : i_bresp;
    assign bvalid  = use_ext_i ? ext_axi_bvalid  : i_bvalid;
    assign arready = use_ext_i ? ext_axi_arready : i_arready;
    assign rid     = use_ext_i ? ext_axi_rid     : i_rid;
    assign rdata   = use_ext_i ? ext_axi_rdata   : i_rdata;
    assign rresp   = use_ext_i ? ext_axi_rresp   : i_rresp;
    assign rlast   = use_ext_i ? ext_axi_rlast   : i_rlast;
    assign rvalid  = use_ext_i ? ext_axi_rvalid  : i_rvalid;

    assign mon_ar = arvalid & arready;
    assign mon_aw = awvalid & awready;
    assign mon_w  = wvalid & wready;
endmodule
