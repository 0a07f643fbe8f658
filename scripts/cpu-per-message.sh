#!/bin/sh
# What one message costs a consumer service (processing, notification or analytics), tracing
# included: its /metrics read twice, and the increases of tracing_lab_process_cpu_seconds_total and
# tracing_lab_spans_recorded_total over the increase of tracing_lab_messages_handled_total.
# Usage: scripts/cpu-per-message.sh URL [SECONDS]
#   URL: the service's address, e.g. http://localhost:18081 after
#        kubectl port-forward deploy/lab-processing 18081:8080
set -eu
url=${1:?usage: scripts/cpu-per-message.sh URL [SECONDS]}
seconds=${2:-30}

# "<cpu seconds> <spans recorded> <messages handled>" from the service's metrics.
figures() {
  curl -fsS "$url/metrics" | awk '
    /^tracing_lab_process_cpu_seconds_total / { cpu = $2 }
    /^tracing_lab_spans_recorded_total / { spans = $2 }
    /^tracing_lab_messages_handled_total\{/ { n += $2 }
    END { if (cpu == "" || spans == "") exit 1; printf "%s %d %d\n", cpu, spans, n }'
}

before=$(figures) || { echo "no service metrics at $url/metrics" >&2; exit 1; }
sleep "$seconds"
after=$(figures) || { echo "no service metrics at $url/metrics" >&2; exit 1; }
echo "$before $after" | awk -v s="$seconds" '{
  n = $6 - $3
  if (n <= 0) { print "no message handled in " s " s: is the load generator on?" > "/dev/stderr"; exit 1 }
  printf "%d messages in %s s: %.0f µs of CPU and %.2f spans recorded per message\n", n, s, ($4 - $1) / n * 1e6, ($5 - $2) / n
}'
