#!/usr/bin/env bash
# The paper's Table 2 ablation at small scale, on generated data (docs/experiments.md).
#
# Six compact refiners, identical but for the prompt channels they see and the training set:
#   box+mask, box only, mask only, no prompt         (data.prompt_dropout, single-target data)
#   enrichment off / on                                (multi-target data, box + mask)
# All start from the same seed, reuse one GT encoder, and run STEPS steps at 384² with a cosine
# schedule. Each is evaluated with `dissam benchmark --no-eval` (predictions) and then all of them at
# once with `dissam eval --table`.
#
#   bash scripts/table2_ablation.sh               # everything (about 1 h on a 2-core CPU)
#   STEPS=50 bash scripts/table2_ablation.sh      # a quick smoke run
#   PARALLEL=2 THREADS=1 bash scripts/table2_ablation.sh   # two runs at a time, one thread each
#   ONLY="enrich_off enrich_on" STEPS=1000 VALID_EVERY=250 OUT=runs/table2_1000 bash scripts/table2_ablation.sh
#
# Needs the generated data of docs/experiments.md (runs/synth/{train,val,test}) and the GT encoder
# of the built-in model run (runs/builtin_compact/gt_encoder.safetensors); the multi-target sets are
# generated here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DISSAM=${DISSAM:-.venv/bin/dissam}
STEPS=${STEPS:-300}
VALID_EVERY=${VALID_EVERY:-$STEPS}
PARALLEL=${PARALLEL:-1}
THREADS=${THREADS:-0}
OUT=${OUT:-runs/table2}
GTE=${GTE:-runs/builtin_compact/gt_encoder.safetensors}
SYN=${SYN:-runs/synth}

[ -f "$GTE" ] || { echo "missing $GTE: train the built-in model first (docs/experiments.md)" >&2; exit 1; }
for s in train val test; do
  [ -d "$SYN/$s" ] || { echo "missing $SYN/$s: see docs/experiments.md for the dissam synth commands" >&2; exit 1; }
done
[ -d "$SYN/train_multi" ] || "$DISSAM" synth "$SYN/train_multi" -n "${N_TRAIN:-800}" --seed 1 --max-targets 3 --masks degrade
[ -d "$SYN/test_multi" ] || "$DISSAM" synth "$SYN/test_multi" -n "${N_TEST:-100}" --seed 3 --max-targets 3 --masks degrade
[ -f "$SYN/train_multi/enrich.json" ] || "$DISSAM" enrich "$SYN/train_multi"

common=(
  --config configs/builtin_compact.yaml
  "runtime.out_dir=$OUT" "runtime.num_threads=$THREADS" runtime.progress=false
  "gt_encoder.checkpoint=$GTE" "data.train=[$SYN/train]" "data.valid=[$SYN/val]"
  optim.lr_schedule=cosine optim.min_lr=1e-5 optim.warmup_steps=20
  "schedule.max_steps=$STEPS" "schedule.valid_every=$VALID_EVERY" schedule.early_stop=0
)
declare -A ROWS=(
  [box_mask]="data.prompt_dropout=[0.0,0.0]"
  [box_only]="data.prompt_dropout=[1.0,0.0]"
  [mask_only]="data.prompt_dropout=[0.0,1.0]"
  [no_prompt]="data.prompt_dropout=[1.0,1.0]"
  [enrich_off]="data.train=[$SYN/train_multi]"
  [enrich_on]="data.train=[$SYN/train_multi] data.enrich_manifest=$SYN/train_multi/enrich.json data.mask_fallback=degrade"
)
read -r -a ORDER <<<"${ONLY:-box_mask box_only mask_only no_prompt enrich_off enrich_on}"
for row in "${ORDER[@]}"; do
  [ -n "${ROWS[$row]+x}" ] || { echo "unknown row $row; known: ${!ROWS[*]}" >&2; exit 1; }
done

run_row() {
  local row=$1
  if [ ! -f "$OUT/$row/final.safetensors" ]; then
    if [ -f "$OUT/$row/state.pt" ]; then
      # shellcheck disable=SC2086
      "$DISSAM" train --resume "$OUT/$row" >"$OUT/$row.log" 2>&1
    else
      # shellcheck disable=SC2086
      "$DISSAM" train "${common[@]}" "runtime.run_name=$row" ${ROWS[$row]} >"$OUT/$row.log" 2>&1
    fi
  fi
  "$DISSAM" benchmark --data "$SYN" --splits test,test_multi --refiner "$OUT/$row/final.safetensors" \
    --methods dis-sam --size 384 --device cpu --no-eval --no-progress -o "$OUT/bench_$row" >>"$OUT/$row.log" 2>&1
  mkdir -p "$OUT/preds"
  rm -rf "${OUT:?}/preds/$row"
  cp -r "$OUT/bench_$row/predictions/dis-sam" "$OUT/preds/$row"
  echo "done: $row"
}

mkdir -p "$OUT"
running=0
for row in "${ORDER[@]}"; do
  run_row "$row" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n; running=$((running - 1)); fi
done
wait

# the coarse masks themselves, as a reference column
for s in test test_multi; do
  mkdir -p "$OUT/preds/coarse/$s"
  cp "$SYN/$s/mask/"*.png "$OUT/preds/coarse/$s/"
done
"$DISSAM" eval --table --gt-root "$SYN" --pred-root "$OUT/preds" --splits test,test_multi \
  --methods "coarse,$(IFS=,; echo "${ORDER[*]}")" \
  --out-dir "$OUT/eval" --markdown "$OUT/table2.md" --no-progress
cat "$OUT/table2.md"
