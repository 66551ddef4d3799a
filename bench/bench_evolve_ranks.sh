#!/usr/bin/env bash
# Generation time of `namm evolve` with 1 process x 1 thread, 1 process x 2
# threads and 2 MPI ranks x 1 thread, side by side in one run, on the same
# language model and prompts; plus the communication share of the 2-rank run
# (rank 0's time in broadcast + gather, waiting for the slower rank included).
#   bench/bench_evolve_ranks.sh [LM_DIR] [GENERATIONS]
# LM_DIR defaults to models/lm. Needs a build with MPI (libopenmpi-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
lm=${1:-models/lm}
generations=${2:-2}
namm=./build/apps/namm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common="--lm $lm --stage kv_retrieval,needle:$generations --population 32 --prompts-per-task 4 --context-tokens 1024"

run() {  # key, label, launcher prefix, threads
  local key=$1 label=$2 prefix=$3 threads=$4
  $prefix $namm evolve $common --threads "$threads" --out "$work/$key.safetensors" > "$work/$key.log" 2>&1
  python3 - "$work/$key.safetensors.ckpt/log.jsonl" "$label" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
seconds = [r["seconds"] for r in rows]
cluster = [r["profile"].get("cluster", 0.0) for r in rows]
mb = sum(r.get("cluster_bytes", 0) for r in rows) / len(rows) / 1e6
print(f"{sys.argv[2]:<28} {sum(seconds)/len(seconds):8.1f} s/generation  "
      f"cluster {sum(cluster)/len(cluster):6.2f} s ({100*sum(cluster)/sum(seconds):4.1f}%)  {mb:6.2f} MB/generation")
PY
}
echo "evolve: population 32 (+ mean), 2 tasks x 4 prompts x 1024 tokens, $generations generations each, LM $lm"
run t1 "1 process, 1 thread" "" 1
run t2 "1 process, 2 threads" "" 2
run mpi2 "2 MPI ranks, 1 thread each" "mpirun --oversubscribe -np 2" 1
