import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { AGENT_PACKAGE_MAX_BYTES, EXIT, LEGACY_APIS_MAX, PlumbError } from '@plumb/shared';
import { startLab, type Lab } from '../lab/lab.js';
import { apiDir, sumApi } from './api-fixtures.js';
import { clientFor, httpGet, waitActive } from './helpers.js';
import { startLoad, type LoadReport } from './load.js';
import { PLUMB_CLI, plumbUser, rawUpload, type PlumbUser } from './plumb.js';

/**
 * `plumb adopt`: lab droplets made WITHOUT plumb's user-data, only with an SSH key (as a user's
 * hand-made or Terraform droplet), taken over by the real binary through the system's OpenSSH.
 * One droplet is adopted and used; the other only ever refuses, and is checked to be untouched.
 */

let lab: Lab;
let user: PlumbUser;
let sshDir: string;
let knownHosts: string;
/** The adopted one, and the one that must refuse. */
const web = { id: 0, address: '' };
const other = { id: 0, address: '' };

const on = (d: { id: number }, argv: string[]) => lab.droplet(d.id).exec(argv);
/** `plumb adopt root@ADDRESS` with the test's key, and the environment pointing plumb's ssh at the test's known_hosts. */
const adoptArgs = (address: string, flags: string[]) => ['adopt', `root@${address}`, '--ssh-key', path.join(sshDir, 'id_ed25519'), ...flags];
const sshEnv = () => ({ PLUMB_SSH_CONFIG: path.join(sshDir, 'config') });
const adoptAs = (env: Record<string, string>, address: string, ...flags: string[]) => user.plumb(adoptArgs(address, flags), { env: { ...sshEnv(), ...env } });
const adopt = (address: string, ...flags: string[]) => adoptAs({}, address, ...flags);
/**
 * `plumb adopt` killed, as a dropped connection or a Ctrl-C ends it, once its progress shows the
 * agent package installed on the host and not yet enrolled (the bootstrap then starts the agent
 * on its own).
 */
async function adoptCutBeforeEnrolment(address: string, ...flags: string[]): Promise<void> {
  const installed = /\] (waiting for cloud-init to install node|starting the agent)\n/;
  const run = execa(process.execPath, [PLUMB_CLI, ...adoptArgs(address, flags)], { env: { ...user.env, ...sshEnv() }, reject: false, stdin: 'ignore', stdout: 'ignore', buffer: false });
  let progress = '';
  run.stderr?.on('data', (chunk: Buffer) => {
    progress += chunk.toString('utf8');
    if (installed.test(progress)) run.kill('SIGKILL');
  });
  const ended = await run;
  assert.equal(ended.signal, 'SIGKILL', `adopt was not cut before enrolment:\n${progress}`);
  assert.doesNotMatch(progress, /enrolling the agent/);
}
/** The droplet as the stand-in's API has it now (its tags), or undefined once it is gone. */
const standinDroplet = (id: number) => clientFor(lab).droplet.getDroplet({ droplet_id: id }).then((r) => r.data.droplet, () => undefined);
/** What a refused adopt must not have touched: plumb's files, user, packages and the host's own nginx sites. */
const untouched = (d: { id: number }) =>
  on(d, ['sh', '-c', 'ls -d /etc/plumb-agent /opt/plumb-agent /var/plumber /usr/local/sbin/plumb-* 2>&1; id plumber 2>&1; dpkg -l nodejs nginx 2>&1 | tail -n +6; ls /etc/nginx/sites-enabled /etc/os-release; true']);

before(async () => {
  lab = await startLab();
  user = await plumbUser(lab);
  sshDir = await mkdtemp(path.join(os.tmpdir(), 'plumb-adopt-ssh-'));
  knownHosts = path.join(sshDir, 'known_hosts');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'adopt-test', '-f', path.join(sshDir, 'id_ed25519')]);
  // The user's own ssh rules, kept out of root's ~/.ssh: the lab reuses addresses with new host keys.
  await writeFile(path.join(sshDir, 'config'), `Host *\n  UserKnownHostsFile ${knownHosts}\n`);
  const api = clientFor(lab);
  const publicKey = (await readFile(path.join(sshDir, 'id_ed25519.pub'), 'utf8')).trim();
  const { data } = await api.sshKey.createSshKey({ name: 'laptop', public_key: publicKey });
  const made = await Promise.all(
    ['web', 'other'].map((name) => api.droplet.createDroplet({ name, region: 'nyc3', size: 's-1vcpu-1gb', image: 'debian-13-x64', ssh_keys: [data.ssh_key.fingerprint] })),
  );
  for (const [i, d] of [web, other].entries()) {
    d.id = made[i]!.data.droplet.id;
    d.address = (await waitActive(api, d.id)).address;
  }
  // SSH answers once cloud-init has put the droplet's key in root's authorized_keys.
  for (const d of [web, other]) await lab.droplet(d.id).exec(['cloud-init', 'status', '--wait'], { timeoutMs: 300_000 });
  // The owner's own sites: one on port 80 (clashes with plumb), one on 8080 (does not).
  await on(web, ['sh', '-c', 'mkdir -p /etc/nginx/sites-enabled && printf "server {\\n  listen 80;\\n  server_name shop.example;\\n}\\n" > /etc/nginx/sites-enabled/shop && printf "server {\\n  listen 8080;\\n}\\n" > /etc/nginx/sites-enabled/admin']);
});

after(async () => {
  await lab?.stop();
});

describe('adopt refuses, and leaves the host as it was', () => {
  test('a host whose SSH key is not the one in known_hosts', async () => {
    const before = await untouched(other);
    const { stdout: impostor } = await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(sshDir, 'impostor'), '-C', '']).then(() => execa('cat', [path.join(sshDir, 'impostor.pub')]));
    await writeFile(knownHosts, `${other.address} ${impostor.split(' ').slice(0, 2).join(' ')}\n`);
    const refused = await adopt(other.address, '--yes');
    assert.equal(refused.exitCode, EXIT.auth, refused.stderr);
    assert.match(refused.stderr, /^plumb: the SSH host key of .* is not the one in your known_hosts: plumb did not log in, nothing was changed$/m);
    assert.equal(await untouched(other), before);
    await writeFile(knownHosts, '');
  });

  test('a host that does not run Debian 13, named in the refusal', async () => {
    await on(other, ['sh', '-c', 'rm /etc/os-release && printf \'ID=ubuntu\\nVERSION_ID="24.04"\\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\\n\' > /etc/os-release']);
    const before = await untouched(other);
    const refused = await adopt(other.address, '--yes');
    assert.equal(refused.exitCode, EXIT.failure, refused.stderr);
    assert.match(refused.stderr, /^plumb: plumb did not take over .*: the host runs Ubuntu 24\.04\.1 LTS; plumb supports Debian 13 \(trixie\) only; nothing was changed$/m);
    assert.equal(await untouched(other), before);
    assert.match(await user.plumb(['droplets', '--json']).then((r) => r.stdout), /^\[\]$/);
    // Debian again: the import tests below take this droplet over.
    await on(other, ['ln', '-sf', '../usr/lib/os-release', '/etc/os-release']);
  });

  test('--import of more old APIs than one adopt takes: refused before anything is installed, even with --force', async () => {
    const names = Array.from({ length: LEGACY_APIS_MAX + 1 }, (_, i) => `old${i}`);
    await on(other, ['sh', '-c', `for n in ${names.join(' ')}; do mkdir -p /var/plumber/$n && echo '#* @get /' > /var/plumber/$n/plumber.R && printf '[Service]\\nExecStart=/bin/true\\n' > /etc/systemd/system/plumber-$n.service; done`]);
    const before = await untouched(other);
    const refused = await adopt(other.address, '--yes', '--import', '--force');
    assert.equal(refused.exitCode, EXIT.failure, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^plumb: plumb did not take over .*: --import found ${LEGACY_APIS_MAX + 1} APIs of plumber's do_deploy_api\\(\\); plumb imports at most ${LEGACY_APIS_MAX} in one adopt; nothing was changed$`, 'm'));
    assert.equal(await untouched(other), before);
    await on(other, ['sh', '-c', 'rm -rf /var/plumber /etc/systemd/system/plumber-old*.service']);
  });

  test('a host whose nginx already serves port 80, unless --force', async () => {
    const before = await untouched(web);
    const refused = await adopt(web.address, '--yes');
    assert.equal(refused.exitCode, EXIT.failure, refused.stderr);
    assert.match(refused.stderr, /nginx already serves port 80 with \/etc\/nginx\/sites-enabled\/shop; nothing was changed\n  .*--force/);
    assert.doesNotMatch(refused.stderr, /admin/);
    assert.equal(await untouched(web), before);
  });
});

describe('an adopted host is a plumb droplet', () => {
  let adopted: Awaited<ReturnType<typeof adopt>>;

  before(async () => {
    // The refused droplet becomes an old plumber one meanwhile (its apt install beside this one's).
    legacyReady = legacySsh(doProvisionAndDeploy(sumApi('v1')['plumber.R']) + doDeployApi('tally', 8001, TALLY_R)).then(() => undefined, (err: Error) => err);
    // No DigitalOcean token at first: the droplet is recognized by its metadata but cannot be tagged yet.
    adopted = await adoptAs({ DIGITALOCEAN_ACCESS_TOKEN: '' }, web.address, '--yes', '--force', '--name', 'web');
  });

  test('adopt --force installs the base and agent, pins it, prints provision\'s summary and what it changed', () => {
    assert.equal(adopted.exitCode, 0, adopted.stderr);
    assert.match(adopted.stdout, new RegExp(`^droplet web \\(id ${web.id}\\) is ready at ${web.address.replaceAll('.', '\\.')} in `));
    assert.match(adopted.stdout, new RegExp(`\\n {2}DigitalOcean droplet ${web.id}, not tagged \\(no DIGITALOCEAN_ACCESS_TOKEN: set DIGITALOCEAN_ACCESS_TOKEN and run \`plumb adopt root@${web.address.replaceAll('.', '\\.')}\` again to tag it\\); external until then$`, 'm'));
    assert.match(adopted.stdout, /\n {2}agent \d+\.\d+\.\d+, enrolled; certificate pinned [0-9a-f]{16}…\n/);
    assert.match(adopted.stdout, /changed on the host:\n {4}nginx: \/etc\/nginx\/sites-enabled\/shop disabled/);
  });

  test('it is listed as external, with the same base as a provisioned droplet (the site on 8080 kept)', async () => {
    const listed = await user.plumb(['droplets']);
    assert.match(listed.stdout, new RegExp(`\\nweb +${web.id} +${web.address.replaceAll('.', '\\.')} +external `));
    assert.deepEqual((await standinDroplet(web.id))?.tags, []);
    assert.equal(await on(web, ['systemctl', 'is-active', 'plumb-agent']), 'active');
    assert.match(await on(web, ['ufw', 'status']), /Status: active[\s\S]*22\/tcp[\s\S]*80\/tcp[\s\S]*8731\/tcp/);
    const sites = await on(web, ['ls', '/etc/nginx/sites-enabled']);
    assert.match(sites, /^admin$/m);
    assert.doesNotMatch(sites, /shop/);
    assert.match(await on(web, ['sh', '-c', 'id -u plumber >/dev/null && Rscript -e "cat(as.character(packageVersion(\'plumber\')))"']), /^1\.\d+\.\d+$/);
  });

  test('deploy, serve, logs and status work; and still do with SSH closed', async () => {
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v1')), '--name', 'sum']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.equal((await httpGet(`http://${web.address}/sum/add?a=1&b=2`, 5000)).body, '[3]');
    const logs = await user.plumb(['logs', 'sum', '-n', '20']);
    assert.equal(logs.exitCode, 0, logs.stderr);
    assert.match(logs.stdout, /plumber|Running|sum/i);
    const status = await user.plumb(['status']);
    assert.equal(status.exitCode, 0, status.stderr);
    assert.match(status.stdout, /sum/);

    const closed = await user.plumb(['firewall', 'close-ssh', '--yes']);
    assert.equal(closed.exitCode, 0, closed.stderr);
    assert.equal(await portOpen(web.address, 22), false);
    const again = await user.plumb(['deploy', await apiDir(sumApi('v2')), '--name', 'sum']);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal(await answerOf(`http://${web.address}/sum/version`, '["v2"]'), '["v2"]', await on(web, ['sh', '-c', 'ufw status; nft list ruleset | head -80']));
    assert.equal((await user.plumb(['status'])).exitCode, 0);
  });

  test(`an agent package over ${AGENT_PACKAGE_MAX_BYTES / 1024 / 1024} MiB is refused as it arrives; one of that size is read whole (and refused for its sha512); nothing is installed`, async () => {
    const versions = () => on(web, ['ls', '-A', '/opt/plumb-agent/versions']);
    const before = await versions();
    const upgrade = { type: 'upgrade', version: '999.0.0', sha512: '0'.repeat(128), force: false } as const;
    const refusedWith = (code: string) => (err: unknown) => err instanceof PlumbError && err.code === code;
    await assert.rejects(rawUpload(user, web.address, upgrade, zeros(AGENT_PACKAGE_MAX_BYTES)), refusedWith('AGENT_PACKAGE_INTEGRITY'));
    await assert.rejects(rawUpload(user, web.address, upgrade, zeros(AGENT_PACKAGE_MAX_BYTES + 1)), refusedWith('AGENT_PACKAGE_TOO_LARGE'));
    assert.equal(await versions(), before);
    assert.equal((await user.plumb(['status'])).exitCode, 0);
  });

  test('destroy refuses it untagged; adopt again with a token tags it (no SSH): listed as a droplet of its group', async () => {
    const destroyed = await user.plumb(['destroy', 'web', '--yes']);
    assert.equal(destroyed.exitCode, EXIT.usage);
    assert.match(destroyed.stderr, new RegExp(`^plumb: web is DigitalOcean droplet ${web.id}, adopted but never tagged for plumb: plumb does not destroy it\\n.*plumb adopt root@`, 'm'));
    // SSH is closed by now: tagging needs only DigitalOcean's API, and flags that need SSH are refused.
    const idle = await adopt(web.address, '--import', '--force', '--group', 'edge');
    assert.equal(idle.exitCode, EXIT.usage, idle.stderr);
    assert.match(idle.stderr, new RegExp(`^plumb: web \\(${web.address.replaceAll('.', '\\.')}\\) is adopted already, so adopt now only tags it on DigitalOcean \\(no SSH\\) and --import, --force would do nothing; nothing was changed$`, 'm'));
    assert.deepEqual((await standinDroplet(web.id))?.tags, []);
    const tagged = await adopt(web.address, '--group', 'edge');
    assert.equal(tagged.exitCode, 0, tagged.stderr);
    assert.match(tagged.stdout, new RegExp(`\\n {2}DigitalOcean droplet ${web.id}: tagged plumb`));
    assert.deepEqual((await standinDroplet(web.id))?.tags, ['plumb', 'plumb-group:edge']);
    assert.match((await user.plumb(['droplets'])).stdout, new RegExp(`\\nweb +${web.id} +${web.address.replaceAll('.', '\\.')} +active .*edge`));
    const group = await user.plumb(['status', '--group', 'edge']);
    assert.equal(group.exitCode, 0, group.stderr);
    assert.match(group.stdout, /web[\s\S]*sum/);
  });

  test('forget drops it and leaves the agent; uninstall removes the agent, the API keeps serving', async () => {
    const exported = await user.plumb(['droplets', 'export', 'web']);
    const forgotten = await user.plumb(['forget', 'web']);
    assert.equal(forgotten.exitCode, 0, forgotten.stderr);
    // Still tagged on DigitalOcean, so listed, but as another controller's (nothing here holds its pin).
    assert.deepEqual(JSON.parse((await user.plumb(['droplets', '--json'])).stdout).map((r: { name: string; foreign: boolean }) => [r.name, r.foreign]), [['web', true]]);
    assert.equal(await on(web, ['systemctl', 'is-active', 'plumb-agent']), 'active');

    const file = path.join(sshDir, 'web.json');
    await writeFile(file, exported.stdout);
    assert.equal((await user.plumb(['droplets', 'import', file])).exitCode, 0);
    const uninstalled = await user.plumb(['uninstall', 'web', '--yes']);
    assert.equal(uninstalled.exitCode, 0, uninstalled.stderr);
    assert.match(uninstalled.stdout, /the agent is being removed from web .*its APIs keep serving/);
    await waitFor(async () => (await on(web, ['sh', '-c', 'systemctl is-active plumb-agent; ls /opt/plumb-agent 2>&1; true'])).startsWith('inactive\nls:'));
    assert.equal(await portOpen(web.address, 8731), false);
    // Nothing is left that runs the agent's gone binary at boot; the table the APIs are reached by still loads.
    assert.equal(await on(web, ['sh', '-c', 'ls /etc/systemd/system/plumb-routing.service /etc/systemd/system/*.wants/plumb-routing.service 2>/dev/null; systemctl is-enabled plumb-isolation.service; true']), 'enabled');
    assert.equal((await httpGet(`http://${web.address}/sum/version`, 5000)).body, '["v2"]');
    // Still tagged on DigitalOcean, so listed, but as another controller's (nothing here holds its pin).
    assert.deepEqual(JSON.parse((await user.plumb(['droplets', '--json'])).stdout).map((r: { name: string; foreign: boolean }) => [r.name, r.foreign]), [['web', true]]);
  });

  test('after uninstall a restarted worker still serves; an adopt cut between the agent\'s install and its enrolment, run again (no --force), takes its API over, tagged at once; destroy deletes the droplet', async () => {
    // Its env file and the nftables map outlive the agent.
    await on(web, ['sh', '-c', "systemctl restart 'plumber-sum@*.service'"]);
    await waitFor(async () => (await httpGet(`http://${web.address}/sum/version`, 5000).catch(() => ({ body: '' }))).body === '["v2"]');
    // close-ssh closed SSH; its owner opens it again for the new adopt.
    await on(web, ['ufw', 'allow', '22/tcp']);
    await adoptCutBeforeEnrolment(web.address, '--yes', '--name', 'web');
    // What it left: the agent installed and started by the bootstrap, holding a secret no controller used.
    await waitFor(async () => (await on(web, ['sh', '-c', 'systemctl is-active plumb-agent; true'])) === 'active');
    assert.match(await on(web, ['cat', '/etc/plumb-agent/config.json']), /"enrolmentSecret"/);
    const again = await adopt(web.address, '--yes', '--name', 'web');
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stdout, /changed on the host:[\s\S]*\n {4}the agent an adopt cut short left here \(installed, never enrolled\) is replaced\n/);
    assert.doesNotMatch(await on(web, ['cat', '/etc/plumb-agent/config.json']), /"enrolmentSecret"/);
    assert.match(again.stdout, /the APIs plumb uninstall left in \/var\/plumber are the new agent's/);
    assert.match((await user.plumb(['status'])).stdout, /sum/);
    assert.equal((await user.plumb(['releases', 'sum'])).exitCode, 0);
    assert.equal((await httpGet(`http://${web.address}/sum/version`, 5000)).body, '["v2"]');
    assert.match(again.stdout, new RegExp(`\\(id ${web.id}\\)[\\s\\S]*DigitalOcean droplet ${web.id}: tagged plumb`));
    const destroyed = await user.plumb(['destroy', 'web', '--yes']);
    assert.equal(destroyed.exitCode, 0, destroyed.stderr);
    assert.equal(await standinDroplet(web.id), undefined);
    assert.equal((await user.plumb(['droplets', '--json'])).stdout, '[]');
  });
});

/** The old tools' way in: root over SSH, a shell script on stdin. */
const legacySsh = (script: string) =>
  execa('ssh', ['-F', path.join(sshDir, 'config'), '-i', path.join(sshDir, 'id_ed25519'), '-o', 'StrictHostKeyChecking=accept-new', '-o', 'BatchMode=yes', `root@${other.address}`, '/bin/sh -s'], { input: script });
/** plumber's old setup of the refused droplet, started while the other one is adopted; an error if it failed. */
let legacyReady: Promise<Error | undefined> = Promise.resolve(new Error('the old plumber setup never started'));

/**
 * An old API that writes beside its code as it starts: root could, under its old unit; plumb's
 * sandbox lets an API write only to its data/, so under plumb it never starts.
 */
const TALLY_R = `writeLines(format(Sys.time()), "/var/plumber/tally/started.txt")

#* @get /count
function() 1
`;

/**
 * plumber's do_provision() and do_deploy_api(droplet, "sum", dir, port = 8000, forward = TRUE), step
 * by step as plumber ran them over SSH (Debian's R and plumber instead of CRAN's), with plumber's
 * own server files: nginx.conf, plumber-api.conf, forward.conf and plumber.service.
 */
const doProvisionAndDeploy = (plumberR: string) => `set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends r-base-core r-cran-plumber nginx ufw >/dev/null
rm -f /etc/nginx/sites-enabled/default
mkdir -p /var/certbot /etc/nginx/sites-available/plumber-apis/ /var/plumber
cat > /etc/nginx/sites-available/plumber <<'END'
# Plumber server configuration

server {
  listen 80 default_server;
  listen [::]:80 default_server;

  server_name _;

  include /etc/nginx/sites-available/plumber-apis/*;

  location /.well-known/ {
    root /var/certbot/;
  }
}
END
ln -sf /etc/nginx/sites-available/plumber /etc/nginx/sites-enabled/
systemctl reload nginx
ufw allow http >/dev/null
ufw allow ssh >/dev/null
ufw -f enable >/dev/null
${doDeployApi('sum', 8000, plumberR)}
cat > /etc/nginx/sites-available/plumber-apis/_forward.conf <<'END'
location = / {
  return 307 /sum;
}
END
systemctl reload nginx
`;

/** do_deploy_api(droplet, NAME, dir, port = PORT) on a droplet do_provision() set up. */
const doDeployApi = (name: string, port: number, plumberR: string) => `
mkdir -p /var/plumber/${name}
printf %s '${Buffer.from(plumberR).toString('base64')}' | base64 -d > /var/plumber/${name}/plumber.R
cat > /etc/systemd/system/plumber-${name}.service <<'END'
[Unit]
Description=Plumber API

[Service]
ExecStart=/usr/bin/Rscript -e "pr <- plumber::plumb('/var/plumber/${name}/plumber.R');  pr$run(port=${port}, swagger=FALSE)"
Restart=on-abnormal
WorkingDirectory=/var/plumber/${name}/

[Install]
WantedBy=multi-user.target
END
systemctl daemon-reload
systemctl start plumber-${name} && sleep 1
systemctl enable plumber-${name} 2>/dev/null
cat > /etc/nginx/sites-available/plumber-apis/${name}.conf <<'END'
location /${name}/ {
  proxy_pass http://localhost:${port}/;
  proxy_set_header Host $host;
}
END
systemctl reload nginx
`;

/** do_remove_api(droplet, NAME, delete = TRUE): its unit, its location and its files go. */
const doRemoveApi = (name: string) => `set -e
systemctl disable --now plumber-${name} 2>/dev/null
rm -rf /etc/systemd/system/plumber-${name}.service /etc/nginx/sites-available/plumber-apis/${name}.conf /var/plumber/${name}
systemctl daemon-reload
systemctl reload nginx
`;

describe("a droplet of plumber's do_provision(), adopted with --import (the refused droplet, Debian again)", () => {
  let grouped: Awaited<ReturnType<typeof adopt>>;
  let groupedChanged: { before: string; after: string };
  let importCut: Awaited<ReturnType<typeof adopt>>;
  let importLeft: { sum: string; tally: string; status: string };
  let adopted: Awaited<ReturnType<typeof adopt>>;
  let load: LoadReport;

  before(async () => {
    const failed = await legacyReady;
    if (failed) throw failed;
    for (const [api, answer] of [['sum/version', '["v1"]'], ['tally/count', '[1]']]) {
      await waitFor(async () => (await httpGet(`http://${other.address}/${api}`, 5000).catch(() => ({ body: '' }))).body === answer);
    }
    // A server DigitalOcean did not make: nothing answers at its metadata address.
    lab.metadata.hide(other.id);
    const before = await untouched(other);
    grouped = await adopt(other.address, '--yes', '--import', '--group', 'edge');
    groupedChanged = { before, after: await untouched(other) };
    // Every answer must be the API's 200: a 404 or 502 while the port changes hands is a failure.
    const running = startLoad(`http://${other.address}/sum/version`, { rps: 20, concurrency: 4, maxMs: 25 * 60_000, expectStatus: 200 });
    // tally does not start under plumb: the import stops there, and sum, imported before it, leaves plumb again.
    importCut = await adopt(other.address, '--yes', '--import', '--name', 'old');
    importLeft = {
      sum: await httpGet(`http://${other.address}/sum/version`, 5000).then((r) => r.body, (err: Error) => err.message),
      tally: await httpGet(`http://${other.address}/tally/count`, 5000).then((r) => r.body, (err: Error) => err.message),
      status: (await user.plumb(['status', '--json'])).stdout,
    };
    // What its hint says: the old API fixed (here: taken off the old way), plumb uninstalled, adopt again.
    await legacySsh(doRemoveApi('tally'));
    const uninstalled = await user.plumb(['uninstall', 'old', '--yes']);
    if (uninstalled.exitCode !== 0) throw new Error(uninstalled.stderr);
    // Gone once the agent and its identity are: the uninstall's own unit removes them one after the other.
    await waitFor(async () => (await on(other, ['sh', '-c', 'test -e /opt/plumb-agent || test -e /var/lib/plumb/tls; echo $?'])) === '1');
    adopted = await adopt(other.address, '--yes', '--import', '--name', 'old');
    load = await running.stop();
  });

  test('adopt --group of a host that is not a DigitalOcean droplet is refused before anything changes', () => {
    assert.equal(grouped.exitCode, EXIT.usage, grouped.stderr);
    assert.match(grouped.stderr, /^plumb: plumb did not take over .*: --group tags a DigitalOcean droplet, and this host is none \(its metadata service did not answer\); nothing was changed\n {2}adopt it without --group/m);
    assert.equal(groupedChanged.after, groupedChanged.before);
  });

  test('an import whose API does not start under plumb changes nothing that serves: the old site serves every API, plumb none, and the error says so', () => {
    assert.equal(importCut.exitCode, EXIT.failure, importCut.stderr);
    assert.match(importCut.stderr, /importing tally failed: .*; nothing was switched: plumber's old site still serves every API as before; sum \(imported before it\) left plumb again\n {2}make tally start under plumb .*`plumb uninstall old --yes` and adopt again with --import/);
    assert.equal(importLeft.sum, '["v1"]');
    assert.equal(importLeft.tally, '[1]');
    assert.deepEqual(JSON.parse(importLeft.status).map((d: { status: { apis: unknown[] } }) => d.status.apis), [[]]);
  });

  test('the old API answers all through the failed import and the adopt (0 failed requests), then is a plumb API whose first release is its code', async () => {
    assert.equal(adopted.exitCode, 0, adopted.stderr);
    assert.equal(load.failed, 0, load.failures.join('\n'));
    assert.ok(load.ok > 100, `only ${load.ok} requests answered`);
    const release = /imported from plumber's do_deploy_api\(\)[^\n]*\n {4}sum at \/sum: release (\S+), served at \//.exec(adopted.stdout)?.[1];
    assert.ok(release, adopted.stdout);
    const releases = await user.plumb(['releases', 'sum']);
    assert.equal(releases.exitCode, 0, releases.stderr);
    assert.match(releases.stdout, new RegExp(release));
    // The failed import's plumb release left its own directories beside the code: none is packed into this one.
    const files = (await on(other, ['ls', '-A', `/var/plumber/sum/releases/${release}`])).split('\n');
    assert.ok(files.includes('plumber.R'), files.join(' '));
    for (const own of ['releases', 'current', 'manifests', 'library', 'home', 'spare.fifo']) assert.ok(!files.includes(own), `${own} was packed into the imported release: ${files.join(' ')}`);
    assert.match((await user.plumb(['status'])).stdout, /sum/);
  });

  test('a host with no metadata service is external: listed so, and destroy refuses it with forget\'s hint', async () => {
    assert.match(adopted.stdout, /\n {2}not a DigitalOcean droplet \(no answer from its metadata service\): listed as external\n/);
    assert.match((await user.plumb(['droplets'])).stdout, new RegExp(`\\nold +-\\d+ +${other.address.replaceAll('.', '\\.')} +external `));
    const destroyed = await user.plumb(['destroy', 'old', '--yes']);
    assert.equal(destroyed.exitCode, EXIT.usage);
    assert.match(destroyed.stderr, /^plumb: old was adopted from outside DigitalOcean: plumb cannot destroy it\n.*plumb forget old/m);
    assert.deepEqual((await standinDroplet(other.id))?.tags, []);
  });

  test('the old unit is stopped and disabled, its nginx site switched off; plumb answers at the same path, and v2 deploys there', async () => {
    assert.equal(await on(other, ['sh', '-c', 'systemctl is-active plumber-sum.service; systemctl is-enabled plumber-sum.service; true']), 'inactive\ndisabled');
    assert.match(await on(other, ['ls', '/etc/nginx/sites-enabled', '/etc/nginx/plumb-disabled']), /^\/etc\/nginx\/plumb-disabled:\nsites-enabled-plumber\n\n\/etc\/nginx\/sites-enabled:$/);
    assert.equal((await httpGet(`http://${other.address}/sum/add?a=2&b=3`, 5000)).body, '[5]');
    const deployed = await user.plumb(['deploy', await apiDir(sumApi('v2')), '--name', 'sum']);
    assert.equal(deployed.exitCode, 0, deployed.stderr);
    assert.equal(await answerOf(`http://${other.address}/sum/version`, '["v2"]'), '["v2"]');
  });
});

/** `bytes` zero bytes, a MiB at a time. */
async function* zeros(bytes: number): AsyncIterable<Buffer> {
  for (let left = bytes; left > 0; left -= 1024 * 1024) yield Buffer.alloc(Math.min(left, 1024 * 1024));
}

/** The body at `url`, tried up to three times for `want` (5 s each): runs under a load average of 24-28 saw a single try go unanswered. */
async function answerOf(url: string, want: string): Promise<string> {
  let body = '';
  for (let i = 0; i < 3 && body !== want; i++) body = await httpGet(url, 5000).then((r) => r.body, (err: Error) => err.message);
  return body;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('gave up waiting');
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Whether a TCP connection to the port is accepted (ufw drops: no answer within the wait). */
function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 3000 });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(false));
  });
}
