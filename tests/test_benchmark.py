import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from cladec_cli import benchmark, runtime
from cladec_cli.benchmark import Case, EpochTimer, matmul_gflops, steady_seconds, time_case
from cladec_cli.benchmark_report import default_out, device_slug, markdown_table
from conftest import benchmark_script, invoke, write_npz

COMMANDS = ["train-classifier", "train-decoder --layer -1,-2,-3,-4", "train-decoder --layer -1 --alpha 0",
            "train-refae --layer -1", "train-decoder --layer -1 --alpha 0.99", "train-decoder --layer -2 --alpha 0"]


class FakeClock:
    """Wall-clock time; the CPU clock runs at half its pace."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def cpu(self):
        return self.now / 2


def use_clock(monkeypatch, clock):
    monkeypatch.setattr(benchmark.time, "perf_counter", clock)
    monkeypatch.setattr(benchmark.time, "process_time", clock.cpu)


def fake_run(clock, epoch_seconds, calls, label):
    """A run that 'trains' by moving the clock on, calling the timer's hooks as `fit` would: each call
    takes `epoch_seconds`, or with a list of those the next one of them."""
    per_call = epoch_seconds if isinstance(epoch_seconds[0], list) else None

    def run(epochs, callbacks):
        seconds = per_call[calls.count(label)] if per_call else epoch_seconds
        calls.append(label)
        timer = callbacks[0]
        timer.on_train_begin()
        for epoch in range(epochs):
            timer.on_epoch_begin(epoch)
            clock.now += seconds[epoch]
        timer.on_train_end()
    return run


def test_epoch_timer_adds_up_several_fits(monkeypatch):
    clock = FakeClock()
    use_clock(monkeypatch, clock)
    timer, calls = EpochTimer(), []
    fake_run(clock, [3.0, 1.0], calls, "a")(2, [timer])
    fake_run(clock, [2.0, 0.5], calls, "b")(2, [timer])
    assert timer.epoch_seconds() == [5.0, 1.5]
    assert timer.epoch_seconds(clock=1) == [2.5, 0.75]


def test_steady_seconds_leave_out_each_runs_first_epoch():
    assert steady_seconds([[9.0, 2.0, 3.0], [8.0, 4.0, 1.5]]) == (1.5, 2.5)


def test_sides_take_turns_and_the_row_compares_them(monkeypatch):
    clock = FakeClock()
    use_clock(monkeypatch, clock)
    calls = []
    case = Case("cmd", fake_run(clock, [5.0, 2.0, 2.0], calls, "tool"),
                fake_run(clock, [5.0, 3.0, 3.0], calls, "peer"), flops_per_image=10 ** 6)
    row = time_case(case, epochs=3, repeats=2, n_images=1000, peaks={"float32": 1.0})
    assert calls == ["tool", "peer", "peer", "tool"]
    assert row["cladec"]["s_per_epoch"] == 2.0 and row["peer"]["s_per_epoch"] == 3.0
    assert row["speedup"] == pytest.approx(1.5) and row["cpu_speedup"] == pytest.approx(1.5)
    assert row["cladec"]["cpu_s_per_epoch"] == 1.0
    assert row["cladec"]["images_per_s"] == pytest.approx(500)
    assert row["cladec"]["gflop_per_s"] == pytest.approx(0.5)
    assert row["cladec"]["fraction_of_peak"]["float32"] == pytest.approx(0.5)


def test_each_turn_compares_the_runs_that_ran_side_by_side(monkeypatch):
    # In the second turn the machine is quiet while the peer runs and busy while cladec does: the fastest
    # epochs over all turns set the peer's quiet run against cladec's, the turns do not.
    clock = FakeClock()
    use_clock(monkeypatch, clock)
    calls = []
    case = Case("cmd", fake_run(clock, [[5.0, 2.0, 2.0], [5.0, 2.5, 2.5], [5.0, 2.0, 2.0]], calls, "tool"),
                fake_run(clock, [[5.0, 3.0, 3.0], [5.0, 1.0, 1.0], [5.0, 2.6, 2.6]], calls, "peer"),
                flops_per_image=10 ** 6)
    row = time_case(case, epochs=3, repeats=3, n_images=1000, peaks={"float32": 1.0})
    assert calls == ["tool", "peer", "peer", "tool", "tool", "peer"]
    assert row["speedup"] == pytest.approx(0.5)
    assert row["median_speedup"] == pytest.approx(1.3)  # medians 2.0 (cladec) and 2.6
    assert row["turn_speedups"] == pytest.approx([1.5, 0.4, 1.3])
    assert row["median_turn_speedup"] == pytest.approx(1.3)
    assert row["turn_cpu_speedups"] == pytest.approx([1.5, 0.4, 1.3])
    assert row["median_turn_cpu_speedup"] == pytest.approx(1.3)
    assert "| 1.30x | 1.30x (0.40-1.50) |" in markdown_table({
        "runtime": {"device": "CPU, 2 cores", "backend": "tensorflow", "precision": "float32", "xla": False,
                    "deterministic": True, "steps_per_execution": 16},
        "peak_gflop_per_s": {"float32": 100.0}, "load_average": {"start": [1.0], "end": [1.0]}, "epochs": 3,
        "cpu": {"name": "test CPU"}, "keras": keras.__version__, "train_images": 1000, "dataset": "npz",
        "batch_size": 128, "repeats": 3, "date": "now", "rows": [{**row, "peer_name": "plain Keras"}]})


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_matmul_peak_is_a_rate_in_every_precision(dtype):
    assert matmul_gflops(dtype, 64, min_seconds=0.01) > 0


def test_default_output_is_named_after_the_device():
    assert device_slug("CPU, 2 cores") == "cpu-2-cores"
    assert str(default_out("GPU:0 NVIDIA H100 80GB HBM3")) == "docs/results/speed-gpu-0-nvidia-h100-80gb-hbm3.json"


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory):
    """`cladec benchmark` end to end on a tiny synthetic dataset (one batch an epoch)."""
    root = tmp_path_factory.mktemp("bench")
    dataset = f"npz:{write_npz(root / 'tiny.npz', n_train=64, n_test=16)}"
    out = root / "speed.json"
    result = invoke("benchmark", "--dataset", dataset, "--epochs", 2, "--out", out, "--json")
    return out, json.loads(result.stdout)


def test_benchmark_times_every_command_against_plain_keras(benchmarked):
    out, printed = benchmarked
    saved = json.loads(out.read_text())
    assert [row["command"] for row in saved["rows"]] == COMMANDS
    assert saved["train_images"] == 64 and saved["epochs"] == 2
    assert saved["lr_schedule"] == "cosine" and saved["lr"] > 0
    assert saved["peak_gflop_per_s"]["float32"] > 0
    for row in saved["rows"]:
        fused = row["command"] == "train-decoder --layer -1,-2,-3,-4"
        assert row["peer_name"] == ("4 one-layer cladec runs" if fused else "plain Keras")
        for side in ("cladec", "peer"):
            assert len(row["epoch_seconds"][side]) == 1 and len(row["epoch_seconds"][side][0]) == 2
            assert row[side]["s_per_epoch"] == row["epoch_seconds"][side][0][1]
        assert row["speedup"] == pytest.approx(row["peer"]["s_per_epoch"] / row["cladec"]["s_per_epoch"])
        assert row["train_flops_per_image"] > 1e6
    assert printed["rows"] == saved["rows"]


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_plain_peer_follows_cladecs_learning_rate_schedule(tmp_path, schedule):
    from cladec_cli.data.datasets import load_dataset
    from cladec_cli.training import TrainSettings, make_optimizer

    dataset = load_dataset(f"npz:{write_npz(tmp_path / 'tiny.npz', n_train=300, n_test=16)}")
    settings = TrainSettings(epochs=3, batch_size=128, lr=2e-3, lr_schedule=schedule)
    bench = benchmark.Bench(dataset, settings, tmp_path)
    tools = make_optimizer(settings, steps_per_epoch=3)
    peers = keras.optimizers.Adam(bench.plain_rate(epochs=3))
    for step in (0, 4, 8, 9):
        tools.iterations.assign(step)
        peers.iterations.assign(step)
        assert float(peers.learning_rate) == pytest.approx(float(tools.learning_rate), abs=1e-9)
    assert float(peers.learning_rate) == (0.0 if schedule == "cosine" else pytest.approx(2e-3))


def test_benchmark_writes_a_markdown_table_beside_the_json(benchmarked):
    out, printed = benchmarked
    table = out.with_suffix(".md").read_text()
    assert table == markdown_table(printed)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == COMMANDS


def test_benchmark_refuses_to_overwrite_results(benchmarked):
    out, _ = benchmarked
    before = out.read_text()
    result = invoke("benchmark", "--dataset", "npz:/nonexistent.npz", "--out", out, expect=2)
    assert "already exists" in result.output
    assert out.read_text() == before


def _profile(*planes):
    """A stand-in for jax.profiler.ProfileData: planes of lines of (start_ns, duration_ns, name) events."""
    def event(start, duration, name):
        return SimpleNamespace(start_ns=start, duration_ns=duration, name=name)

    return SimpleNamespace(planes=[SimpleNamespace(name=name, lines=[
        SimpleNamespace(name=line, events=[event(*e) for e in events]) for line, events in lines.items()])
        for name, lines in planes])


def test_step_profile_counts_each_busy_nanosecond_once():
    busy_ns = benchmark_script("step_profile").busy_ns
    assert busy_ns([]) == 0
    # two streams overlapping by 10, one kernel inside another, a gap of 40 before the last
    assert busy_ns([(0, 30, "a"), (20, 20, "b"), (22, 5, "c"), (80, 10, "d")]) == 50


def test_step_profile_summarizes_the_device_streams_and_falls_back_to_the_host():
    step_profile = benchmark_script("step_profile")
    device = ("/device:GPU:0", {
        "Stream #13(Compute)": [(0, 400, "conv"), (500, 100, "fusion"), (1000, 400, "conv"), (1500, 100, "fusion")],
        "Stream #14(MemcpyH2D)": [(450, 100, "MemcpyH2D")],
        "XLA Ops": [(0, 2000, "derived: counted already on the streams")],
    })
    host = ("/host:CPU", {"python": [(0, 5000, "fit")], "tf_XLAEigen/1": [(0, 300, "conv"), (300, 0, "marker")]})
    summary = step_profile.summarize(_profile(("/host:metadata", {}), host, device), steps=2, epoch_s=2e-6, top=2)
    assert summary["plane"] == "/device:GPU:0"
    assert summary["events"] == 5 and summary["events_per_step"] == 2.5
    assert summary["activity_ms_per_step"] == pytest.approx(1100 / 1e6 / 2)
    assert summary["busy_ms_per_step"] == pytest.approx(1050 / 1e6 / 2)  # the copy overlaps a fusion by 50
    assert summary["busy_fraction"] == pytest.approx(1050 / 2000)
    assert summary["wall_ms_per_step"] == pytest.approx(1e-3)
    assert [(k["name"], k["count"]) for k in summary["top"]] == [("conv", 2), ("fusion", 2)]
    assert summary["top"][0]["share_of_activity"] == pytest.approx(800 / 1100)
    assert summary["lines"]["/device:GPU:0"]["XLA Ops"] == {"events": 1, "ms": 2000 / 1e6}
    on_cpu = step_profile.summarize(_profile(("/host:metadata", {}), host), steps=1, epoch_s=1e-6)
    assert on_cpu["plane"] == "/host:CPU" and on_cpu["events"] == 1 and on_cpu["busy_fraction"] == pytest.approx(0.3)
    with pytest.raises(SystemExit, match="no device activity"):  # a GPU run whose trace lacks CUPTI's planes
        step_profile.summarize(_profile(("/host:metadata", {}), host), steps=1, epoch_s=1e-6, need_device=True)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="reads JAX profiler traces")
def test_step_profile_traces_the_last_epoch_of_a_real_fit(tmp_path):
    step_profile = benchmark_script("step_profile")
    x = np.random.default_rng(0).uniform(size=(64, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile("adam", "mse")

    def run(epochs, callbacks):
        model.fit(x, x[:, :4], batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks)

    side = step_profile.profile_side(run, 3, 4, tmp_path / "traces")
    assert len(side["untraced_epoch_s"]) == 2 and side["steady_untraced_epoch_s"] > 0
    [traced] = side["fits"]
    assert traced["events"] > 0 and traced["steps"] == 4 and 0 < traced["busy_fraction"] <= 1
    assert list((tmp_path / "traces").glob("fit0/**/*.xplane.pb"))


def test_output_layer_ab_times_cladecs_training_with_both_last_convolutions(tmp_path, npz_dataset):
    from cladec_cli.architectures import build_classifier
    from cladec_cli.cladec import decoder_for
    from cladec_cli.layers import resolve_layer
    from cladec_cli.refae import build_refae

    ab = benchmark_script("output_layer_ab")
    out = tmp_path / "ab.json"
    try:
        assert ab.main([str(out), "--dataset", npz_dataset, "--epochs", "2", "--rounds", "1",
                        "--precision", "bfloat16"]) == 0
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        classifier = build_classifier((32, 32, 1), 4)
        layer = resolve_layer(classifier, -1)
        built, in_refae = {}, {}
        for variant, dtype in ab.VARIANTS.items():
            with ab.decoders_built_with(dtype):
                built[variant] = decoder_for(classifier, layer).get_layer("dec_out").compute_dtype
                in_refae[variant] = [l.compute_dtype for l in build_refae(classifier, layer)._flatten_layers()
                                     if l.name == "dec_out"]
        default = decoder_for(classifier, layer).get_layer("dec_out").compute_dtype
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert built == {"float32": "float32", "compute": "bfloat16"} and default == "bfloat16"
    assert in_refae == {"float32": ["float32"], "compute": ["bfloat16"]}
    result = json.loads(out.read_text())
    assert result["runtime"]["precision"] == "bfloat16"
    cases = {"layers -1 to -4 fused", "decoder layer -1", "refae layer -1"}
    assert {(r["case"], r["output_layer"]) for r in result["rows"]} == \
        {(case, v) for case in cases for v in ("float32", "compute")}
    assert all(r["s_per_epoch"] > 0 for r in result["rows"])
    for summary in result["summary"].values():
        assert summary["compute_speedup"] == pytest.approx(
            summary["float32_s_per_epoch"] / summary["compute_s_per_epoch"])


def test_xla_flags_ab_runs_each_variant_in_its_own_process_with_its_flags(tmp_path, npz_dataset, monkeypatch):
    ab = benchmark_script("xla_flags_ab")
    out = tmp_path / "flags.json"
    dump = f"--xla_dump_to={tmp_path / 'dump'}"
    monkeypatch.setenv("XLA_FLAGS", "")
    assert ab.main([str(out), "--variant", "plain=", "--variant", f"dumped={dump}", "--cases", "decoder",
                    "--dataset", npz_dataset, "--epochs", "2", "--rounds", "2"]) == 0
    result = json.loads(out.read_text())
    assert [(r["variant"], r["round"], r["case"]) for r in result["rows"]] == \
        [("plain", 0, "decoder"), ("dumped", 0, "decoder"), ("plain", 1, "decoder"), ("dumped", 1, "decoder")]
    assert {r["variant"]: r["xla_flags"] for r in result["rows"]} == {"plain": "", "dumped": dump}
    for name in ("plain", "dumped"):
        assert result["best_s_per_epoch"][name]["decoder"] == min(
            r["s_per_epoch"] for r in result["rows"] if r["variant"] == name)
    for bad in (["--variant", "noequals"], ["--cases", "fused,nope"]):
        with pytest.raises(SystemExit):
            ab.main([str(tmp_path / "x.json"), *bad])


def test_xla_flags_ab_records_a_failed_process_and_goes_on(tmp_path, monkeypatch):
    ab = benchmark_script("xla_flags_ab")

    def fake_child(args, flags, work):
        if flags == "--bad":
            return [{"error": "exit 1 with XLA_FLAGS='--bad': unknown flag"}]
        return [{"case": "decoder", "s_per_epoch": 2.0 if flags else 1.0, "images_per_s": 1.0}]

    monkeypatch.setattr(ab, "run_child", fake_child)
    out = tmp_path / "flags.json"
    assert ab.main([str(out), "--variant", "a=", "--variant", "bad=--bad", "--variant", "b=-x", "--cases", "decoder",
                    "--rounds", "1"]) == 1
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["rows"]] == ["a", "bad", "b"]
    assert "unknown flag" in result["rows"][1]["error"]
    assert result["best_s_per_epoch"] == {"a": {"decoder": 1.0}, "b": {"decoder": 2.0}}
    with pytest.raises(SystemExit):
        ab.main([str(out), "--variant", "a=", "--variant", "a=-y"])


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="XLA reads these flags through JAX here")
@pytest.mark.parametrize("name", ["graphs-off", "graphs-all"])
def test_xla_accepts_each_default_variants_flags(name):
    import subprocess
    import sys

    flags = benchmark_script("xla_flags_ab").VARIANTS[name]
    done = subprocess.run([sys.executable, "-c", "import jax; print(jax.jit(lambda x: x + 1)(1))"],
                          env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr[-2000:]


def test_as_if_on_a_gpu_resolves_the_settings_of_an_older_gpu(tmp_path, npz_dataset):
    script = Path(__file__).parents[1] / "benchmarks" / "as_if_on_a_gpu.py"
    out = tmp_path / "c.h5"
    done = subprocess.run([sys.executable, str(script), "train-classifier", "--dataset", npz_dataset, "--epochs", "0",
                           "--out", str(out)], env={**os.environ, "CC": "7.0"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "device: GPU:0 (pretended, compute capability 7.0)" in done.stderr
    xla = "off" if runtime.backend() == "torch" else "on"  # PyTorch runs eagerly
    assert f"precision float16; XLA {xla}; deterministic off; steps per execution 64" in done.stderr
    assert out.exists()
