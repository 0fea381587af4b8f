#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end tests against lab droplets. Whatever a test run
# leaves behind (a crashed suite's droplets) is removed before and after.
set -uo pipefail
cd "$(dirname "$0")/.."

lab_down() { node test/dist/lab/cli.js down >/dev/null || echo "test: lab down failed" >&2; }
lab_down
trap lab_down EXIT

status=0
# Alone first, one after the other: lab-teardown checks the whole host (it skips that check while
# another lab runs), and lab-droplets empties part of the apt archive every droplet shares.
alone=(test/dist/e2e/lab-teardown.test.js test/dist/e2e/lab-droplets.test.js)
node --test --test-concurrency=1 "${alone[@]}" || status=1

# Then two files at a time (2 CPUs; a suite mostly waits on its droplets): each e2e file starts its
# own lab instance, whose droplets take addresses claimed atomically (10.213.N) and whose
# DigitalOcean stand-in, package mirror and ACME server listen on ports of their own.
# The longest e2e files first (about 12, 12, 9, 7, 6 and 5 min of tests in session 8's CI run,
# mostly waiting on their droplets; spare 1.5 min alone in session 13), then the other e2e files, then the short
# unit files filling in at the end: a long file started late would end the run alone, long after
# everything else.
longest=(scale-out adopt r-packages user-behaviour request-path health spare)
rest=()
for name in "${longest[@]}"; do rest+=("test/dist/e2e/$name.test.js"); done
for f in test/dist/e2e/*.test.js test/dist/unit/*.test.js; do
  [[ " ${alone[*]} ${rest[*]} " == *" $f "* ]] || rest+=("$f")
done
node --test --test-concurrency=2 "${rest[@]}" || status=1
exit "$status"
