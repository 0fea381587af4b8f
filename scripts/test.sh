#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end tests against lab droplets. Whatever a test run
# leaves behind (a crashed suite's droplets) is removed before and after.
set -uo pipefail
cd "$(dirname "$0")/.."

lab_down() { node test/dist/lab/cli.js down >/dev/null || echo "test: lab down failed" >&2; }
lab_down
trap lab_down EXIT

# Suites run one at a time: each boots droplets, and the machine has 2 CPUs.
node --test --test-concurrency=1 test/dist/unit/ test/dist/e2e/
