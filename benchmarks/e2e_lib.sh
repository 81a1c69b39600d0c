# Shared by the end-to-end search scripts (source it; it defines functions only).

# finish_search NAME RUN_DIR OUT_JSON: wait until the search's daemon has exited, print its
# status, export its best full-length pattern to OUT_JSON and its status to OUT_JSON's
# sibling NAME.status.json.
finish_search() {
  local name="$1" run_dir="$2" out="$3"
  while .venv/bin/adsearch status "$name" --run-dir "$run_dir" --json \
      | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("daemon", {}).get("alive") else 1)' 2>/dev/null; do
    sleep 30
  done
  .venv/bin/adsearch status "$name" --run-dir "$run_dir"
  .venv/bin/adsearch export "$name" --run-dir "$run_dir" --best -o "$out"
  .venv/bin/adsearch status "$name" --run-dir "$run_dir" --json > "${out%.json}.status.json"
}

# pin_core N: prints "taskset -c N" when taskset exists and the machine has 2+ cores.
# (`nproc --all`: a plain `nproc` honours OMP_NUM_THREADS, so OMP_NUM_THREADS=1 would
# silently turn the pinning off.)
pin_core() {
  if command -v taskset >/dev/null && [[ "$(nproc --all)" -ge 2 ]]; then echo "taskset -c $1"; fi
}
