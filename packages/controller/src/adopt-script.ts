import { readFileSync } from 'node:fs';
import { ADOPT_METADATA_TIMEOUT_S, LEGACY_APIS_MAX, PlumbError } from '@plumb/shared';
import { cloudInitDir, ONCE_PER_INSTANCE, type DropletBase, type WriteFile } from './cloud-init.js';

/**
 * `plumb adopt`'s one SSH session: cloud-init/adopt-check.sh (the OS and what plumb would
 * overwrite, before anything changes), then the droplet base that provision's user-data carries
 * (cloud-init.ts dropletBase), run as cloud-init would run it, in the order that suits a host that
 * is already up: files and user, packages, runcmd (R, nginx, swap, firewall), and last the
 * bootstrap, which then waits for the controller's agent package on the agent's port exactly as on
 * a new droplet. What the script says for plumb goes to fd 3 (stdout), apt's noise to stderr.
 */

/** cloud-config keys the host keeps its own way: its locale is the owner's business. */
const HOST_KEEPS = new Set(['locale']);
const APT_CONF = '/etc/apt/apt.conf.d/90plumb';
const APT = ['apt-get', '-o', 'DPkg::Lock::Timeout=600'];
const CHECK = 'adopt-check.sh';

export interface AdoptScriptInput {
  base: DropletBase;
  agentPort: number;
  /** Take over even though the check found things plumb would overwrite (and say what changed). */
  force: boolean;
  /** Take over plumber's old do_deploy_api() APIs: the check lists them and sends their files. */
  import?: boolean;
  /** `--group` was given: a host that is not a DigitalOcean droplet is refused before anything changes. */
  group?: boolean;
}

/** POSIX sh single quotes: nothing inside is special. */
export const shellQuote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
const command = (words: string[]) => words.map(shellQuote).join(' ');

export function renderAdoptScript(input: AdoptScriptInput): string {
  const check = readFileSync(new URL(CHECK, cloudInitDir()), 'utf8');
  return [
    'set -eu',
    `PLUMB_AGENT_PORT=${input.agentPort}`,
    `PLUMB_FORCE=${input.force ? 1 : 0}`,
    `PLUMB_IMPORT=${input.import === true ? 1 : 0}`,
    `PLUMB_GROUP=${input.group === true ? 1 : 0}`,
    `PLUMB_METADATA_TIMEOUT_S=${ADOPT_METADATA_TIMEOUT_S}`,
    `PLUMB_LEGACY_APIS_MAX=${LEGACY_APIS_MAX}`,
    check,
    // From here on only plumb's own lines reach stdout.
    'exec 3>&1 1>&2',
    'export DEBIAN_FRONTEND=noninteractive',
    ...baseCommands(input.base),
    'echo "plumb-adopt done" >&3',
    '',
  ].join('\n');
}

/** The droplet base as shell commands; a key this does not know is refused, so the two paths cannot drift apart. */
export function baseCommands(base: DropletBase): string[] {
  const known = new Set(['apt', 'package_update', 'packages', 'users', 'write_files', 'runcmd', 'bootcmd', ...HOST_KEEPS]);
  const unknown = Object.keys(base).filter((k) => !known.has(k));
  if (unknown.length > 0) throw new PlumbError('CLOUD_INIT_TEMPLATE_INVALID', `adopt does not know how to apply the user-data key(s) ${unknown.join(', ')}`, 'teach packages/controller/src/adopt-script.ts the key');
  const apt = base['apt'] as { conf?: string } | undefined;
  const packages = (base['packages'] as string[] | undefined) ?? [];
  return [
    ...base.write_files.map(writeFile),
    ...(apt?.conf ? [writeFile({ path: APT_CONF, content: apt.conf, permissions: '0644' })] : []),
    ...users(base['users']),
    ...(base['package_update'] ? [command([...APT, 'update', '-q'])] : []),
    ...(packages.length > 0 ? [command([...APT, 'install', '-y', '-q', '--no-install-recommends', ...packages])] : []),
    ...base.runcmd.map((c) => (typeof c === 'string' ? c : command(c))),
    ...base.bootcmd.map((c) => command(startsWith(c, ONCE_PER_INSTANCE) ? c.slice(ONCE_PER_INSTANCE.length) : c)),
  ];
}

const startsWith = (words: string[], prefix: string[]) => prefix.every((w, i) => words[i] === w);

/** Written whole then renamed: a file the host had is replaced, never half-written. */
function writeFile(file: WriteFile): string {
  const temporary = `${file.path}.plumb-new`;
  return [
    command(['mkdir', '-p', file.path.replace(/\/[^/]*$/, '') || '/']),
    `printf %s ${shellQuote(Buffer.from(file.content).toString('base64'))} | base64 -d > ${shellQuote(temporary)}`,
    command(['chmod', file.permissions ?? '0644', temporary]),
    ...(file.owner ? [command(['chown', file.owner, temporary])] : []),
    command(['mv', '-f', temporary, file.path]),
  ].join('\n');
}

interface SystemUser {
  name: string;
  system?: boolean;
  homedir?: string;
  shell?: string;
}

/** cloud-init's `users:` for the system users plumb adds (`default` is the image's own user: not plumb's). */
function users(list: unknown): string[] {
  return ((list as Array<string | SystemUser> | undefined) ?? [])
    .filter((u): u is SystemUser => typeof u === 'object')
    .map((u) => `id -u ${shellQuote(u.name)} >/dev/null 2>&1 || ${command(['useradd', ...(u.system ? ['--system'] : []), ...(u.homedir ? ['--home-dir', u.homedir, '--no-create-home'] : []), ...(u.shell ? ['--shell', u.shell] : []), u.name])}`);
}
