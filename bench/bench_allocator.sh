#!/usr/bin/env bash
# The heap settings of core/allocator.h against glibc's defaults
# (NAMM_SYSTEM_MALLOC=1), side by side in one run, on two hot paths of the
# language host: training steps (`namm train-lm`, forward + backward; short
# and 1k-token prompts) and
# greedy answering under a NAMM (`namm eval-text`, inference only).
# Prints wall time, kernel (sys) time and minor page faults of each run.
#   bench/bench_allocator.sh [LM_DIR] [STEPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
lm=${1:-models/lm}
steps=${2:-30}
threads=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$lm" "$steps" "$threads" "$work" <<'PY'
import os, resource, subprocess, sys, time
lm, steps, threads, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
namm = "./build/apps/namm"
def train(low, high):
    return [namm, "train-lm", "--init-from", lm, "--threads", threads, "--min-context", str(low),
            "--max-context", str(high), "--long-fraction", "0", "--steps", str(steps), "--batch-tokens", "4096",
            "--follow-ups", "16", "--no-eval", "--log-every", "1000", "--checkpoint-every", "100000"]
jobs = {
    "train-128": train(128, 256),
    "train-1k": train(512, 1024),
    "eval-text": [namm, "eval-text", "--lm", lm, "--namm", "models/namm.safetensors", "--tasks",
                  "kv_retrieval,variable_tracking", "--examples-per-task", "8", "--context-tokens", "1024",
                  "--policies", "full,namm,h2o", "--threads", threads],
}
print(f"allocator bench: LM {lm}, {threads} threads; train-lm {steps} steps of 128-256 (train-128) and "
      f"512-1024 prompt tokens (train-1k), 4096 batch tokens, 16 follow-ups; "
      f"eval-text 2 tasks x 8 prompts x 1024 tokens, full + namm + h2o")
print(f"{'job':<10} {'heap':<16} {'wall s':>8} {'sys s':>7} {'minor faults':>13}")
results = {}
for job, base in jobs.items():
    for label, env_extra in (("glibc defaults", {"NAMM_SYSTEM_MALLOC": "1"}), ("tuned", {})):
        env = dict(os.environ, **env_extra)
        out = os.path.join(work, f"{job}-{label.replace(' ', '_')}")
        command = base + (["--out", out] if job.startswith("train") else ["--out-json", out + ".json"])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sys_s, faults = after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt
        results[(job, label)] = wall
        print(f"{job:<10} {label:<16} {wall:8.1f} {sys_s:7.1f} {faults:13,d}", flush=True)
    print(f"{job:<10} speed-up {results[(job, 'glibc defaults')] / results[(job, 'tuned')]:.2f}x")
PY
