"""Reads an OpenAPI document on stdin and validates it against the OpenAPI 3.1 specification
(openapi-spec-validator), that every operation id is unique, and that every example a schema
gives is valid against that schema; exits non-zero saying what is wrong."""

import collections
import json
import sys

from jsonschema import Draft202012Validator
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

# A schema's examples are checked against the schema, its `$ref`s resolved in the document.
examples = 0
wrong = []
for name, schema in doc.get("components", {}).get("schemas", {}).items():
    for i, example in enumerate(schema.get("examples", [])):
        examples += 1
        root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        for error in Draft202012Validator(root).iter_errors(example):
            path = "/".join(str(p) for p in error.absolute_path)
            wrong.append(f"{name} example {i} at /{path}: {error.message}")
if wrong:
    sys.exit("examples that their schema refuses:\n" + "\n".join(wrong))
print(json.dumps({"openapi": doc["openapi"], "operations": sum(ids.values()), "examples": examples}))
