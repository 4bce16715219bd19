#!/usr/bin/env bash
# The benchmark runs whose outputs are kept in benchmarks/results/ (several minutes each).
#   bash benchmarks/run_all.sh [als|scenarios|preset|neural]...
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
BIN=${BIN:-.venv/bin}
mkdir -p "$R/plots"
run() { local name=$1; shift; echo "== $name" >&2; /usr/bin/time -f "$name wall %e s" "$@"; }
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(als scenarios preset)
for part in "${parts[@]}"; do
  case $part in
    als)
      run als_speed "$BIN/python" benchmarks/als_speed.py > "$R/als_speed_ml-1m.txt"
      run als_unlearn "$BIN/python" benchmarks/als_unlearn.py --out "$R/als_unlearn_ml-1m.json" > "$R/als_unlearn_ml-1m.txt" ;;
    scenarios)
      for sc in interactions:0.01 users:0.01 users:0.01:active users:0.01:inactive items:10 sensitive:50 stream:5:200; do
        tag=${sc//:/_}
        run "ml-1m $sc" "$BIN/recforget" bench --dataset ml-1m --delete "$sc" \
          --json "$R/bench_ml-1m_$tag.json" --report "$R/bench_ml-1m_$tag.md" \
          --plots "$R/plots/ml-1m_$tag" > "$R/bench_ml-1m_$tag.txt"
      done ;;
    preset)
      run "netflix-forget" "$BIN/recforget" bench --dataset ml-100k --preset netflix-forget \
        --json "$R/netflix-forget_ml-100k.json" --report "$R/netflix-forget_ml-100k.md" \
        --plots "$R/plots/netflix-forget_ml-100k" > "$R/netflix-forget_ml-100k.txt" ;;
    neural)
      # each original is fitted once (with the first scenario) and loaded for the second;
      # NCF_LOAD=DIR reuses originals saved by an earlier run (DIR/<arch>_<dataset>)
      if [ -n "${NCF_LOAD:-}" ]; then cache=$NCF_LOAD; else
        cache=$(mktemp -d); trap 'rm -rf "$cache"' EXIT  # this run's originals only
      fi
      for ds in ml-1m ml-100k; do
        short=${ds#ml-}
        for arch in gmf neumf; do
          for sc in interactions:0.01 users:0.01; do
            tag=${sc%%:*}; tag=${tag:0:5}; tag=${tag/inter/int}
            saved="$cache/${arch}_$ds"
            if [ -d "$saved" ]; then load=(--load "$saved"); else load=(--save "$saved"); fi
            run "ncf $arch $ds $sc" "$BIN/python" benchmarks/ncf_unlearn.py --dataset "$ds" \
              --arch "$arch" --scenario "$sc" "${load[@]}" \
              --method retrain --method "retrain random_state=1" --method finetune \
              --method alteraser --method influence --finetune-lr 5e-3 --finetune-lr 1e-3 \
              --json "$R/ncf_unlearn_$arch${short}_$tag.json" > "$R/ncf_unlearn_$arch${short}_$tag.txt"
          done
        done
      done ;;
  esac
done
