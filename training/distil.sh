#!/usr/bin/env bash
# The shipped reader's recipe: an ensemble of six readers, distilled into four students whose
# weights are averaged. Every run holds out the same articles (training.reader's default), so
# every score in the cards is on articles none of them trained on.
#
#   training/distil.sh OUT [WORK]       (JOBS=6 by default on a GPU, 1 on CPU)
#
# Measured on one H100 (6 runs at a time): about 6.5 minutes in all. On 2 CPU cores each run
# takes about 3 hours, so the whole recipe about 30 hours.
set -euo pipefail
out=${1:?usage: training/distil.sh OUT [WORK]}
work=${2:-artifacts/distil}
py=${PYTHON:-python}
if "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  device=cuda jobs=${JOBS:-6}
else
  device=cpu jobs=${JOBS:-1}
fi
mkdir -p "$work"

train() {  # name seed extra-args...
  local name=$1 seed=$2
  shift 2
  if ! "$py" -m training.reader --out "$work/$name" --work "$work/$name-work" --epochs 4 --lr 2e-4 \
    --batch-size 32 --seed "$seed" --log-every 100 "$@" >"$work/$name.log" 2>&1; then
    echo "$name failed (log: $work/$name.log):" >&2
    tail -n 5 "$work/$name.log" >&2
    return 1
  fi
  echo "$name: $(grep 'final held-out' "$work/$name.log" | cut -c12-200)"
}
run_all() {  # "name seed [args]" lines on stdin, $jobs at a time
  local pids=() line
  while read -r line; do
    # shellcheck disable=SC2086
    train $line &
    pids+=($!)
    if ((${#pids[@]} >= jobs)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

# 1. teachers: three seeds with the first answer as the label, three with every annotator's answer
printf '%s\n' "p21 21" "p22 22" "p23 23" "a24 24 --all-answers" "a25 25 --all-answers" "a26 26 --all-answers" | run_all
teachers=()
for t in p21 p22 p23 a24 a25 a26; do teachers+=(--teacher "$work/$t"); done

# 2. students: half CE and half KL to the teachers' mean distribution at temperature 2
printf '%s\n' "d31 31 ${teachers[*]}" "d32 32 ${teachers[*]}" \
  "e33 33 --all-answers ${teachers[*]}" "e34 34 --all-answers ${teachers[*]}" | run_all

# 3. the shipped weights: the students' element-wise mean, scored against each student
"$py" -m training.average --device "$device" --out "$out" "$work/d31" "$work/d32" "$work/e33" "$work/e34"
