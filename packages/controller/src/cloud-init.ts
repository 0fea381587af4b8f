import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AgentConfig, BootstrapPackage, PlumbError, USER_DATA_MAX_BYTES, ValidationError } from '@plumb/shared';
import AjvModule, {
  type AnySchemaObject,
  type ErrorObject,
  type FuncKeywordDefinition,
  type SchemaValidateFunction,
  type ValidateFunction,
} from 'ajv-draft-04';
import { Document, isSeq, parse, YAMLParseError } from 'yaml';
import { distFile, packageFile } from './package-files.js';

export interface UserDataInput {
  /** Written to /etc/plumb-agent/config.json, root-only. */
  agentConfig: AgentConfig;
  /** The agent package the bootstrap accepts (its size and sha512), and a mirror to fetch it from if any. */
  agentPackage: BootstrapPackage;
  /** Size of the swap file; DEFAULT_SWAP_BYTES when absent. */
  swapBytes?: number;
  /** Whether ufw lets SSH (22) in; true when absent. */
  allowSsh?: boolean;
}

/** As plumber's do_provision made it. */
export const DEFAULT_SWAP_BYTES = 4 * 1024 ** 3;
/** mkswap wants a few pages; less than this is a mistake, not a choice. */
export const MIN_SWAP_BYTES = 1024 ** 2;
const SWAP_FILE = '/swapfile';
const AGENT_CONFIG_FILE = '/etc/plumb-agent/config.json';
/** Written last of all files: the bootstrap starts once it exists (bootcmd runs before write_files). */
const AGENT_PACKAGE_FILE = '/etc/plumb-agent/package.json';
const BOOTSTRAP_FILE = '/usr/local/sbin/plumb-bootstrap';
/** Root's: the agent makes each API's directory in it, owned by that API's own user. */
const API_ROOT = '/var/plumber';

const HEADER = '#cloud-config\n';
/** cloud-init reads user-data with PyYAML, which speaks YAML 1.1: there `on`, `0600` and `1:20` are not strings. */
const YAML_VERSION = '1.1';
/** How many schema errors a refusal names. */
const SCHEMA_ERRORS_SHOWN = 3;
const TEMPLATE = 'user-data.yaml';
const BOOTSTRAP = 'bootstrap.py';
const SCHEMA = 'schema-cloud-config-v1.json';

/**
 * A droplet's cloud-init user-data: the static template (cloud-init/user-data.yaml) plus the
 * bootstrap, the agent's config file, the package's facts and the commands, in the order that gets
 * the agent answering soonest: bootcmd starts the bootstrap in cloud-init's first networked stage
 * (it takes the package from the controller and starts the agent once `packages:` has brought
 * node), runcmd makes the swap file and installs R, plumber, nginx, ufw and certbot while the
 * controller enrols the agent, and last turns the firewall on. The result has passed
 * `validateUserData`.
 */
export function renderUserData(input: UserDataInput): string {
  const text = HEADER + toYaml(dropletBase(input));
  validateUserData(text);
  return text;
}

/** What a plumb droplet is, as cloud-config: user-data for provision, a shell script for adopt (adopt-script.ts). */
export interface DropletBase {
  bootcmd: string[][];
  write_files: WriteFile[];
  runcmd: Array<string | string[]>;
  [key: string]: unknown;
}

/** The checked input as the one cloud-config object both provision and adopt install from. */
export function dropletBase(input: UserDataInput): DropletBase {
  const agentConfig = AgentConfig.safeParse(input.agentConfig);
  if (!agentConfig.success) {
    const problems = agentConfig.error.issues.map((issue) => `${issue.path.join('.') || '(config)'}: ${issue.message}`);
    throw new ValidationError(`the agent config for user-data is invalid: ${problems.slice(0, SCHEMA_ERRORS_SHOWN).join('; ')}`);
  }
  const swapBytes = input.swapBytes ?? DEFAULT_SWAP_BYTES;
  if (!Number.isSafeInteger(swapBytes) || swapBytes < MIN_SWAP_BYTES) {
    throw new ValidationError(`swap size ${swapBytes} is not a whole number of bytes of at least ${MIN_SWAP_BYTES}`);
  }
  const agentPackage = BootstrapPackage.safeParse(input.agentPackage);
  if (!agentPackage.success) throw new ValidationError(`the agent package for user-data is invalid: ${agentPackage.error.issues[0]?.message ?? 'unknown'}`);
  const { template, bootstrap } = cloudInitFiles();
  return {
    ...template,
    bootcmd: [bootstrapCommand()],
    write_files: [
      ...template.write_files,
      { path: BOOTSTRAP_FILE, content: bootstrap, permissions: '0755' },
      {
        path: AGENT_CONFIG_FILE,
        content: `${JSON.stringify(agentConfig.data, null, 2)}\n`,
        owner: 'root:root',
        permissions: '0600',
      },
      { path: AGENT_PACKAGE_FILE, content: `${JSON.stringify(agentPackage.data)}\n`, permissions: '0644' },
    ],
    runcmd: [
      // cloud-init runs runcmd as one sh script and judges it by its last command: stop at the first failure.
      'set -ex',
      ['install', '-d', '-o', 'root', '-g', 'root', '-m', '0755', API_ROOT],
      ['/usr/local/sbin/plumb-swap', SWAP_FILE, String(swapBytes)],
      ['/usr/local/sbin/plumb-install-base'],
      ...firewall(input.allowSsh ?? true, agentConfig.data.port),
    ],
  };
}

/** bootcmd's way of running a command once per instance; adopt runs the command itself, once. */
export const ONCE_PER_INSTANCE = ['cloud-init-per', 'instance', 'plumb-bootstrap'];

/**
 * bootcmd runs at every boot, before write_files: once per instance, a transient unit that waits
 * for the last file write_files makes, then runs the bootstrap. `--no-block` and no default
 * dependencies: the unit must not wait for sysinit.target, which waits for cloud-init itself.
 */
function bootstrapCommand(): string[] {
  const wait = `until [ -e ${AGENT_PACKAGE_FILE} ]; do sleep 0.1; done; exec /usr/bin/python3 ${BOOTSTRAP_FILE}`;
  return [...ONCE_PER_INSTANCE, 'systemd-run', '--no-block', '--collect', '--unit=plumb-bootstrap', '--property=DefaultDependencies=no', '/bin/sh', '-c', wait];
}

/** Block style, but each command and the package list on one line, as people write cloud-config. */
function toYaml(config: object): string {
  const document = new Document(config, { version: YAML_VERSION });
  for (const key of ['runcmd', 'bootcmd', 'packages']) {
    const list = document.get(key);
    if (!isSeq(list)) continue;
    if (key === 'packages') list.flow = true;
    for (const item of list.items) if (isSeq(item)) item.flow = true;
  }
  return document.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** ufw: nothing in but SSH (unless turned off), HTTP and the agent; everything out. */
function firewall(allowSsh: boolean, agentPort: number): string[][] {
  const allowed = [...(allowSsh ? ['22/tcp'] : []), '80/tcp', `${agentPort}/tcp`];
  return [
    ['ufw', 'default', 'deny', 'incoming'],
    ['ufw', 'default', 'allow', 'outgoing'],
    ...allowed.map((rule) => ['ufw', 'allow', rule]),
    ['ufw', '--force', 'enable'],
  ];
}

/**
 * Refuses user-data that DigitalOcean or cloud-init would refuse or misread: over
 * USER_DATA_MAX_BYTES, without the `#cloud-config` header, not YAML, or not matching cloud-init's
 * own schema (including keys and forms it has deprecated, which make `cloud-init status` degraded).
 */
export function validateUserData(text: string): void {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > USER_DATA_MAX_BYTES) {
    throw new ValidationError(
      `user-data is ${bytes.toLocaleString('en')} bytes, over DigitalOcean's limit of ${USER_DATA_MAX_BYTES.toLocaleString('en')} bytes (64 KiB)`,
    );
  }
  if (!text.startsWith(HEADER)) throw new ValidationError('user-data does not start with "#cloud-config": cloud-init would not read it as cloud config');
  let document: unknown;
  try {
    document = parse(text, { version: YAML_VERSION, logLevel: 'error' });
  } catch (error) {
    // The message's first line names the problem and its place; a picture of the source follows.
    if (error instanceof YAMLParseError) throw new ValidationError(`user-data is not valid YAML: ${error.message.split('\n')[0]?.replace(/:$/, '')}`);
    throw error;
  }
  const validate = cloudInitFiles().validate;
  if (!validate(document)) {
    throw new ValidationError(`user-data does not match cloud-init's schema: ${describe(validate.errors ?? [])}`);
  }
}

/**
 * Deprecations first (inside a oneOf they are the reason the others fail), then the most specific
 * errors; "must match a schema in oneOf" says nothing its branches do not.
 */
function describe(errors: ErrorObject[]): string {
  const specific = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'anyOf');
  const rank = (e: ErrorObject) => (e.keyword === 'deprecated' || e.keyword === 'changed' ? -1000 : -e.instancePath.split('/').length);
  const lines = [...new Set((specific.length > 0 ? specific : errors).sort((a, b) => rank(a) - rank(b)).map(line))];
  const more = lines.length > SCHEMA_ERRORS_SHOWN ? ` (and ${lines.length - SCHEMA_ERRORS_SHOWN} more)` : '';
  return lines.slice(0, SCHEMA_ERRORS_SHOWN).join('; ') + more;
}

function line(error: ErrorObject): string {
  const where = error.instancePath || '(top level)';
  const key = error.keyword === 'additionalProperties' ? ` ("${String(error.params['additionalProperty'])}")` : '';
  const allowed = error.keyword === 'enum' ? `: ${JSON.stringify(error.params['allowedValues'])}` : '';
  return `${where}: ${error.message ?? error.keyword}${key}${allowed}`;
}

export interface WriteFile {
  path: string;
  content: string;
  owner?: string;
  permissions?: string;
}

interface Template {
  write_files: WriteFile[];
  [key: string]: unknown;
}

interface CloudInitFiles {
  template: Template;
  bootstrap: string;
  validate: ValidateFunction;
}

let loaded: CloudInitFiles | undefined;

/** The template and the compiled schema, read once. */
function cloudInitFiles(): CloudInitFiles {
  if (loaded) return loaded;
  const dir = cloudInitDir();
  const template: unknown = parse(readFileSync(new URL(TEMPLATE, dir), 'utf8'), { version: YAML_VERSION });
  if (!isTemplate(template)) throw new PlumbError('CLOUD_INIT_TEMPLATE_INVALID', `${fileURLToPath(new URL(TEMPLATE, dir))} has no write_files list`);
  const schema = JSON.parse(readFileSync(new URL(SCHEMA, dir), 'utf8')) as AnySchemaObject;
  const Ajv = AjvModule.default;
  const ajv = new Ajv({
    allErrors: true,
    // cloud-init's schema carries its own annotations (label, hidden, deprecated_version, ...) and a
    // draft 2020 `prefixItems`, which draft-04 validators, cloud-init's included, pass over.
    strict: false,
    // plumb's user-data uses none of the keys with a format (uri, hostname, date).
    validateFormats: false,
    keywords: [refused('deprecated'), refused('changed')],
  });
  loaded = { template, bootstrap: readFileSync(new URL(BOOTSTRAP, dir), 'utf8'), validate: ajv.compile(schema) };
  return loaded;
}

function isTemplate(value: unknown): value is Template {
  return typeof value === 'object' && value !== null && Array.isArray((value as { write_files?: unknown }).write_files);
}

/**
 * cloud-init logs what its schema marks `deprecated` (or `changed`) as a deprecation, which turns
 * `cloud-init status` into "degraded done": refuse it here instead.
 */
function refused(keyword: 'deprecated' | 'changed'): FuncKeywordDefinition {
  const validate: SchemaValidateFunction = (marked: boolean, _data: unknown, parent?: AnySchemaObject) => {
    if (!marked) return true;
    const version = String(parent?.[`${keyword}_version`] ?? '?');
    const description = String(parent?.[`${keyword}_description`] ?? '').replace(/\.$/, '');
    validate.errors = [{ keyword, message: `${keyword} in cloud-init ${version}${description ? `: ${description}` : ''}`, params: {} }];
    return false;
  };
  return { keyword, schemaType: 'boolean', errors: true, validate };
}

/**
 * The build copies cloud-init/ next to this module (dist/cloud-init/, which ships with the package);
 * in the repository the source copy two levels above dist/ serves when the build has not.
 */
export function cloudInitDir(): URL {
  const candidates = [distFile('cloud-init/'), packageFile('../../cloud-init/')];
  const found = candidates.find((dir) => existsSync(new URL(TEMPLATE, dir)));
  if (!found) {
    throw new PlumbError(
      'CLOUD_INIT_TEMPLATE_MISSING',
      `cloud-init's user-data template is in none of ${candidates.map((dir) => fileURLToPath(dir)).join(', ')}`,
      'reinstall plumb; in its repository, run npm run build',
    );
  }
  return found;
}
