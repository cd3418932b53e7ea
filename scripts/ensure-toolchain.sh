# Sourced by run.sh, test.sh and .ci/run: adds what a fresh machine lacks.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "adding the wasm32-wasip2 target (plugins build to it)"
  rustup target add wasm32-wasip2
fi
