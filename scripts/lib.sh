# Shared settings for the scripts. Sourced, not run.
# Tool installs and the cargo target dir live outside the clone so CI runs reuse them.
export STACK_EDGE_CACHE="${STACK_EDGE_CACHE:-/var/cache/stack-edge}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STACK_EDGE_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$STACK_EDGE_CACHE"
# Edge toolchain (scripts/setup-edge): cargo-installed tools and an npm prefix with Node 22.
export EDGE_TOOLS="$STACK_EDGE_CACHE/tools"
export EDGE_NODE="$STACK_EDGE_CACHE/node"
export PATH="$EDGE_TOOLS/bin:$EDGE_NODE/node_modules/.bin:$PATH"
# worker-build would download wasm-bindgen, wasm-opt and esbuild; point it at ours instead.
export WASM_BINDGEN_BIN="$EDGE_TOOLS/bin/wasm-bindgen"
export WASM_OPT_BIN="$EDGE_NODE/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$EDGE_NODE/node_modules/@esbuild/linux-x64/bin/esbuild"
# wrangler: no prompts, no telemetry, no calls to Cloudflare's fetch of request.cf data.
export CI="${CI:-true}" WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
# The function crates (functions/<name>), each its own Worker and component: router::FUNCTIONS
# in shell (a router test keeps the two equal).
FUNCTIONS=(refresh analytics-query metrics replays config emails mcp)
# The cached target dir keeps every old build of each test binary and incremental session (a
# changed crate or feature set gets new hashes); left alone it fills the disk within
# days. Keep the newest build of each executable and drop incremental sessions idle for 2 days.
prune_target() {
  local deps
  for deps in "$CARGO_TARGET_DIR"/debug/deps "$CARGO_TARGET_DIR"/release/deps; do
    [[ -d "$deps" ]] || continue
    find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %p\n' | sort -rn |
      awk '{ name = $2; sub(/-[0-9a-f]+$/, "", name); if (seen[name]++) print $2 }' | xargs -r rm -f
  done
  find "$CARGO_TARGET_DIR" -mindepth 3 -maxdepth 3 -path '*/incremental/*' -type d -mtime +2 \
    -exec rm -rf {} + 2>/dev/null || true
}

# The repository this lib.sh belongs to (scripts cd elsewhere after sourcing it).
STACK_EDGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A wasm build is reused when what it reads is unchanged: its outputs are kept in
# $STACK_EDGE_CACHE/built/<kind>/<name>-<hash>/, keyed by a content hash (not mtimes, which a
# clone resets and which once let a stale build through) of every file the build can read —
# the workspace manifest and lockfile, the cargo config, shared/, router/, functions/, spin.toml,
# the build scripts and the pinned tool versions in setup-edge, uncommitted edits and new files
# included — plus the toolchain and the build's own settings (the arguments).
wasm_inputs_hash() {
  local inputs
  inputs="$(cd "$STACK_EDGE_ROOT" && git ls-files --cached --others --exclude-standard -- \
    Cargo.toml Cargo.lock .cargo shared router functions spin.toml wrangler.toml \
    scripts/build-worker scripts/build-component scripts/lib.sh scripts/setup-edge | sort)" || return 1
  [ -n "$inputs" ] || { echo "wasm_inputs_hash: no inputs under $STACK_EDGE_ROOT" >&2; return 1; }
  {
    (cd "$STACK_EDGE_ROOT" && while IFS= read -r file; do
      if [ -f "$file" ]; then sha256sum "$file"; fi
    done <<< "$inputs")
    rustc -V
    echo "$*"
  } | sha256sum | cut -c1-20
}

# restore_built <kind> <name> <hash> <dest dir>: copies a kept build into place; fails if none.
restore_built() {
  local kept="$STACK_EDGE_CACHE/built/$1/$2-$3"
  [ -d "$kept" ] || return 1
  rm -rf "$4" && mkdir -p "$(dirname "$4")" && cp -a "$kept" "$4"
  touch "$kept" # recently used: pruning keeps it
}

# keep_built <kind> <name> <hash> <src dir>: keeps a finished build, and the three most recently
# used builds of that name only (hashes are hex, so "<name>-" matches no other name's).
keep_built() {
  local dir="$STACK_EDGE_CACHE/built/$1"
  mkdir -p "$dir"
  rm -rf "$dir/$2-$3.tmp" && cp -a "$4" "$dir/$2-$3.tmp"
  rm -rf "${dir:?}/$2-$3" && mv "$dir/$2-$3.tmp" "$dir/$2-$3"
  find "$dir" -mindepth 1 -maxdepth 1 -type d -regex ".*/$2-[0-9a-f]*" -printf '%T@ %p\n' |
    sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
}
