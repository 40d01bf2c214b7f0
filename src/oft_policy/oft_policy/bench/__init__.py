"""Benchmark console scripts (bench_decoding, bench_executor): ratios measured side by side in one run."""
