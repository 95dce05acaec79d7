#!/usr/bin/env bash
# The built-in refiner's recipe (docs/experiments.md, "Photo-like training"): generate the data, then
# train with configs/builtin_photo.yaml. Extra `dissam train` overrides can follow on the command line.
#
# Photographs: scikit-image's public-domain/CC0 samples plus PHOTOS (a folder), by default the
# CC-BY-4.0/CC0 photographs of Debian's lomiri-wallpapers-16.04 listed in docs/experiments.md:
#   apt-get download lomiri-wallpapers-16.04 && dpkg -x lomiri-wallpapers-16.04_*.deb /tmp/wp
#   mkdir -p runs/photos && cp /tmp/wp/usr/share/backgrounds/{Picture_0B_by_freespace,...}.jpg runs/photos/
#
# Environment: PYTHON (default python3), WORKERS (data processes, default: all cores), PHOTOS
# (default runs/photos), N_PHOTO (default 2000), RUNS (default runs). Runs on a GPU in about
# 8 minutes (docs/experiments.md); on a CPU, lower data.size and schedule.max_steps.
set -euo pipefail
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-$(nproc)}
PHOTOS=${PHOTOS:-runs/photos}
N_PHOTO=${N_PHOTO:-2000}
RUNS=${RUNS:-runs}
synth() { "$PY" -m dissam synth "$@" --workers "$WORKERS" --no-progress; }

[ -f "$RUNS/synth/train/boxes.json" ] || synth "$RUNS/synth/train" -n 800 --seed 1 --masks degrade
[ -f "$RUNS/synth/val/boxes.json" ] || synth "$RUNS/synth/val" -n 60 --seed 2 --masks degrade
[ -f "$RUNS/photo/train/boxes.json" ] || synth "$RUNS/photo/train" -n "$N_PHOTO" --seed 11 --style photo \
    --photos "$PHOTOS" --masks stage1-like --size-min 384 --size-max 768
[ -f "$RUNS/photo/val/boxes.json" ] || synth "$RUNS/photo/val" -n 100 --seed 12 --style photo \
    --photos "$PHOTOS" --masks stage1-like --size-min 384 --size-max 768
"$PY" -m dissam train --config configs/builtin_photo.yaml \
    "data.train=[$RUNS/synth/train,$RUNS/photo/train]" "data.valid=[$RUNS/photo/val,$RUNS/synth/val]" \
    "data.cache_dir=$RUNS/cache" "runtime.out_dir=$RUNS" "$@"
