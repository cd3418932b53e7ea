# Sourced by test.sh: a venv with the Python tools the contract tests run against the daemon
# (the Prometheus client's OpenMetrics parser), made once under target/. Exports
# FLOWGATE_TEST_PYTHON for the tests.
py_env="$(pwd)/target/python-tools"
py_stamp="$py_env/.installed-1"
if [ ! -f "$py_stamp" ]; then
  echo "making the Python tools' venv in $py_env"
  rm -rf "$py_env"
  python3 -m venv "$py_env"
  "$py_env/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==0.26.0"
  touch "$py_stamp"
fi
export FLOWGATE_TEST_PYTHON="$py_env/bin/python"
