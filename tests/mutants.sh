#!/bin/bash
# The mutants issue 31 listed, and the rules issue 33 added (the answer's turn, the workers' share
# of connections, the collection before the trim), each made alone: apply, run the tests that must
# notice it, revert.
# `make mutants` prints killed or SURVIVED per mutant (a survivor is a test gap); exit 1 if any survives.
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BACKUP=$(mktemp) LOG=$(mktemp)
trap 'rm -f "$BACKUP" "$LOG"' EXIT
run() { # file, python-replace old, new, tests...
  local file="$1" old="$2" new="$3"; shift 3
  cp "$file" "$BACKUP"
  $PY - "$file" "$old" "$new" <<'P'
import sys; p,o,n=sys.argv[1:4]; s=open(p).read(); assert o in s, (p,o); open(p,'w').write(s.replace(o,n,1))
P
  if timeout 600 $PY -m pytest -q -x -p no:randomly "$@" >"$LOG" 2>&1; then echo "SURVIVED: $file: $old -> $new"; survived=1; else echo "killed:   $file: $old -> $new"; fi
  cp "$BACKUP" "$file"
}
run attrition/model/decisions.py 'passed = bool(candidate >= deployed)' 'passed = bool(candidate > deployed)' tests/test_decisions.py
run attrition/model/decisions.py '"drift": bool(new_score < threshold - tolerance)' '"drift": bool(new_score <= threshold - tolerance)' tests/test_decisions.py
run attrition/production/switch.py '        atomic_write_json(prod_folder / MANIFEST, manifest)
    except WRITE_ERRORS' '        (prod_folder / MANIFEST).write_text(json.dumps(manifest))
    except WRITE_ERRORS' tests/test_deployment.py
run attrition/api/routes.py '    metrics.rows_scored("/scoring", len(test))' '    pass' tests/test_metrics.py
run attrition/api/metrics.py 'REQUESTS.labels(route, method if method in METHODS else "other", str(status)).inc()' 'REQUESTS.labels(route, method, str(status)).inc()' tests/test_metrics.py
run attrition/api/metrics.py '        if 400 <= status < 500:' '        if 400 <= status < 500 and g.get("refusal"):' tests/test_metrics.py
run attrition/api/app.py 'if host not in ("0.0.0.0", "::")' 'if host' tests/test_hostile_http.py
run attrition/api/deadlines.py 'loop.run_callback(self.waiting.popleft().switch, None)' 'loop.run_callback(self.waiting.pop().switch, None)' tests/test_workers.py
run attrition/api/deadlines.py '            gc.collect()' '            pass' tests/test_workers.py
run attrition/api/balance.py 'if least is not None and held > least and self.waits < MOST_WAITS:' 'if least is not None and held > least + 1000 and self.waits < MOST_WAITS:' tests/test_crowd.py -k kept
run attrition/api/balance.py 'len(self.pool) > least + SLACK' 'len(self.pool) > least + 1000' tests/test_crowd.py -k restarts
exit ${survived:-0}
