"""bench_decoding runs end to end and writes exactly the documented JSON keys (no timing assertions)."""

import json

LATENCY_KEYS = {"p50", "p95", "p99"}
SETTING_KEYS = {"ar_actions_per_s", "parallel_actions_per_s", "ratio", "parallel_latency_ms", "ar_latency_ms"}


def check_results(results, settings):
    assert set(results) == {"device", "settings"} and "cpu" in results["device"]
    assert set(results["settings"]) == set(settings)
    for row in results["settings"].values():
        assert set(row) == SETTING_KEYS
        assert set(row["parallel_latency_ms"]) == set(row["ar_latency_ms"]) == LATENCY_KEYS
        for latencies in (row["parallel_latency_ms"], row["ar_latency_ms"]):
            assert 0 < latencies["p50"] <= latencies["p95"] <= latencies["p99"]
        assert row["ratio"] == round(row["parallel_actions_per_s"] / row["ar_actions_per_s"], 2)


def test_bench_in_process_both_settings(tmp_path):
    from oft_policy.bench.decoding import main

    out = tmp_path / "bench.json"
    assert main(["--iters", "2", "--ar-iters", "1", "--warmup", "0", "--json", str(out)]) == 0
    check_results(json.loads(out.read_text()), ("aloha", "libero"))
