"""Reads an OpenAPI document on stdin and validates it against the OpenAPI 3.1 specification
(openapi-spec-validator), and that every operation id is unique; exits non-zero saying what is
wrong."""

import collections
import json
import sys

from openapi_spec_validator import validate

doc = json.load(sys.stdin)
validate(doc)
ids = collections.Counter(
    op.get("operationId")
    for item in doc["paths"].values()
    for op in item.values()
    if isinstance(op, dict) and "responses" in op
)
twice = sorted(str(k) for k, n in ids.items() if n > 1 or k is None)
if twice:
    sys.exit(f"operation ids missing or not unique: {twice}")
print(json.dumps({"openapi": doc["openapi"], "operations": sum(ids.values())}))
