#!/usr/bin/env node
// The lab's sources stay in test/lab (the e2e tests import them by relative path) and are compiled
// with the tests into test/dist/lab; this committed entry point lets npm link the bin at `npm ci`,
// before anything is built.
try {
  await import('../../dist/lab/cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/lab/cli.js')) throw err;
  console.error('lab: the lab is not built yet\n  run `npm run build` at the top of the plumb repository');
  process.exitCode = 1;
}
