#!/usr/bin/env bash
# Train ResNet-50 TSN, TDN, MSN and MVFNet from scratch on the synthetic motion directions with
# `videorec train`, one run per core, and print each run's best val top-1 (the README's table).
#
#   scripts/zoo_synthetic.sh [OUT] [RUN ...]       # default OUT=zoo_synthetic, every run below
#
# Data: 400 videos (4 directions, 16 frames, 40 px), 80/20 split; clips of 4 segments (TDN/MSN:
# 5 frames per segment; MVFNet: dense 4 frames). Runs: ARCH (32 px crops, 20 epochs) or ARCH@64
# (64 px crops of frames upsampled to 72, 30 epochs). About 2 hours on 2 cores.
set -euo pipefail
out=${1:-zoo_synthetic}
shift || true
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(msn_r50 tdn_r50 mvfnet_r50 tsn_r50 mvfnet_r50@64 tsn_r50@64)
data=$out/data

if [ ! -f "$data/train.txt" ]; then
    videorec make-synthetic "$data" --num-videos 400 --frames 16 --size 40 \
        --classes move_down,move_left,move_right,move_up
    videorec extract-frames "$data/videos" "$data/frames" --short-side 0
    videorec make-annotations --format folder --media-dir "$data/frames" --root "$data" -o "$data" \
        --val-fraction 0.2
    printf '{"name": "synthetic", "num_classes": 4, "root": ".", "flip": "none"}\n' > "$data/synthetic.json"
fi

train() {  # RUN: ARCH or ARCH@64
    local arch=${1%@*} sizes=(--scale-size 40 --crop-size 32) epochs=(--epochs 20 --lr-steps 16)
    if [ "$1" != "$arch" ]; then sizes=(--scale-size 72 --crop-size 64); epochs=(--epochs 30 --lr-steps 24); fi
    OMP_NUM_THREADS=1 videorec train "$data/synthetic.json" --arch "$arch" --num-segments 4 "${epochs[@]}" -b 8 \
        --optimizer adamw --lr 5e-4 --warmup-epochs 0.5 --wd 1e-4 --npb --dropout 0 "${sizes[@]}" \
        -j 1 --eval-freq 5 -o "$out/$1" > "$out/$1.log" 2>&1
}

# the first run on one core, the others one after another on the second
train "${runs[0]}" &
for run in "${runs[@]:1}"; do train "$run"; done
wait
for run in "${runs[@]}"; do
    printf '%-14s %s\n' "$run" "$(grep -o 'best top1 [0-9.]*' "$out/$run.log" | tail -n 1)"
done
