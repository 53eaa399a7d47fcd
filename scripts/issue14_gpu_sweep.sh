#!/usr/bin/env bash
# Issue 14: one sweep of backbone + codec recipes, run in parallel on one GPU machine (CUDA is used
# when present), every run through the project's own `snn train` commands.
#   W=folder holding src/ (this repo), fmnist/ (the four IDX .gz files), glyphs/ (python -m bench.glyphs),
#     whl/ (captum wheel, optional); OUT=where the results go; TINY=1 for a seconds-long CPU rehearsal;
#   BUDGET=seconds after which every run still going is stopped (each command gets the time left).
# Results: $OUT/summary.txt and $OUT/sweep.tar.gz (bundles, backbones, logs).
set -u
W=$(cd "${W:-.gpu14}" && pwd); OUT=${OUT:-/tmp/sweep-out}; TINY=${TINY:-0}; BUDGET=${BUDGET:-470}
PY=${PY:-python3}
mkdir -p "$OUT"
if ls "$W"/whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$W"/whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$W/src${PYTHONPATH:+:$PYTHONPATH}" SNN_FMNIST_DIR="$W/fmnist" OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
R=${R:-/tmp/sweep}; mkdir -p "$R"; cd "$R" || exit 1
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
snn() { local t; t=$(left); [ "$t" -gt 5 ] || return 124; timeout "$t" $PY -m snn "$@"; }
TB=(); TC=()
if [ "$TINY" = 1 ]; then TB=(--count 300 --epochs 1); TC=(--count 300 --stage1-epochs 1 --stage2-epochs 1 --xai-every 1); fi
SHIP=(--split layer2 --decode-to layer3 --enc-stride 2 --enc-hidden 16 --dec-hidden 64 --int8-aware --xai --ber-conditioning)
bb() { local name=$1; shift; snn train backbone --arch resnet14 --seed 0 --threads 2 "$@" "${TB[@]}" -o "$name.pt" > "$name.log" 2>&1; }
codec() { local name=$1 b=$2; shift 2
    snn train codec --backbone "$b.pt" -o "$name.snn" --threads 2 --seed 0 "$@" "${TC[@]}" > "$name.log" 2>&1; }
nvidia-smi --query-gpu=name,memory.used --format=csv > gpu.txt 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> gpu.txt 2>&1

( bb bb12 --data fmnist
  codec v1_ship bb12 "${SHIP[@]}" --stage2-epochs 14 &
  codec v2_ft bb12 "${SHIP[@]}" --finetune-head --stage2-epochs 20 &
  codec v3_ft3e4 bb12 "${SHIP[@]}" --finetune-head --head-lr 3e-4 --stage2-epochs 20 &
  codec v7_shipdefault bb12 "${SHIP[@]}" &
  wait ) &
( bb bb30 --data fmnist --epochs 30
  codec v4_bb30 bb30 "${SHIP[@]}" --stage2-epochs 14 &
  codec v5_bb30ft bb30 "${SHIP[@]}" --finetune-head --stage2-epochs 20 &
  codec v6_bb30ft30 bb30 "${SHIP[@]}" --finetune-head --head-lr 3e-4 --stage2-epochs 30 &
  wait ) &
( bb g_bb --data "folder:$W/glyphs" --holdout 0.2
  codec g_default g_bb &
  codec g_ship g_bb "${SHIP[@]}" &
  wait ) &
wait
echo "sweep wall $(( $(date +%s) - T0 )) s" >> gpu.txt

$PY - > "$OUT/summary.txt" 2>&1 <<'EOF'
import glob, json, zipfile, torch
print(open("gpu.txt").read())
for f in sorted(glob.glob("*.pt")):
    if f.endswith(".ckpt"):
        continue
    try:
        r = torch.load(f, weights_only=True, map_location="cpu")
        print(f"{f}: test {r['accuracy']:.4f} val {r.get('val_accuracy')} epoch {r.get('best_epoch')}/{r['epochs']} "
              f"{r['train_seconds']:.0f}s")
    except Exception as e:
        print(f, "unreadable", e)
for f in sorted(glob.glob("*.snn")):
    try:
        m = json.loads(zipfile.ZipFile(f).read("manifest.json"))
        met = m["metrics"]
        accs = " ".join(f"{r['ber']:g}:{100 * r['accuracy']:.2f}" for r in met["results"])
        print(f"{f}: backbone {100 * met['backbone_accuracy']:.2f} | {accs} | stages {m.get('stage1_epochs')}/"
              f"{m.get('stage2_epochs')} best {m.get('best_epoch')} | {m['train_seconds']}s | {m['command']}")
    except Exception as e:
        print(f, "unreadable", e)
EOF
for f in *.log; do echo "== $f"; tail -3 "$f"; done >> "$OUT/summary.txt"
tar czf "$OUT/sweep.tar.gz" --exclude='*.ckpt' --exclude='*.tmp' *.snn *.pt *.log gpu.txt 2>/dev/null
cat "$OUT/summary.txt"
