"""python -m sw.run and python -m sw.demo: help, a run, errors."""
import subprocess
import sys

from sw.run import main


def cli(*args):
    return subprocess.run([sys.executable, "-m", "sw.run", *args], capture_output=True, text=True)


def test_help():
    out = cli("--help")
    assert out.returncode == 0 and "--backend" in out.stdout and "module:attr" in out.stdout


def test_run_zoo_model_and_save(tmp_path, capsys):
    path = tmp_path / "m.npuprog"
    assert main(["mlp", "--preset", "small", "--batch", "2", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "bit-exact against the golden: True" in out
    assert "net_0" in out and path.exists()


def test_run_module_attr(capsys):
    assert main(["sw.zoo:LeNet5", "--input-shape", "1,28,28", "--preset", "small"]) == 0
    assert "bit-exact against the golden: True" in capsys.readouterr().out


def test_errors_are_one_line():
    for args, message in [(["nosuch"], "neither a zoo name"),
                          (["sw.zoo:Nope", "--input-shape", "3"], "has no attribute 'Nope'"),
                          (["sw.zoo:LeNet5"], "give --input-shape"),
                          (["mlp", "--rows", "1"], "NPUConfig.rows is 1"),
                          (["mlp", "--input-shape", "a,b"], "not a comma-separated list")]:
        out = cli(*args)
        assert out.returncode == 2, args
        assert message in out.stderr and "Traceback" not in out.stderr


def test_demo_help():
    out = subprocess.run([sys.executable, "-m", "sw.demo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--no-rtl" in out.stdout


def test_demo_without_rtl_runs_and_shows_its_analysis():
    out = subprocess.run([sys.executable, "-m", "sw.demo", "--no-rtl", "--rows", "4", "--cols", "4"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "PASS: functional model outputs equal the PyTorch integer golden" in out.stdout
    for text in ("co-design analysis", "(cycles: model; energy: Horowitz, ISSCC 2014, 45 nm",
                 "uJ per sample", "ridge", "hotspots: ", "time per operator class: gemm",
                 "analysis/report.html"):
        assert text in out.stdout, text


def test_im2col_on_by_default_and_off_by_flag(tmp_path, capsys):
    import sw
    for flags, layout in (([], "im2col"), (["--no-im2col"], "nhwc")):
        path = tmp_path / f"lenet{len(flags)}.npuprog"
        assert main(["lenet5", "--preset", "tiny", "--save", str(path), *flags]) == 0
        assert "bit-exact against the golden: True" in capsys.readouterr().out
        assert sw.Program.load(path).input.layout == layout
