import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { AGENT_PORT } from '@plumb/shared';
import { baseCommands, renderAdoptScript } from '@plumb/controller/adopt-script';
import { dropletBase, renderUserData } from '@plumb/controller/cloud-init';
import { renderNginx } from '@plumb/agent/render/nginx';
import { namedUserData } from './user-data-input.js';

const input = namedUserData('adopted-1');

describe('the droplet base, as provision writes it and as adopt runs it', () => {
  test('adopt writes every file of the user-data, installs its packages and runs its commands, bootstrap last', () => {
    const userData = parse(renderUserData(input), { version: '1.1' }) as { packages: string[]; write_files: Array<{ path: string; content: string }>; runcmd: Array<string | string[]> };
    const script = renderAdoptScript({ base: dropletBase(input), agentPort: AGENT_PORT, force: false });
    for (const file of userData.write_files) assert.ok(script.includes(Buffer.from(file.content).toString('base64')), `adopt writes ${file.path}`);
    assert.match(script, new RegExp(`'install' '-y' '-q' '--no-install-recommends' ${userData.packages.map((p) => `'${p}'`).join(' ')}`));
    assert.match(script, /'\/usr\/local\/sbin\/plumb-install-base'\n[\s\S]*'ufw' '--force' 'enable'\n'systemd-run' [^\n]*plumb-bootstrap'\n/);
    assert.match(script, /id -u 'plumber' >\/dev\/null 2>&1 \|\| 'useradd' '--system' '--home-dir' '\/var\/plumber' '--no-create-home' '--shell' '\/usr\/sbin\/nologin' 'plumber'/);
    assert.doesNotMatch(script, /cloud-init-per/);
  });

  test('the script is valid sh, and the check comes before any change', () => {
    const script = renderAdoptScript({ base: dropletBase(input), agentPort: AGENT_PORT, force: true });
    assert.equal(spawnSync('sh', ['-n'], { input: script }).status, 0);
    assert.ok(script.indexOf('plumb_say checked') < script.indexOf('base64 -d'));
    assert.match(script, /^PLUMB_FORCE=1$/m);
  });

  test('a user-data key adopt does not know is refused, so the two cannot drift apart', () => {
    assert.throws(() => baseCommands({ ...dropletBase(input), mounts: [['/dev/vdb', '/data']] }), /adopt does not know how to apply the user-data key\(s\) mounts/);
  });

  test('adopt --import: the check lists do_deploy_api() units and their files, and plumb yields port 80 to the old site until retire-legacy', () => {
    const script = renderAdoptScript({ base: dropletBase(input), agentPort: AGENT_PORT, force: false, import: true });
    assert.match(script, /^PLUMB_IMPORT=1$/m);
    assert.ok(script.indexOf('plumb_say code') < script.indexOf('plumb_say checked'));
    const model = { apis: [{ name: 'sum', path: '/sum', frontPort: 7001, instances: [{ port: 9001 }] }], forward: null };
    assert.match(renderNginx(model), /^ {4}listen 80 default_server;$/m);
    assert.doesNotMatch(renderNginx({ ...model, defaultServer: false }), /default_server/);
  });
});
