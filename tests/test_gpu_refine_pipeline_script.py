"""benchmarks/gpu_refine_pipeline.py, the whole-stage GPU benchmark, as a CPU dry run (tiny model):
the script runs end to end and prints the lines the GPU session reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("segment_anything")

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_dry_run_prints_every_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_refine_pipeline.py"), "--model", "tiny", "--device", "cpu",
         "--scenes", "2", "--images-for-encoder", "4", "--workers", "2", "--torch-threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^machine: CPU .*torch \S+.* \d+ cpus", out, re.M), out
    m = re.search(r"^workspace: (\d+) images, (\d+) triplets, (\d+) encoder views", out, re.M)
    assert m and int(m[1]) == 4 and int(m[2]) > 0, out
    views = int(m[3])
    assert re.search(r"^\[tiny\] encoder-only b8: [\d.]+ img/s over 8 views", out, re.M), out
    assert "[tiny] host syncs in one measured segment_views call of 8 views: n/a" in out, out
    assert re.search(r"^\[tiny\] that call: [\d.]+ ms, its encoder batch alone [\d.]+ ms: decoding and measuring "
                     r"add -?[\d.]+ ms per view", out, re.M), out
    assert "[tiny] background embedding cache from cpu: equal True" in out, out
    stage = re.search(r"^\[tiny\] stage workers=2 encoder_batch=8 precision=fp32 pool=\w+: [\d.]+ s, 4 images, "
                      r"[\d.]+ img/s, (\d+) views", out, re.M)
    assert stage and int(stage[1]) == views, out          # the shim saw every view the catalog implies
    ratio = re.search(r"^\[tiny\] stage/encoder ratio=(\S+)", out, re.M)
    assert ratio and float(ratio[1]) > 0, out
    assert "[tiny] busy share: n/a (cpu)" in out
    assert re.search(r"^\[tiny\] stage workers=0: [\d.]+ s, 4 images", out, re.M), out
    assert "catalogs identical across worker counts: True" in out
    assert re.search(r"^\[tiny\] stage workers=2, dense masks copied back and measured on the host: .*"
                     r"catalogs identical: True$", out, re.M), out
    assert re.search(r"^\[tiny\] stage workers=2, measurements collected per view: .*catalogs identical: True$",
                     out, re.M), out
    summary = re.search(r"^model=tiny encoder_b8=(\S+) stage=(\S+) ratio=(\S+) busy=n/a workers=2$", out, re.M)
    assert summary and all(float(v) > 0 for v in summary.groups()), out
    assert "skipped" not in out


def test_budget_skips_instead_of_overrunning():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_refine_pipeline.py"), "--model", "tiny", "--device", "cpu",
         "--scenes", "1", "--budget-s", "1", "--torch-threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[tiny] skipped (budget)" in proc.stdout
    assert "catalogs identical across worker counts: skipped" in proc.stdout
    assert re.search(r"^model=tiny encoder_b8=skipped stage=skipped", proc.stdout, re.M)


def test_decode_ops_benchmark_counts_two_round_trips_per_batch():
    """benchmarks/bench_decode_ops.py: a batch of views comes back with 2 host round trips, one
    call per view with 2 each; the op counts it prints are positive; the decoder's FLOPs are a
    share of each encoder's that shrinks with fewer prompts and with the bigger encoder."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_decode_ops.py"), "--views", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "host round trips per 4 views: batched 2, one call per view 8" in proc.stdout, proc.stdout
    m = re.search(r"per view \(30 prompts, one chunk\): (\d+) kernel ops, (\d+) view ops", proc.stdout)
    assert m and int(m[1]) > 100 and int(m[2]) > 0, proc.stdout
    shares = {name: [float(v) for v in re.findall(r"GFLOP = ([0-9.]+) of the encoder", line)]
              for name, line in re.findall(r"^(vit_[bh]): encoder \d+ GFLOP per view; (.*)$", proc.stdout, re.M)}
    assert set(shares) == {"vit_b", "vit_h"} and all(len(v) == 3 for v in shares.values()), proc.stdout
    assert 0 < shares["vit_h"][0] < shares["vit_b"][0] < 0.5, shares       # same decoder, bigger encoder
    assert shares["vit_b"] == sorted(shares["vit_b"], reverse=True), shares  # fewer prompts, less work
