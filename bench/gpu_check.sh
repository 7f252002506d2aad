#!/usr/bin/env bash
# The GPU path, measured: training throughput of VGG10 on one NVIDIA GPU, then the
# shared-data configuration trained end to end there. See docs/performance.md, "GPU".
#
#   bash bench/gpu_check.sh            # on a machine with one NVIDIA GPU (designed: < 8 min on H100/H200)
#   bash bench/gpu_check.sh --dry-run  # anywhere: tiny sizes on the CPU, no install, no end-to-end run
#
# 1. Environment: uses $PYTHON (default python3) when it imports TensorFlow and fakefaces;
#    otherwise makes .venv-gpu and installs the project's own pins from requirements.txt,
#    with TensorFlow as tensorflow[and-cuda] at the version requirements.txt pins (the CUDA
#    and cuDNN wheels that version was built against). Offline: WHEELHOUSE=/path/to/wheels.
# 2. bench/train.py --device gpu: VGG10 at 128 px (batch 256 and 1,024) and 256 px (batch 256),
#    float32 vs mixed bfloat16, XLA off/on, one in-memory batch vs the Trainer's tf.data input
#    (gzipped TFRecords, decode on all cores), and that input pipeline alone. Prints img/s,
#    utilization against a matmul/conv peak measured in the same run and against the GPU's
#    published dense bfloat16 peak. One JSON per configuration under $OUT_DIR.
# 2b. bench/photo.py --backbone (needs the shared data's FairFace photos): 20 photos of 224 px to
#    their verdict by the CNN, the CLIP ViT-B/16 model and the fused model, served on this
#    machine (the GPU when TensorFlow sees one), float32; skipped in the dry run (the tower's
#    export takes minutes on a CPU).
# 3. `fakefaces run --config pipeline/configs/shared_data.yaml` into a scratch folder (needs the
#    shared data: $FACES_DATA, default ../shared/data or ./shared/data), then the Trainer's
#    per-epoch seconds and validation AUC from its history.json, and the run's summary (the
#    fairness gate's test-split metrics). Bounded by E2E_TIMEOUT seconds (default 300).
set -euo pipefail

cd "$(dirname "$0")/.."
DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
OUT_DIR=${OUT_DIR:-${OUT:-/tmp}/gpu_check}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$OUT_DIR"
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

# --- 1. environment ---------------------------------------------------------------
PYTHON=${PYTHON:-python3}
if [[ -x .venv/bin/python ]] && [[ "$PYTHON" == python3 ]]; then PYTHON=.venv/bin/python; fi
if ! "$PYTHON" -c 'import tensorflow, tf_keras, fakefaces' 2>/dev/null; then
  (( DRY_RUN )) && { echo "dry run: $PYTHON cannot import tensorflow/fakefaces; install first" >&2; exit 1; }
  tf_pin=$(grep -E '^tensorflow==' requirements.txt | sed -E 's/^tensorflow==([^ #]+).*/\1/')
  stamp "installing into .venv-gpu: tensorflow[and-cuda]==$tf_pin and requirements.txt"
  pip_args=()
  [[ -n "${WHEELHOUSE:-}" ]] && pip_args=(--no-index --find-links "$WHEELHOUSE")
  python3 -m venv .venv-gpu
  PYTHON=.venv-gpu/bin/python
  "$PYTHON" -m pip install -q "${pip_args[@]}" --upgrade pip
  # The pins of requirements.txt with TensorFlow's CUDA extra at the same version.
  "$PYTHON" -m pip install -q "${pip_args[@]}" -r requirements.txt "tensorflow[and-cuda]==$tf_pin"
  "$PYTHON" -m pip install -q "${pip_args[@]}" --no-deps -r requirements-nodeps.txt
  "$PYTHON" -m pip install -q "${pip_args[@]}" --no-deps -e .
fi
"$PYTHON" - <<'EOF'
import tensorflow as tf
gpus = tf.config.list_physical_devices('GPU')
print('TensorFlow', tf.__version__, 'built with CUDA', tf.test.is_built_with_cuda(), 'GPUs', gpus)
for gpu in gpus:
  print('  ', tf.config.experimental.get_device_details(gpu))
EOF
if (( ! DRY_RUN )); then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
  "$PYTHON" -c 'import sys, tensorflow as tf; sys.exit(0 if tf.config.list_physical_devices("GPU") else 1)' \
    || { echo "no GPU visible to TensorFlow: stopping (use --dry-run to test the script on a CPU)" >&2; exit 1; }
fi
FACES_DATA=${FACES_DATA:-}
for candidate in ../shared/data ./shared/data; do
  [[ -z "$FACES_DATA" && -f "$candidate/manifest.csv" ]] && FACES_DATA=$candidate
done
faces_args=()
[[ -n "$FACES_DATA" ]] && faces_args=(--faces-data "$FACES_DATA")
stamp "environment ready ($PYTHON); shared data: ${FACES_DATA:-absent (demo images for tf.data)}"

# --- 2. throughput ------------------------------------------------------------------
# size batch variants: the rows of one bench/train.py call (first = its speed reference).
if (( DRY_RUN )); then
  device=cpu
  configs=("32 8 default,bf16,bf16-tf.data")
  common=(--steps 2 --warmup-steps 1 --peak-reps 2 --matmul-size 256 --num-images 32)
else
  device=gpu
  configs=("128 256 default,bf16,bf16-xla"
           "128 1024 bf16-xla,bf16-xla-tf.data"
           "256 256 bf16,bf16-xla")
  common=(--steps 20 --warmup-steps 5 --peak-reps 10 --matmul-size 8192 --num-images 4096)
fi
for config in "${configs[@]}"; do
  read -r size batch variants <<<"$config"
  stamp "bench/train.py: VGG10 ${size} px, batch $batch: $variants"
  "$PYTHON" bench/train.py --device "$device" --image-size "$size" --batch-size "$batch" \
    --variants "$variants" "${common[@]}" "${faces_args[@]}" \
    --out "$OUT_DIR/train_${device}_${size}px_batch${batch}.json" 2>"$OUT_DIR/train_${size}_${batch}.log" \
    | grep -v '^  measured' || { tail -20 "$OUT_DIR/train_${size}_${batch}.log"; exit 1; }
done

# --- 2b. the CLIP backbone: a photo to its verdict, cnn / clip / fused --------------
if (( DRY_RUN )); then
  stamp "dry run: bench/photo.py --backbone skipped"
elif [[ -z "$FACES_DATA" ]]; then
  stamp "no shared data (set FACES_DATA): bench/photo.py --backbone skipped"
else
  stamp "bench/photo.py --backbone: 20 photos, cnn / clip / fused"
  "$PYTHON" bench/photo.py --data "$FACES_DATA" --photos 20 --backbone --label "$device" \
    --out "$OUT_DIR/photo_backbone_${device}.json" 2>"$OUT_DIR/photo_backbone.log" \
    || { tail -20 "$OUT_DIR/photo_backbone.log"; exit 1; }
fi

# --- 3. the shared-data configuration end to end ------------------------------------
if (( DRY_RUN )); then
  stamp "dry run: end-to-end training skipped"
elif [[ -z "$FACES_DATA" ]]; then
  stamp "no shared data (set FACES_DATA): end-to-end training skipped"
else
  work=$(mktemp -d /tmp/gpu_check_run.XXXX)
  config="$work/shared_data.yaml"
  # The shared-data configuration with its data where it is on this machine.
  sed "s#\.\./shared/data#$(cd "$FACES_DATA" && pwd)#g" pipeline/configs/shared_data.yaml > "$config"
  stamp "fakefaces run --config shared_data.yaml (timeout ${E2E_TIMEOUT}s) into $work"
  set +e
  timeout "$E2E_TIMEOUT" "$PYTHON" -m fakefaces.pipeline.cli run --config "$config" \
    --pipeline-root "$work/root" --serving-model-dir "$work/serving" \
    --metadata-path "$work/metadata.sqlite" > "$OUT_DIR/e2e.log" 2>&1
  rc=$?
  set -e
  tail -25 "$OUT_DIR/e2e.log"
  (( rc == 124 )) && stamp "end-to-end run stopped at ${E2E_TIMEOUT}s (E2E_TIMEOUT)"
  "$PYTHON" - "$work" <<'EOF'
import glob, json, sys
for path in sorted(glob.glob(f'{sys.argv[1]}/root/**/history.json', recursive=True)):
  history = json.load(open(path))
  h = history['history']
  print(f"Trainer ({history['precision_policy']}, {history['devices']}):")
  for epoch, seconds in enumerate(h.get('epoch_seconds', []), start=1):
    print(f"  epoch {epoch}: {seconds:.1f} s, val_auc {h.get('val_auc', [None] * epoch)[epoch - 1]}")
EOF
  [[ -f "$work/metadata.sqlite" ]] && "$PYTHON" bench/pipeline.py "$work/metadata.sqlite" \
    --out "$OUT_DIR/pipeline.json" || true
fi
stamp "done; results in $OUT_DIR"
