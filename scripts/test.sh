#!/usr/bin/env bash
# npm test: sets itself up the way `npm run demo` does, then runs every test.
# - Node >= 20 (package.json "engines"), else one line saying so.
# - The Debian packages the tests need (TEST_PACKAGES in scripts/packages.sh,
#   the list .ci/run uses): installed when missing if we are root, else the
#   exact apt-get line is printed and we stop before running anything.
# - npm ci when node_modules has no jest; then the build (the integration
#   tests run dist/src/cli.js), the type check of the tests and the linter.
# - jest through scripts/run-tests.js, which stops every daemon the tests
#   started, also after a crash, a failure or Ctrl-C / SIGTERM, and ends with
#   "tests: N passed, N failed, N skipped".
# Arguments go to jest (npm test -- test/harness).
set -uo pipefail
cd "$(dirname "$0")/.."

# What .ci/run reads when it is our caller; otherwise the same line ourselves.
gave_up() {
  [ -z "${VMM_TEST_SUMMARY:-}" ] && echo "tests: 0 passed, 1 failed"
  exit 1
}

# npm ci and the build run in a session of their own, so that an interrupt
# (Ctrl-C, or SIGTERM that npm forwards to us) stops all of each (npm, sh,
# tsc) rather than leaving it running without us.
child=
stop_child() {
  trap '' INT TERM HUP
  if [ -n "$child" ]; then
    kill -TERM -- "-$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  exit "$1"
}
trap 'stop_child 130' INT
trap 'stop_child 143' TERM
trap 'stop_child 129' HUP
step() {
  setsid "$@" &
  child=$!
  wait "$child"
  local rc=$?
  child=
  return "$rc"
}

source scripts/packages.sh
require_node20 "npm test"
ensure_packages test || exit 1

[ -x node_modules/.bin/jest ] || step npm ci --no-audit --no-fund || gave_up
step npm run --silent build || gave_up
# ts-jest compiles each test file alone and checks no types, and tsc's build
# leaves the tests out: both gates run here, before any test.
step npx tsc -p tsconfig.test.json || { echo "npm test: type errors (above) in the tests or the code they use"; gave_up; }
step npx eslint . || { echo "npm test: lint errors (above); eslint.config.mjs says what each rule guards against"; gave_up; }

exec node scripts/run-tests.js "$@"
