#!/bin/sh
# Runs each test binary given, echoes its output, and sums the "N passed, M failed" lines into
# one closing line with the same form. Exit status is non-zero when anything failed or crashed.
total_p=0; total_f=0; status=0
for t in "$@"; do
  echo "== $t"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | tail -n 40
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  if [ -z "$line" ]; then
    echo "   (no summary line: counted as 1 failure, exit $rc)"; total_f=$((total_f + 1)); status=1; continue
  fi
  p=$(echo "$line" | cut -d' ' -f1); f=$(echo "$line" | cut -d' ' -f3)
  total_p=$((total_p + p)); total_f=$((total_f + f))
  if [ "$rc" -ne 0 ]; then status=1; [ "$f" -eq 0 ] && total_f=$((total_f + 1)); fi
done
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ $status -eq 0 ]
