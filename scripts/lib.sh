# Shared settings for the scripts. Sourced, not run.
# Tool installs and the cargo target dir live outside the clone so CI runs reuse them.
export STACK_EDGE_CACHE="${STACK_EDGE_CACHE:-/var/cache/stack-edge}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STACK_EDGE_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$STACK_EDGE_CACHE"
