"""bench_decoding: autoregressive vs parallel decoding, side by side on one backbone in one run.

For each setting (ALOHA: 3 cameras, 14-dim, chunk 25; LIBERO-like: 1 camera,
7-dim, chunk 8) one model is built and both decodings run on the same weights
and inputs:

- ``autoregressive``: OpenVLA's baseline, greedy decoding of chunk x dim
  action tokens (256 bins) one at a time with a KV cache;
- ``parallel``: OFT, one forward pass over chunk x dim placeholder tokens with
  bidirectional attention, then the L1 regression head.

Both produce the same full chunk, so actions/s = chunk_size / median latency
and the ratio is parallel over autoregressive. The two are timed interleaved
(one autoregressive call, then a share of the parallel calls, repeated) so a
change in machine load hits both alike. Timed: the model call on
preprocessed inputs (images already tensors, prompt already tokenized), with
device synchronization on GPU. ``--backbone 7b-random`` builds OpenVLA-7B's
published dimensions with random weights (bf16; meant for a GPU).

Run: ``ros2 run oft_policy bench_decoding`` or, from the built workspace,
``bench_decoding --backbone tiny --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SETTINGS = {
    "aloha": {"cameras": 3, "action_dim": 14, "chunk_size": 25},
    "libero": {"cameras": 1, "action_dim": 7, "chunk_size": 8},
}
INSTRUCTION = "fold the towel and put it in the basket"


def _config(backbone: str, setting: dict, openvla_dir):
    from oft_policy.model import OFTConfig

    dim = setting["action_dim"]
    return OFTConfig(
        backbone="tiny" if backbone == "tiny" else "openvla",
        openvla_path=None if backbone == "tiny" else str(openvla_dir),
        decoding="parallel",
        chunk_size=setting["chunk_size"],
        action_dim=dim,
        joint_names=tuple(f"joint_{i}" for i in range(dim)),
        camera_names=tuple(f"cam_{i}" for i in range(setting["cameras"])),
        use_film=True,
        use_proprio=True,
    )


def _build(backbone: str, setting: dict, device: str, workdir: Path):
    from oft_policy.model import build_model, build_tokenizer, preprocess_images, tokenize_prompts
    from oft_policy.model.openvla import CONFIG_FILE, published_config_dict

    if backbone == "7b-random":
        # A config.json with the published fields only: the 7B dims, no weights needed.
        (workdir / CONFIG_FILE).write_text(json.dumps(published_config_dict()))
    config = _config(backbone, setting, workdir)
    model = build_model(config, device=device, seed=0, load_base_weights=False).eval()
    tokenizer = build_tokenizer(_config("tiny", setting, workdir))  # same prompt length class; ids in range
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(setting["cameras"])]
    pixel_values = preprocess_images(images, config.image_size, config.center_crop_scale)[None].to(device)
    input_ids, attention_mask = tokenize_prompts(tokenizer, [INSTRUCTION], config.prompt_template)
    proprio = torch.zeros(1, setting["action_dim"], device=device)
    return model, (pixel_values, input_ids.to(device), attention_mask.to(device), proprio)


def _time_interleaved(parallel_fn, ar_fn, iters: int, ar_iters: int, warmup: int, device: str):
    """Latencies (ms) of both decodings, interleaved so that both see the same machine load.

    Each round times one autoregressive call and then its share of the parallel calls.
    """
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn):
        start = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - start) * 1e3

    for _ in range(warmup):
        parallel_fn()
    ar_fn()
    sync()
    parallel, autoregressive = [], []
    for round_index in range(ar_iters):
        autoregressive.append(timed(ar_fn))
        share = iters * (round_index + 1) // ar_iters - iters * round_index // ar_iters
        parallel.extend(timed(parallel_fn) for _ in range(share))
    return parallel, autoregressive


def _percentiles(latencies_ms: list) -> dict:
    values = np.asarray(latencies_ms)
    return {key: round(float(np.percentile(values, q)), 3) for key, q in (("p50", 50), ("p95", 95), ("p99", 99))}


def bench_setting(backbone: str, setting: dict, device: str, iters: int, ar_iters: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model, inputs = _build(backbone, setting, device, Path(tmp))
    with torch.inference_mode():
        parallel, autoregressive = _time_interleaved(
            lambda: model(*inputs), lambda: model.generate_autoregressive(*inputs), iters, ar_iters, warmup, device
        )
    chunk = setting["chunk_size"]
    # Rounded first, so the reported ratio is exactly the ratio of the reported rates.
    parallel_rate = round(chunk / (statistics.median(parallel) / 1e3), 3)
    ar_rate = round(chunk / (statistics.median(autoregressive) / 1e3), 3)
    del model
    return {
        "ar_actions_per_s": ar_rate,
        "parallel_actions_per_s": parallel_rate,
        "ratio": round(parallel_rate / ar_rate, 2),
        "parallel_latency_ms": _percentiles(parallel),
        "ar_latency_ms": _percentiles(autoregressive),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: str, backbone: str) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"cpu ({_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return f"{name}; backbone {backbone}; torch {torch.__version__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "7b-random"), default="tiny")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--iters", type=int, default=50, help="timed parallel-decoding calls per setting")
    parser.add_argument("--ar-iters", type=int, default=20, help="timed autoregressive calls per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.ar_iters < 1:
        parser.error("--iters and --ar-iters must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    torch.set_num_threads(args.threads)

    results = {"device": describe_device(args.device, args.backbone), "settings": {}}
    print(f"device: {results['device']}")
    print(f"{'setting':8} {'decoding':15} {'actions/s':>10} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for name in args.settings:
        row = bench_setting(args.backbone, SETTINGS[name], args.device, args.iters, args.ar_iters, args.warmup)
        results["settings"][name] = row
        for label, rate, lat in (("autoregressive", row["ar_actions_per_s"], row["ar_latency_ms"]),
                                 ("parallel", row["parallel_actions_per_s"], row["parallel_latency_ms"])):
            print(f"{name:8} {label:15} {rate:10.1f} {lat['p50']:9.2f} {lat['p95']:9.2f} {lat['p99']:9.2f}")
        print(f"{name:8} parallel / autoregressive = {row['ratio']:.1f}x")
        sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
