"""Parses an OpenMetrics exposition from stdin with the Prometheus client's strict parser and
prints its families as JSON: {name: {"type": ..., "samples": [[name, labels, value], ...]}}.
A body the parser refuses exits non-zero with the parser's words on stderr."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    try:
        families = {
            family.name: {
                "type": family.type,
                "samples": [[s.name, s.labels, s.value] for s in family.samples],
            }
            for family in text_string_to_metric_families(text)
        }
    except Exception as error:  # the parser raises ValueError and others
        print(f"not valid OpenMetrics: {error}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
