# Sourced by test.sh: a venv with the Python tools the tests run against the daemon, made once
# under target/: the Prometheus client's OpenMetrics parser (checks /metrics), openapi-spec-validator
# (checks /openapi.json against the OpenAPI 3.1 specification), Schemathesis (sends the API what
# its document allows and what it forbids, and checks every answer against it) and Playwright, which
# drives the system's Chromium for the web app's browser tests (`playwright install` is not used:
# the browser is Debian's `chromium` package, which .ci/run installs). Exports
# FLOWGATE_TEST_PYTHON for the tests.
py_env="$(pwd)/target/python-tools"
py_stamp="$py_env/.installed-4"
if [ ! -f "$py_stamp" ]; then
  echo "making the Python tools' venv in $py_env"
  rm -rf "$py_env"
  python3 -m venv "$py_env"
  "$py_env/bin/pip" install --quiet --disable-pip-version-check \
    "prometheus-client==0.26.0" "playwright==1.65.0" "openapi-spec-validator==0.9.0" \
    "schemathesis==4.32.5"
  touch "$py_stamp"
fi
export FLOWGATE_TEST_PYTHON="$py_env/bin/python"
