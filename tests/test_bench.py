"""The MNIST bench's gates, on synthetic figures: accuracy, speed against a baseline of the
same code path, and the choice (or refusal) of a baseline by code path."""

import json

import pytest

from seqkit.core.dispatch import path_name
from seqkit.errors import SeqkitError
from seqkit.mnist import bench

NATIVE_BF16 = {"device": "cpu", "layers": ["lstm native"], "bf16_gradients": True, "bf16_recurrence": False}
XLA = {"device": "cpu", "layers": ["lstm xla-fused"], "bf16_gradients": False, "bf16_recurrence": False}


def _figures(config, path=NATIVE_BF16, accuracy=0.97, rate=1000.0, gflops=100.0) -> dict:
    return {
        "config": config.comparable(),
        "code_path": path,
        "test_accuracy": accuracy,
        "train_samples_per_sec": rate,
        "machine_gflops": gflops,
    }


@pytest.fixture
def config():
    return bench.profile_config("quick")


def test_speed_is_reported_and_fails_a_run_only_under_a_tolerance_given(config):
    baseline = bench.Baseline(bench.Path("base.json"), _figures(config))
    halved = bench.compare(_figures(config, rate=500.0), baseline, config)
    assert halved.normalised_speed_ratio == 0.5 and not halved.failures  # reported, not failed on
    config = bench.profile_config("quick", speed_tolerance=0.2)
    slowest_passing = _figures(config, rate=1000.0 * 0.8 * 1.01)
    assert not bench.compare(slowest_passing, baseline, config).failures
    # The same machine (GEMM) and 1.3x slower: the gate trips, naming the figure.
    slower = bench.compare(_figures(config, rate=1000.0 / 1.3), baseline, config)
    assert [f.split(" is ")[0] for f in slower.failures] == ["train_samples_per_sec"]
    # Half as fast on a machine half as fast: level.
    assert bench.compare(_figures(config, rate=500.0, gflops=50.0), baseline, config).normalised_speed_ratio == 1.0


def test_the_accuracy_gate(config):
    baseline = bench.Baseline(bench.Path("base.json"), _figures(config, accuracy=0.97))
    assert not bench.compare(_figures(config, accuracy=0.97 - config.accuracy_tolerance / 2), baseline, config).failures
    worse = bench.compare(_figures(config, accuracy=0.97 - 2 * config.accuracy_tolerance), baseline, config)
    assert [f.split(" ")[0] for f in worse.failures] == ["test_accuracy"]


def test_a_baseline_of_another_code_path_judges_accuracy_only(config):
    baseline = bench.Baseline(bench.Path("base.json"), _figures(config, path=NATIVE_BF16), speed=False)
    lost_fast_path = _figures(config, path=XLA, rate=300.0)
    cmp = bench.compare(lost_fast_path, baseline, config)
    assert not cmp.failures and not cmp.speed
    assert "not compared" in bench.format_table({**lost_fast_path, **_table_figures()}, cmp)


def _table_figures() -> dict:
    return {"test_loss": 0.1, "train_seconds": 1.0, "parameters": 1, "peak_memory_mib": 1.0}


def test_an_explicit_baseline_of_another_code_path_is_refused_by_name(config, tmp_path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps(_figures(config, path=NATIVE_BF16)))
    with pytest.raises(SeqkitError) as caught:
        bench.choose_baseline(config, XLA, str(path))
    message = str(caught.value)
    assert path_name(NATIVE_BF16) in message and path_name(XLA) in message and "do not compare" in message
    chosen, line = bench.choose_baseline(config, NATIVE_BF16, str(path))
    assert chosen.speed and str(path) in line


def test_the_shipped_baselines_cover_each_path_once_and_match_their_profiles():
    for profile in bench.PROFILES:
        shipped = bench.shipped_baselines(profile)
        assert shipped, f"no baseline ships for profile {profile}"
        paths = []
        for file in shipped:
            figures = json.loads(file.read_text())
            bench.check_baseline(figures, bench.profile_config(profile))
            paths.append(json.dumps(figures["code_path"], sort_keys=True))
        assert len(set(paths)) == len(paths), f"two {profile} baselines of one code path"


def test_a_default_run_takes_the_shipped_baseline_of_its_path_or_says_there_is_none(config):
    shipped = [json.loads(p.read_text())["code_path"] for p in bench.shipped_baselines("quick")]
    chosen, line = bench.choose_baseline(config, shipped[0])
    assert chosen.speed and chosen.figures["code_path"] == shipped[0] and "this code path" in line
    elsewhere = {"device": "tpu", "layers": ["lstm elsewhere"], "bf16_gradients": False, "bf16_recurrence": False}
    chosen, line = bench.choose_baseline(config, elsewhere)
    assert not chosen.speed and line.startswith("No baseline found for this code path")
    chosen, line = bench.choose_baseline(bench.profile_config("quick", units=7), shipped[0])
    assert chosen is None and line.startswith("No baseline found")


def test_a_baseline_made_before_a_setting_existed_is_still_compared(config):
    result = _figures(config)
    older = config.comparable()
    del older["train"]["ema"], older["model"]["bidirectional"]  # settings added since, at their defaults
    assert bench.baseline_settings({"config": older}) == config.comparable()
    assert not bench.compare(result, {**result, "config": older}, config).failures
    older["train"]["lr"] = 1.0
    with pytest.raises(SeqkitError, match=r"other settings \(train differ\)"):
        bench.compare(result, {**result, "config": older}, config)
    with pytest.raises(SeqkitError, match="lacks seqkit bench figures"):
        bench.compare(result, {"test_accuracy": 0.97, "config": config.comparable()}, config)
