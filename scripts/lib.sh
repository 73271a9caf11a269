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
