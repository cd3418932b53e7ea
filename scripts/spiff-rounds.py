"""The issue-8 rounds workload on SpiffWorkflow, the peer Flowgate is measured against.

The same work as `cargo bench -p flowgate-tests --bench rounds`: N purchase requests
(tests/benches/rounds/purchase.bpmn), a third each auto-approved, for a manager, and for a
director and a second approver in parallel; started, then driven round after round, one user
task per live instance per round, until every instance has ended. Every client command (a start,
a completed task) is made durable before the next: the workflow is serialized with Spiff's own
serializer and written to SQLite in WAL mode with synchronous=FULL, one transaction per command.
Spiff runs in this one process (it has no server); workflows stay in memory between commands,
which is Spiff's best case: a service around it would also read them back.

Prints one line of JSON. Needs SpiffWorkflow (scripts/bench-vs-spiff.sh installs 3.2.0 into a
scratch venv; it is not a project dependency).
"""

import json
import os
import sqlite3
import sys
import tempfile
import time

from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState


def data(n):
    if n % 3 == 0:
        return {"amount_cents": 10_000, "category": "office"}
    if n % 3 == 1:
        return {"amount_cents": 200_000, "category": "office"}
    return {"amount_cents": 2_000_000, "category": "it"}


def main():
    instances = int(sys.argv[sys.argv.index("--instances") + 1]) if "--instances" in sys.argv else 2000
    here = os.path.dirname(os.path.abspath(__file__))
    bpmn = os.path.join(here, "..", "tests", "benches", "rounds", "purchase.bpmn")
    parser = BpmnParser()
    parser.add_bpmn_file(bpmn)
    spec = parser.get_spec("purchase")
    serializer = BpmnWorkflowSerializer()
    folder = tempfile.mkdtemp()
    db = sqlite3.connect(os.path.join(folder, "spiff.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE workflows (id INTEGER PRIMARY KEY, state TEXT NOT NULL)")

    commits = 0
    latencies = []

    def persist(n, workflow):
        nonlocal commits
        state = serializer.serialize_json(workflow)
        db.execute("BEGIN")
        db.execute("INSERT OR REPLACE INTO workflows (id, state) VALUES (?, ?)", (n, state))
        db.execute("COMMIT")
        commits += 1

    began = time.perf_counter()
    live = {}
    for n in range(instances):
        t = time.perf_counter()
        workflow = BpmnWorkflow(spec)
        workflow.data.update(data(n))
        start = workflow.get_next_task(state=TaskState.READY)
        start.data.update(data(n))
        workflow.do_engine_steps()
        persist(n, workflow)
        latencies.append(time.perf_counter() - t)
        live[n] = workflow
    finished = 0
    while live:
        for n in list(live):
            workflow = live[n]
            t = time.perf_counter()
            ready = workflow.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                raise SystemExit(f"instance {n} has no ready task and has not ended")
            ready[0].run()
            workflow.do_engine_steps()
            persist(n, workflow)
            latencies.append(time.perf_counter() - t)
            if workflow.is_completed():
                finished += 1
                del live[n]
    seconds = time.perf_counter() - began
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, len(latencies) * p // 100)] * 1000
    print(json.dumps({
        "engine": "spiffworkflow", "mode": "in-process+sqlite", "clients": 1,
        "instances": instances, "finished": finished, "seconds": seconds,
        "instances_per_s": finished / seconds,
        "client_commands": len(latencies), "commands_per_s": len(latencies) / seconds,
        "commits_per_instance": commits / instances,
        "p50_ms": pct(50), "p99_ms": pct(99),
    }))


if __name__ == "__main__":
    main()
