import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, crashingApi, sumApi } from './api-fixtures.js';
import { httpGet } from './helpers.js';
import { plumbUser, provisionDroplet, type PlumbUser } from './plumb.js';

/**
 * Bad luck and bad input on one droplet (issue: the agent survives everything, loses nothing,
 * leaves nothing behind): what the operator's data and terminal must never suffer.
 */

let lab: Lab;
let user: PlumbUser;
let dropletId: number;
let address: string;

const onDroplet = (argv: string[]) => lab.droplet(dropletId).exec(argv);
const get = (path: string) => httpGet(`http://${address}${path}`, 5000);

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  ({ id: dropletId, address } = await provisionDroplet(user, 'faults'));
});

after(async () => {
  await lab?.stop();
});

test('remove --keep-files, then a deploy of that name that fails: data/ is still there', async () => {
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'keep'])).exitCode, 0);
  await onDroplet(['sh', '-c', 'echo precious > /var/plumber/keep/data/model.rds']);
  const removed = await user.plumb(['remove', 'keep', '--keep-files']);
  assert.equal(removed.exitCode, 0, removed.stderr);
  const failed = await user.plumb(['deploy', await apiDir(crashingApi), '--name', 'keep', '--health-timeout', '10']);
  assert.equal(failed.exitCode, 1, 'the crashing release is refused');
  assert.equal(await onDroplet(['cat', '/var/plumber/keep/data/model.rds']), 'precious');
  assert.equal(await onDroplet(['sh', '-c', 'ls /var/plumber/keep/releases | wc -l']), '1', 'only the kept release; the failed one is gone');
});

test('plumb logs: 300 lines of 40 KB with escape sequences arrive whole over one connection, shown escaped', async () => {
  const noisy = {
    'plumber.R': `
#* @get /noise
function() {
  for (i in 1:300) message(i, " \\033]0;owned\\007\\033[2J ", strrep("x", 40000))
  "done"
}
`,
  };
  assert.equal((await user.plumb(['deploy', await apiDir(noisy), '--name', 'noisy'])).exitCode, 0);
  assert.equal((await get('/noisy/noise')).status, 200);
  // journald takes the lines asynchronously: ask until the 300th is there.
  let result = await user.plumb(['logs', 'noisy', '-n', '400']);
  for (let i = 0; i < 20 && !/^.*300 \\x1b/m.test(result.stdout); i++) {
    await new Promise((r) => setTimeout(r, 500));
    result = await user.plumb(['logs', 'noisy', '-n', '400']);
  }
  assert.equal(result.exitCode, 0, result.stderr.slice(0, 2000));
  const lines = result.stdout.split('\n').filter((l) => / \d+ \\x1b\]0;owned\\x07\\x1b\[2J x{40000}$/.test(l));
  assert.equal(lines.length, 300);
  assert.ok(!result.stdout.includes('\x1b'), 'no raw escape character reaches the terminal');
});

test('a damaged state.json: the agent keeps running, rebuilds it, and every API still serves and shows', async () => {
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum', '--path', '/calc'])).exitCode, 0);
  const release = (await onDroplet(['readlink', '/var/plumber/sum/current'])).replace(/^releases\//, '');
  await onDroplet(['sh', '-c', 'printf "{\\"version\\": 1, \\"apis\\": {" > /var/lib/plumb/state.json']);
  await onDroplet(['systemctl', 'restart', 'plumb-agent']);
  // Ask the agent itself, with a deadline: it answers once it has rebuilt its state.
  let status = await user.plumb(['status', '--json']);
  for (let i = 0; i < 30 && status.exitCode !== 0; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    status = await user.plumb(['status', '--json']);
  }
  assert.equal(status.exitCode, 0, status.stderr);
  const [droplet] = JSON.parse(status.stdout) as Array<{ status: { apis: Array<{ name: string; path: string; release: string }>; events: Array<{ kind: string; detail: string }> } }>;
  const sum = droplet?.status.apis.find((a) => a.name === 'sum');
  assert.deepEqual([sum?.path, sum?.release], ['/calc', release], 'the URL path from the last good copy, the release from disk');
  assert.ok(droplet?.status.events.some((e) => e.kind === 'state-rebuilt' && /noisy, sum/.test(e.detail)), JSON.stringify(droplet?.status.events.slice(-3)));
  assert.match(await onDroplet(['sh', '-c', 'ls /var/lib/plumb/']), /state\.json\.damaged-/);
  assert.deepEqual(JSON.parse((await get('/calc/add?a=1&b=2')).body), [3]);
  assert.equal((await user.plumb(['deploy', await apiDir(sumApi('v2')), '--name', 'sum'])).exitCode, 0, 'and plumb goes on working');
  assert.deepEqual(JSON.parse((await get('/calc/version')).body), ['v2']);
});
