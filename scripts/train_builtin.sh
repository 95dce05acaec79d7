#!/usr/bin/env bash
# The built-in refiner's recipe (docs/experiments.md, "Photo-like training"): generate the data, then
# train with configs/builtin_photo.yaml. Extra `dissam train` overrides can follow on the command line.
#
# Photographs: scikit-image's public-domain/CC0 samples plus PHOTOS (a folder), by default the
# CC-BY-4.0/CC0 photographs of Debian's lomiri-wallpapers-16.04 listed in docs/experiments.md:
#   apt-get download lomiri-wallpapers-16.04 && dpkg -x lomiri-wallpapers-16.04_*.deb /tmp/wp
#   mkdir -p runs/photos && cp /tmp/wp/usr/share/backgrounds/{Picture_0B_by_freespace,...}.jpg runs/photos/
# Real objects: CUTOUTS (a folder of RGBA object photographs; default runs/cutouts), Debian's Tux Paint
# stamps (GPL-2+), of which only the train part is used (one file in five is held out for evaluation):
#   apt-get download tuxpaint-stamps-default && dpkg -x tuxpaint-stamps-default_*.deb /tmp/tps
#   cp -r /tmp/tps/usr/share/tuxpaint/stamps runs/cutouts
#
# Environment: PYTHON (default python3), WORKERS (data processes, default: all cores), PHOTOS
# (default runs/photos), N_PHOTO (default 2000), CUTOUTS (default runs/cutouts), N_CUT (default 1200),
# RUNS (default runs). On a GPU, data loading bounds
# it (about 5 steps/s on one H200 with 14 loader processes); on a 2-core CPU a step of batch 8 takes
# about 2 s (add optim.batch_size=8 runtime.device=cpu runtime.amp=none and a smaller budget).
set -euo pipefail
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-$(nproc)}
PHOTOS=${PHOTOS:-runs/photos}
N_PHOTO=${N_PHOTO:-2000}
CUTOUTS=${CUTOUTS:-runs/cutouts}
N_CUT=${N_CUT:-1200}
RUNS=${RUNS:-runs}
synth() { "$PY" -m dissam synth "$@" --workers "$WORKERS" --no-progress; }

[ -f "$RUNS/synth/train/boxes.json" ] || synth "$RUNS/synth/train" -n 800 --seed 1 --masks degrade
[ -f "$RUNS/synth/val/boxes.json" ] || synth "$RUNS/synth/val" -n 60 --seed 2 --masks degrade
[ -f "$RUNS/photo/train/boxes.json" ] || synth "$RUNS/photo/train" -n "$N_PHOTO" --seed 21 --style photo \
    --photos "$PHOTOS" --masks stage1-like --size-min 384 --size-max 640
[ -f "$RUNS/photo/val/boxes.json" ] || synth "$RUNS/photo/val" -n 60 --seed 22 --style photo \
    --photos "$PHOTOS" --masks stage1-like --size-min 384 --size-max 640
# the real-object samples are listed twice: they are what real photographs have and the rest has not
[ -f "$RUNS/cut/train/boxes.json" ] || synth "$RUNS/cut/train" -n "$N_CUT" --seed 61 --style photo \
    --photos "$PHOTOS" --cutouts "$CUTOUTS" --cutout-split train --masks stage1-like --size-min 384 --size-max 640
[ -f "$RUNS/cut/val/boxes.json" ] || synth "$RUNS/cut/val" -n 60 --seed 62 --style photo \
    --photos "$PHOTOS" --cutouts "$CUTOUTS" --cutout-split train --masks stage1-like --size-min 384 --size-max 640
"$PY" -m dissam train --config configs/builtin_photo.yaml \
    "data.train=[$RUNS/synth/train,$RUNS/photo/train,$RUNS/cut/train,$RUNS/cut/train]" \
    "data.valid=[$RUNS/cut/val,$RUNS/photo/val,$RUNS/synth/val]" \
    "data.cache_dir=$RUNS/cache" "runtime.out_dir=$RUNS" "$@"
