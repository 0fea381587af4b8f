import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { AGENT_NODE_FLAGS, AGENT_PORT, AgentConfig, USER_DATA_MAX_BYTES, ValidationError } from '@plumb/shared';
import { DEFAULT_SWAP_BYTES, renderUserData, validateUserData, type UserDataInput } from '@plumb/controller/cloud-init';
import { rootfsReady } from '../lab/droplets/rootfs.js';
import { inDropletImage } from './droplet-image.js';
import { namedUserData, typicalUserData } from './user-data-input.js';

const typical = typicalUserData;
const named = namedUserData;

interface WriteFile {
  path: string;
  content: string;
  owner?: string;
  permissions?: string;
}

interface CloudConfig {
  locale: string;
  apt: { conf: string };
  package_update: boolean;
  packages: string[];
  users: unknown[];
  write_files: WriteFile[];
  bootcmd: (string | string[])[];
  runcmd: (string | string[])[];
}

/** Reads user-data back as cloud-init does: YAML 1.1 (PyYAML). */
const readBack = (text: string) => parse(text, { version: '1.1' }) as CloudConfig;

function file(config: CloudConfig, filePath: string): WriteFile {
  const found = config.write_files.find((f) => f.path === filePath);
  assert.ok(found, `write_files has ${filePath}`);
  return found;
}

const commands = (config: CloudConfig) => config.runcmd.filter((c): c is string[] => Array.isArray(c));
const ufwRules = (config: CloudConfig) => commands(config).filter((c) => c[0] === 'ufw');
const indexOf = (config: CloudConfig, command: string[]) =>
  config.runcmd.findIndex((c) => Array.isArray(c) && c.join(' ') === command.join(' '));

function refusal(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ValidationError, `a ValidationError, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('cloud-init user-data', () => {
  test('a typical droplet renders as #cloud-config that passes the schema, far under 64 KiB', (t) => {
    const text = renderUserData(typical);
    assert.ok(text.startsWith('#cloud-config\n'));
    validateUserData(text);
    const bytes = Buffer.byteLength(text);
    t.diagnostic(`typical user-data: ${bytes} bytes (limit ${USER_DATA_MAX_BYTES})`);
    assert.ok(bytes < USER_DATA_MAX_BYTES / 2);
  });

  test('packages come from Debian without recommends: node first, R, plumber, nginx, ufw and certbot in runcmd', () => {
    const config = readBack(renderUserData(typical));
    assert.equal(config.locale, 'C.UTF-8');
    assert.equal(config.package_update, true);
    assert.deepEqual(config.packages, ['nodejs', 'ca-certificates']);
    assert.match(config.apt.conf, /^APT::Install-Recommends "false";$/m);
    const base = file(config, '/usr/local/sbin/plumb-install-base');
    assert.equal(base.permissions, '0755');
    assert.match(base.content, /apt-get .*install -y --no-install-recommends \\\n\s+r-base-core r-cran-plumber nginx ufw certbot nftables\n/);

    assert.equal(config.runcmd[0], 'set -ex', 'runcmd stops at the first failing command');
    assert.ok(indexOf(config, ['/usr/local/sbin/plumb-swap', '/swapfile', String(DEFAULT_SWAP_BYTES)]) > 0);
    assert.ok(indexOf(config, ['/usr/local/sbin/plumb-install-base']) > 0);
    assert.ok(config.runcmd.findIndex((c) => Array.isArray(c) && c[0] === 'ufw') > indexOf(config, ['/usr/local/sbin/plumb-install-base']));
    // The bootstrap starts the agent once node is here; runcmd neither fetches nor starts it.
    assert.ok(!commands(config).some((c) => c.includes('plumb-agent') || c[0] === 'curl'));
  });

  test('the bootstrap starts in bootcmd, once per instance, without waiting for boot to finish, after write_files made its last file', () => {
    const config = readBack(renderUserData(typical));
    assert.equal(config.bootcmd.length, 1);
    const [command] = config.bootcmd as string[][];
    assert.deepEqual(command?.slice(0, 4), ['cloud-init-per', 'instance', 'plumb-bootstrap', 'systemd-run']);
    assert.ok(command?.includes('--no-block') && command.includes('--property=DefaultDependencies=no'));
    assert.match(command?.at(-1) ?? '', /^until \[ -e \/etc\/plumb-agent\/package.json \]; .*exec \/usr\/bin\/python3 \/usr\/local\/sbin\/plumb-bootstrap$/);
    const paths = config.write_files.map((f) => f.path);
    assert.equal(paths.at(-1), '/etc/plumb-agent/package.json', 'the file the bootstrap waits for is written last');
    assert.ok(paths.indexOf('/usr/local/sbin/plumb-bootstrap') < paths.indexOf('/etc/plumb-agent/config.json'));
    const bootstrap = file(config, '/usr/local/sbin/plumb-bootstrap');
    assert.equal(bootstrap.permissions, '0755');
    assert.match(bootstrap.content, /^#!\/usr\/bin\/python3\n/);
  });

  test('the package facts the bootstrap checks are the size and sha512 plumb sends, and a mirror only when asked', () => {
    const facts = (input: UserDataInput) => JSON.parse(file(readBack(renderUserData(input)), '/etc/plumb-agent/package.json').content) as unknown;
    assert.deepEqual(facts(typical), typical.agentPackage);
    const url = 'https://mirror.example/plumb-agent-0.1.0.tgz';
    assert.deepEqual(facts({ ...typical, agentPackage: { ...typical.agentPackage, url } }), { ...typical.agentPackage, url });
    refusal(() => renderUserData({ ...typical, agentPackage: { ...typical.agentPackage, sha512: 'abc' } }), /agent package .*invalid/);
  });

  test('ufw denies incoming but for exactly 22, 80 and the agent port, allows outgoing, and is enabled last', () => {
    const config = readBack(renderUserData(typical));
    assert.deepEqual(ufwRules(config), [
      ['ufw', 'default', 'deny', 'incoming'],
      ['ufw', 'default', 'allow', 'outgoing'],
      ['ufw', 'allow', '22/tcp'],
      ['ufw', 'allow', '80/tcp'],
      ['ufw', 'allow', `${AGENT_PORT}/tcp`],
      ['ufw', '--force', 'enable'],
    ]);
    assert.deepEqual(config.runcmd.at(-1), ['ufw', '--force', 'enable']);
  });

  test('allowSsh: false leaves 22 closed', () => {
    const rules = ufwRules(readBack(renderUserData({ ...typical, allowSsh: false })));
    assert.deepEqual(rules.filter((r) => r[1] === 'allow').map((r) => r[2]), ['80/tcp', `${AGENT_PORT}/tcp`]);
    assert.equal(rules.length, 5);
  });

  test('the agent config file is root-only and is what the agent parses', () => {
    const config = readBack(renderUserData(typical));
    const agentConfig = file(config, '/etc/plumb-agent/config.json');
    assert.equal(agentConfig.permissions, '0600');
    assert.equal(agentConfig.owner, 'root:root');
    assert.deepEqual(AgentConfig.parse(JSON.parse(agentConfig.content)), typical.agentConfig);
  });

  test('an invalid agent config is refused before anything is rendered', () => {
    refusal(() => renderUserData({ ...typical, agentConfig: { ...typical.agentConfig, enrolmentSecret: 'not-hex' } }), /agent config .*enrolmentSecret/);
  });

  test('the agent runs under systemd as root, restarted always, with /var/lib/plumb as its state', () => {
    const unit = file(readBack(renderUserData(typical)), '/etc/systemd/system/plumb-agent.service').content;
    for (const line of [
      // The agent's memory flags, as its upgrade drop-ins give them too.
      `ExecStart=/usr/bin/node ${AGENT_NODE_FLAGS.join(' ')} /opt/plumb-agent/current/bundle/plumb-agent.mjs`,
      'Restart=always',
      'RestartSec=1',
      'After=network-online.target',
      'Wants=network-online.target',
      'WantedBy=multi-user.target',
      'StateDirectory=plumb',
      'Environment=NODE_ENV=production',
    ]) {
      assert.ok(unit.split('\n').includes(line), `unit has ${line}`);
    }
    assert.doesNotMatch(unit, /^(User|KillMode)=/m);
  });

  test('the plumber user is a system user without a login shell, and runcmd makes /var/plumber root\'s', () => {
    const config = readBack(renderUserData(typical));
    assert.equal(config.users[0], 'default');
    assert.deepEqual(config.users[1], { name: 'plumber', system: true, homedir: '/var/plumber', shell: '/usr/sbin/nologin' });
    assert.ok(indexOf(config, ['install', '-d', '-o', 'root', '-g', 'root', '-m', '0755', '/var/plumber']) > 0);
  });

  test('swap: 4 GiB unless told otherwise, made by plumb-swap (not cloud-init’s swap module)', () => {
    const config = readBack(renderUserData({ ...typical, swapBytes: 2 * 1024 ** 3 }));
    assert.ok(indexOf(config, ['/usr/local/sbin/plumb-swap', '/swapfile', String(2 * 1024 ** 3)]) > 0);
    assert.equal(file(config, '/usr/local/sbin/plumb-swap').permissions, '0755');
    assert.equal('swap' in config, false);
    refusal(() => renderUserData({ ...typical, swapBytes: 1.5 }), /swap size 1.5/);
  });

  test('strings that YAML 1.1 would read as booleans, numbers or times reach cloud-init as the same strings', () => {
    const tricky = ['on', 'yes', 'No', 'off', 'y', '1:20', '0600', '0o17', '1e3', '0x1F', '2026-11-01', '~', 'null', '', ' lead', 'trail ',
      'a, b', '[x]', '{y: 1}', 'k: v', '# not a comment', '- item', '*alias', '&anchor', '!tag', "'single", '"double', 'multi\nline', '%percent', '@at', '`tick', 'ünïcødé'];
    for (const name of tricky) {
      const content = file(readBack(renderUserData(named(name))), '/etc/plumb-agent/config.json').content;
      assert.equal((JSON.parse(content) as { dropletName: string }).dropletName, name);
    }
  });

  test('user-data over 64 KiB is refused with its size and the limit', () => {
    const big = named('x'.repeat(70 * 1024));
    refusal(() => renderUserData(big), /user-data is \d{2},\d{3} bytes, over DigitalOcean's limit of 65,536 bytes \(64 KiB\)/);
    refusal(() => validateUserData(`#cloud-config\n# ${'x'.repeat(USER_DATA_MAX_BYTES)}\n`), /64 KiB/);
  });

  test('text that is not cloud-config YAML is refused', () => {
    refusal(() => validateUserData('packages: [nginx]\n'), /does not start with "#cloud-config"/);
    refusal(() => validateUserData('#cloud-config\npackages: [nginx\n'), /not valid YAML: .*line 3/s);
  });

  test("a document cloud-init's schema refuses is refused with the schema's message and the path", () => {
    refusal(() => validateUserData('#cloud-config\npackages: 5\n'), /\/packages: must be array/);
    refusal(() => validateUserData('#cloud-config\nruncmd: {a: 1}\n'), /\/runcmd: must be array/);
    refusal(() => validateUserData('#cloud-config\nwrite_files:\n  - path: /x\n    bogus: 1\n'), /\/write_files\/0: must NOT have additional properties \("bogus"\)/);
    refusal(() => validateUserData('#cloud-config\npackage_updates: true\n'), /\(top level\): must NOT have additional properties \("package_updates"\)/);
    refusal(() => validateUserData('#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0600\n'), /\/write_files\/0\/permissions: must be string/);
  });

  test('keys cloud-init has deprecated are refused: they would leave cloud-init "degraded"', () => {
    refusal(() => validateUserData('#cloud-config\nusers:\n  - default\n  - name: p\n    lock-passwd: true\n'), /\/users\/1\/lock-passwd: deprecated in cloud-init 22.3: Use \*\*lock_passwd\*\* instead/);
  });
});

describe('cloud-init user-data, checked inside the Debian 13 droplet image', { skip: rootfsReady() ? false : 'the lab root filesystem is not built (npm run setup)' }, () => {
  test("cloud-init 25's own validator accepts what we render, and refuses what we refuse", async () => {
    const tricky = named('on no 1:20 0600 2026-11-01 a, b k: v');
    const bad = '#cloud-config\npackages: 5\n';
    refusal(() => validateUserData(bad), /must be array/);
    const files = { '/tmp/typical.yaml': renderUserData(typical), '/tmp/tricky.yaml': renderUserData(tricky), '/tmp/bad.yaml': bad };
    for (const [name, valid] of [['typical.yaml', true], ['tricky.yaml', true], ['bad.yaml', false]] as const) {
      const result = await inDropletImage(files, ['cloud-init', 'schema', '--config-file', `/tmp/${name}`]);
      const said = `${String(result.stdout)}\n${String(result.stderr)}`;
      assert.equal(result.exitCode === 0, valid, `cloud-init schema on ${name}: ${said}`);
      if (valid) {
        assert.match(said, /Valid schema/);
        assert.doesNotMatch(said, /deprecat/i);
      } else {
        assert.match(said, /5 is not of type 'array'/);
      }
    }
  });

  test('plumb-swap makes the file and its fstab line once, and reports a swapon that cannot work instead of failing', async () => {
    const script = file(readBack(renderUserData(typical)), '/usr/local/sbin/plumb-swap').content;
    const run = 'sh /tmp/plumb-swap /swapfile 1048576; sh /tmp/plumb-swap /swapfile 1048576; stat -c "%a %s" /swapfile; grep -c "^/swapfile none swap sw 0 0$" /etc/fstab';
    const result = await inDropletImage({ '/tmp/plumb-swap': script }, ['sh', '-c', run]);
    assert.equal(result.exitCode, 0, String(result.stderr));
    const lines = String(result.stdout).trim().split('\n');
    assert.equal(lines.length, 4, String(result.stdout));
    assert.match(lines[0] ?? '', /^swap created, not enabled: .*Operation not permitted/);
    assert.match(lines[1] ?? '', /^swap created, not enabled: /);
    assert.deepEqual(lines.slice(2), ['600 1048576', '1']);
  });
});
