#!/usr/bin/env bash
# Train ResNet-50 TSN, TDN, MSN and MVFNet from scratch on the synthetic motion directions with
# `videorec train`, one model per core, and print each one's best val top-1 (the README's table).
#
#   scripts/zoo_synthetic.sh [OUT] [ARCH ...]      # default OUT=zoo_synthetic, every model above
#
# Data: 400 videos (4 directions, 16 frames, 40 px), 80/20 split; clips of 4 segments at 32 px
# (TDN/MSN: 5 frames per segment; MVFNet: dense 4 frames). About 40 minutes on 2 cores.
set -euo pipefail
out=${1:-zoo_synthetic}
shift || true
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(msn_r50 tdn_r50 mvfnet_r50 tsn_r50)
data=$out/data

if [ ! -f "$data/train.txt" ]; then
    videorec make-synthetic "$data" --num-videos 400 --frames 16 --size 40 \
        --classes move_down,move_left,move_right,move_up
    videorec extract-frames "$data/videos" "$data/frames" --short-side 0
    videorec make-annotations --format folder --media-dir "$data/frames" --root "$data" --out "$data" \
        --val-fraction 0.2
    printf '{"name": "synthetic", "num_classes": 4, "root": ".", "flip": "none"}\n' > "$data/synthetic.json"
fi

train() {
    OMP_NUM_THREADS=1 videorec train "$data/synthetic.json" --arch "$1" --num-segments 4 --epochs 20 -b 8 \
        --optimizer adamw --lr 5e-4 --lr-steps 16 --warmup-epochs 0.5 --wd 1e-4 --npb --dropout 0 \
        --scale-size 40 --crop-size 32 -j 1 --eval-freq 5 -o "$out/$1" > "$out/$1.log" 2>&1
}

# the first model on one core, the others one after another on the second
train "${archs[0]}" &
for arch in "${archs[@]:1}"; do train "$arch"; done
wait
for arch in "${archs[@]}"; do
    printf '%-12s %s\n' "$arch" "$(grep -o 'best top1 [0-9.]*' "$out/$arch.log" | tail -n 1)"
done
