#!/usr/bin/env node
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { PlumbError, type DrainReport, type PackagesReport } from '@plumb/shared';
import { RemoteError } from './agent/client.js';
import { defaultContext, type Context } from './context.js';
import { progressReporter } from './output/progress.js';
import { terminalSafe } from './output/terminal.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

interface OutputOptions {
  json?: boolean;
}

/**
 * Wires each command to its function in commands/ and prints what it returns: as text, or as
 * JSON with --json. Errors are printed in one place, at the bottom.
 */
function run<A extends unknown[], R>(work: (ctx: Context, ...args: A) => Promise<R>, print: (result: R) => string | Promise<string>) {
  return async (...args: A) => {
    const command = args[args.length - 1] as Command;
    const opts = command.opts<OutputOptions>();
    const reporter = progressReporter();
    try {
      const result = await work(defaultContext(reporter.progress), ...args);
      reporter.stop();
      process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${await print(result)}\n`);
    } catch (err) {
      reporter.stop();
      throw err;
    }
  };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** What became of the previous workers after a switch (deploy, rollback, scale, restart). */
function drainText(d: DrainReport): string[] {
  if (d.ports.length === 0) return [];
  const which = `the previous worker${d.ports.length === 1 ? '' : 's'} (port${d.ports.length === 1 ? '' : 's'} ${d.ports.join(', ')})`;
  if (!d.stopped) return [`  ${which} finish${d.ports.length === 1 ? 'es' : ''} the requests in flight, then stop${d.ports.length === 1 ? 's' : ''} (at most ${d.timeoutMs / 1000} s; \`plumb status\` shows them draining)`];
  if (d.cut > 0) return [`  ${which} stopped at the ${d.timeoutMs / 1000} s drain timeout with ${d.cut} connection${d.cut === 1 ? '' : 's'} still open (recorded in the events)`];
  return [`  ${which} stopped once their requests had finished`];
}

const waitOption = ['--wait', 'return only once the previous workers have finished their requests and stopped'] as const;

const program = new Command('plumb')
  .description('put R plumber APIs on DigitalOcean droplets and keep them running')
  .version(version)
  .showHelpAfterError();

program
  .command('provision')
  .description('create a droplet with R, plumber, nginx, a firewall and the plumb agent')
  .option('--name <name>', 'droplet name (default: plumb-XXXXXX)')
  .option('--region <slug>', 'DigitalOcean region', 'sfo3')
  .option('--size <slug>', 'droplet size', 's-1vcpu-1gb')
  .option('--image <slug>', 'image (Debian 13 is what plumb is built for)', 'debian-13-x64')
  .option('--ssh-key <fingerprint|name>', 'an SSH key of your DigitalOcean account, for root login')
  .option('--tag <tag>', 'an extra tag (repeatable)', (tag: string, tags: string[]) => [...tags, tag], [] as string[])
  .option('--example', 'also deploy the example API "hello", served at /')
  .option('--close-ssh', 'keep SSH (22) closed in the firewall: only 80, 443 and the agent port (plumb firewall open-ssh opens it)')
  .option('--agent-url <url>', 'a mirror the droplet downloads the agent package from (default: plumb sends it; PLUMB_AGENT_URL)')
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, o: { name?: string; region: string; size: string; image: string; sshKey?: string; tag: string[]; example?: boolean; closeSsh?: boolean; agentUrl?: string }) =>
        (await import('./commands/provision.js')).provision({ ...o, tags: o.tag }, ctx),
      (r) =>
        [
          `droplet ${r.droplet.name} (id ${r.droplet.id}) is ready at ${r.droplet.ipv4} in ${seconds(r.tookMs)}`,
          `  agent ${r.agentVersion}, enrolled; certificate pinned ${r.droplet.fingerprint?.slice(0, 16)}…`,
          `  swap: ${r.swap ? `${(r.swap.bytes / 1024 ** 3).toFixed(1)} GiB at ${r.swap.path}, ${r.swap.enabled ? 'enabled' : 'created, not enabled'}` : 'none'}`,
          r.example ? `  the example API answers at http://${r.droplet.ipv4}/ and ${r.example.url}` : `  nothing is deployed yet: plumb deploy DIR --name NAME`,
        ].join('\n'),
    ),
  );

const dropletsCommand = program.command('droplets').description('the droplets plumb knows; export and import them to share with another machine');

dropletsCommand
  .command('list', { isDefault: true })
  .description('the droplets plumb knows, with their state on DigitalOcean')
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx) => (await import('./commands/droplets.js')).droplets(ctx),
      (rows) =>
        rows.length === 0
          ? 'no droplets (create one with `plumb provision`)'
          : [
              ['NAME', 'ID', 'ADDRESS', 'STATUS', 'REGION', 'SIZE', 'AGENT'],
              ...rows.map((r) => [r.name, String(r.id), r.ipv4 || '-', r.status, r.region, r.size, r.foreign ? 'not this controller' : r.enrolled ? 'enrolled' : 'not enrolled']),
            ]
              .map((cols, _i, all) => cols.map((c, j) => c.padEnd(Math.max(...all.map((row) => row[j]?.length ?? 0)))).join('  ').trimEnd())
              .join('\n'),
    ),
  );

dropletsCommand
  .command('export [droplets...]')
  .description('print what another machine needs to manage these droplets (all when none named): addresses, ids, pins; nothing secret')
  .action(async (names: string[]) => {
    const { exportDroplets } = await import('./commands/droplets.js');
    process.stdout.write(`${JSON.stringify(await exportDroplets(names, defaultContext(() => {})), null, 2)}\n`);
  });

dropletsCommand
  .command('import <file>')
  .description('learn droplets from `plumb droplets export` output (a file, or - for stdin)')
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, file: string) => (await import('./commands/droplets.js')).importDroplets((file === '-' ? readFileSync(0, 'utf8') : await readFile(file, 'utf8')), ctx),
      (r) =>
        [
          ...r.imported.map((d) => `imported ${d.name} (${d.ipv4}), certificate pinned ${d.fingerprint?.slice(0, 16) ?? '?'}…`),
          ...r.unchanged.map((name) => `${name} was known already`),
          'the droplets answer this machine once they trust its key: send `plumb keys show` to their owner',
        ].join('\n'),
    ),
  );

program
  .command('destroy <droplet>')
  .description('delete a droplet (by name or id) and forget it')
  .option('--yes', 'do not ask for confirmation')
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, which: string, o: { yes?: boolean }) => {
        if (!o.yes) await confirmDestroy(which, ctx);
        return (await import('./commands/destroy.js')).destroy(which, ctx);
      },
      (r) => (r.outcome === 'deleted' ? `destroyed droplet ${r.name} (id ${r.id})` : `droplet ${r.name} (id ${r.id}) was already gone; forgotten`),
    ),
  );

async function confirmDestroy(which: string, ctx: Context): Promise<void> {
  const droplet = await ctx.droplets.find(which);
  if (!process.stdin.isTTY) throw new PlumbError('CONFIRMATION_NEEDED', `refusing to destroy ${droplet.name} without confirmation`, 'add --yes');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`Destroy droplet ${droplet.name} (id ${droplet.id}, ${droplet.ipv4}) and everything on it? Type its name to confirm: `);
  rl.close();
  if (answer.trim() !== droplet.name) throw new PlumbError('NOT_CONFIRMED', 'not destroyed: the name did not match');
}

const dropletOption = ['--droplet <name|id>', 'which droplet (needed when plumb knows several)'] as const;
const packageOptions = {
  strict: ['--strict-versions', "fail when a package's version differs from renv.lock's (or is below DESCRIPTION's minimum) instead of warning"],
  repo: ['--repo <url>', 'CRAN-like repository for packages Debian does not ship (default: CRAN; remembered for the API)'],
  binaryRepo: ['--binary-repo <url>', "CRAN-like repository of binaries built for the droplet's Debian, tried before source builds (remembered for the API)"],
} as const;
const collect = (value: string, all: string[]) => [...all, value];

program
  .command('deploy <dir>')
  .description('deploy (or update) the plumber API in DIR; prints its URL')
  .requiredOption('--name <name>', 'API name: lower-case letters, digits, "-", "_"')
  .option('--path <path>', 'URL path it is served under (default: /NAME)')
  .option('--forward', 'also serve it at / (as plumber::do_forward)')
  .option('--env <KEY=VALUE>', 'an environment variable for the API (repeatable; kept out of world-readable files)', collect, [] as string[])
  .option('--workers <n>', 'R processes behind nginx (default 1)', (v: string) => Number(v))
  .option('--health-path <path>', 'a path that must answer 2xx before traffic switches (default: any answer below 500 at /)')
  .option('--health-timeout <seconds>', 'how long the new release may take to answer (default 120)', (v: string) => Number(v))
  .option('--memory <size>', 'memory limit per R worker (systemd MemoryMax), e.g. 512M')
  .option('--keep <n>', 'releases kept on the droplet for rollback (default 5)', (v: string) => Number(v))
  .option('--drain-timeout <seconds>', 'how long the previous workers may finish requests in flight before they are stopped (default 30; kept for the API)', (v: string) => Number(v))
  .option(...waitOption)
  .option('--no-deps', 'do not look for or install the R packages the API uses')
  .option(...packageOptions.strict)
  .option(...packageOptions.repo)
  .option(...packageOptions.binaryRepo)
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (
        ctx,
        dir: string,
        o: { name: string; path?: string; forward?: boolean; env: string[]; workers?: number; healthPath?: string; healthTimeout?: number; memory?: string; keep?: number; drainTimeout?: number; wait?: boolean; deps: boolean; strictVersions?: boolean; repo?: string; binaryRepo?: string; droplet?: string },
      ) => {
        const { healthTimeout, drainTimeout, ...rest } = o;
        return (await import('./commands/deploy.js')).deploy(
          { dir, ...rest, ...(healthTimeout === undefined ? {} : { healthTimeoutSeconds: healthTimeout }), ...(drainTimeout === undefined ? {} : { drainTimeoutSeconds: drainTimeout }) },
          ctx,
        );
      },
      (r) =>
        [
          `deployed ${r.name} release ${r.release} to ${r.droplet} in ${seconds(r.tookMs)} (${r.files} files, ${(r.bundleBytes / 1024).toFixed(0)} KiB)`,
          `  ${r.url}`,
          ...(r.forward ? [`  also at ${r.url.replace(r.path + '/', '/')}`] : []),
          ...drainText(r.drain),
          ...(r.packages ? packagesLines(r.packages) : ['  R packages: not checked (--no-deps)']),
        ].join('\n'),
    ),
  );

/** A deploy's R packages in two lines or so: what it installed, what was there, warnings. */
function packagesLines(p: PackagesReport): string[] {
  const list = (xs: { name: string; version: string; source: string }[]) => xs.map((x) => `${x.name} ${x.version} (${x.source})`).join(', ');
  return [
    `  R packages: ${p.packages.length} used, ${p.installed.length === 0 ? 'nothing installed' : `installed ${list(p.installed)}`} in ${seconds(p.tookMs)} (R ${p.rVersion})`,
    ...p.warnings.map((w) => `  warning: ${w}`),
  ];
}

program
  .command('deps <dir>')
  .description('the R packages the API in DIR needs, and how the droplet would install each (nothing is deployed)')
  .option('--name <name>', 'the API it would be deployed as (its own library counts as installed)')
  .option('--local', 'only read DIR: do not ask a droplet')
  .option(...packageOptions.strict)
  .option(...packageOptions.repo)
  .option(...packageOptions.binaryRepo)
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, dir: string, o: { name?: string; local?: boolean; strictVersions?: boolean; repo?: string; binaryRepo?: string; droplet?: string }) => (await import('./commands/packages.js')).deps({ dir, ...o }, ctx),
      async (r) => (await import('./commands/packages.js')).depsText(r),
    ),
  );

program
  .command('packages <name>')
  .description("the R packages of an API's live release: version and where each came from")
  .option(...dropletOption)
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx, name: string, o: { droplet?: string }) => (await import('./commands/packages.js')).packages(name, o, ctx),
      async (r) => (await import('./commands/packages.js')).packagesText(r),
    ),
  );

program
  .command('repos')
  .description("the droplet's default CRAN-like repositories for R packages Debian does not ship; change them with the flags")
  .option('--repo <url>', 'source builds come from here (default: CRAN)')
  .option('--binary-repo <url>', "binaries built for the droplet's Debian, tried before source builds")
  .option('--reset', 'back to CRAN and no binary repository')
  .option(...dropletOption)
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx, o: { repo?: string; binaryRepo?: string; reset?: boolean; droplet?: string }) => (await import('./commands/packages.js')).repos(o, ctx),
      async (r) => (await import('./commands/packages.js')).reposText(r),
    ),
  );

program
  .command('remove <name>')
  .description('take an API off the droplet: its workers, unit, nginx location and files')
  .option('--keep-files', 'leave /var/plumber/NAME on the droplet')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, name: string, o: { keepFiles?: boolean; droplet?: string }) => (await import('./commands/api.js')).remove(name, o, ctx),
      (r) => `removed ${r.name}${r.wasForwarded ? ' (and the forward of / to it)' : ''}${r.keptFiles ? '; its files are kept' : ''}`,
    ),
  );

program
  .command('forward <name>')
  .description('serve API NAME at / too')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(run(async (ctx, name: string, o: { droplet?: string }) => (await import('./commands/api.js')).forward(name, o, ctx), (r) => `/ now serves ${r.forward}`));

program
  .command('unforward')
  .description('stop serving an API at /')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(run(async (ctx, o: { droplet?: string }) => (await import('./commands/api.js')).unforward(o, ctx), (r) => (r.was ? `/ no longer serves ${r.was}` : '/ was not forwarded')));

program
  .command('restart <name>')
  .description("new R processes for an API: started next to the old ones, which then drain (no request lost)")
  .option(...waitOption)
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, name: string, o: { droplet?: string; wait?: boolean }) => (await import('./commands/api.js')).restart(name, o, ctx),
      (r) => [`restarted ${r.name} (${r.workers} worker${r.workers === 1 ? '' : 's'}) in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n'),
    ),
  );

program
  .command('releases <name>')
  .description("an API's releases kept on the droplet (the last 5), oldest first")
  .option(...dropletOption)
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx, name: string, o: { droplet?: string }) => (await import('./commands/api.js')).releases(name, o, ctx),
      (r) => r.releases.map((x) => `${x.live ? '*' : ' '} ${x.id}  ${x.createdAt}  ${x.files} files`).join('\n') || 'no releases',
    ),
  );

program
  .command('rollback <name>')
  .description('switch back to the previous release (or --to ID), through the same health gate as a deploy')
  .option('--to <release>', 'a release id from `plumb releases NAME`')
  .option(...waitOption)
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, name: string, o: { to?: string; droplet?: string; wait?: boolean }) => (await import('./commands/api.js')).rollback(name, o, ctx),
      (r) => [`${r.name} is back on release ${r.to} (was ${r.from}) in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n'),
    ),
  );

program
  .command('scale <name> <workers>')
  .description('run N R workers for an API, without downtime')
  .option(...waitOption)
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, name: string, workers: string, o: { droplet?: string; wait?: boolean }) => (await import('./commands/api.js')).scale(name, Number(workers), o, ctx),
      (r) => [`${r.name}: ${r.from} -> ${r.to} workers in ${seconds(r.tookMs)}`, ...drainText(r.drain)].join('\n'),
    ),
  );

program
  .command('status')
  .description('droplets, their APIs and health, and the events since the last look')
  .argument('[droplet]', 'one droplet (name or id); all when omitted')
  .option('-w, --watch', 'print events as they happen (API down/up, restarts, deploys, ...) until Ctrl-C')
  .option('--json', 'print JSON (with --watch: one object per line)')
  .action((droplet: string | undefined, o: { watch?: boolean; json?: boolean }, command: Command) =>
    o.watch
      ? watchStatus(droplet, o.json ?? false)
      : run(
          async (ctx, _command: Command) => (await import('./commands/status.js')).status(droplet === undefined ? {} : { droplet }, ctx),
          async (r) => {
            // What could be asked is printed; a droplet that could not be is still a failure.
            if (r.some((d) => d.error !== undefined)) process.exitCode = 1;
            return (await import('./output/print-status.js')).printStatus(r);
          },
        )(command),
  );

program
  .command('logs <name>')
  .description("an API's log (journald), from the droplet")
  .option('-f, --follow', 'keep printing new lines until Ctrl-C')
  .option('-n, --lines <n>', 'how many recent lines', (v: string) => Number(v), 50)
  .option('--since <time>', 'only since then, e.g. "10 min ago"')
  .option(...dropletOption)
  .option('--json', 'one JSON object per line')
  .action(async (name: string, o: { follow?: boolean; lines: number; since?: string; droplet?: string; json?: boolean }) => {
    const { logs } = await import('./commands/logs.js');
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    const print = (e: { time: number; unit: string; message: string }) =>
      process.stdout.write(o.json ? `${JSON.stringify(e)}\n` : `${new Date(e.time / 1000).toISOString()} ${terminalSafe(e.unit.replace(/\.service$/, ''))}  ${terminalSafe(e.message)}\n`);
    await logs({ name, lines: o.lines, follow: o.follow ?? false, ...(o.since ? { since: o.since } : {}), ...(o.droplet ? { droplet: o.droplet } : {}) }, print, stop.signal, defaultContext(() => {}));
  });

program
  .command('https')
  .description("a Let's Encrypt certificate for the droplet; HTTPS for every API, HTTP redirected (renews by itself)")
  .option('-d, --domain <domain>', 'a domain pointing at the droplet (repeatable; the first names the certificate)', collect, [] as string[])
  .option('--email <email>', 'the ACME account address, where expiry notices go')
  .option('--agree-tos', "agree to the ACME server's terms of service (plumb shows where they are)")
  .option('--staging', "Let's Encrypt's staging server: untrusted test certificates, no production rate limits")
  .option('--force', 'renew the certificate even if it is still valid')
  .option('--skip-dns-check', 'ask for the certificate even if a domain does not seem to point at the droplet')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, o: { domain: string[]; email?: string; agreeTos?: boolean; staging?: boolean; force?: boolean; skipDnsCheck?: boolean; droplet?: string }) =>
        (await import('./commands/https.js')).https({ ...o, domains: o.domain }, ctx),
      (r) =>
        [
          `HTTPS is on at ${r.droplet} for ${r.certificate.domains.join(', ')}: certificate ${r.certificate.name} ${r.outcome === 'issued' ? 'issued' : 'still valid, kept'}, expires ${r.certificate.expiresAt.slice(0, 10)} (renewed by certbot.timer)`,
          ...r.urls.map((u) => `  ${u}`),
          `  HTTP redirects to HTTPS for these domains${r.opened443 ? '; port 443 opened in the firewall' : ''}`,
        ].join('\n'),
    ),
  );

program
  .command('upgrade')
  .description("put this plumb's agent version on the droplet(s); the APIs keep serving, a failing new agent is rolled back by the droplet")
  .option(...dropletOption)
  .option('--all', 'every droplet plumb knows, one after another')
  .option('--force', 'also replace a newer agent (a downgrade)')
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, o: { droplet?: string; all?: boolean; force?: boolean }) => (await import('./commands/upgrade.js')).upgrade(o, ctx),
      (rows) => {
        if (rows.some((r) => r.error)) process.exitCode = 1;
        return rows
          .map((r) =>
            r.error
              ? `${r.droplet}: ${r.error.message}${r.error.hint ? `\n  ${r.error.hint}` : ''}`
              : r.result.outcome === 'up-to-date'
                ? `${r.droplet}: agent ${r.result.to} already up to date`
                : `${r.droplet}: agent ${r.result.outcome} ${r.result.from} -> ${r.result.to} in ${seconds(r.result.tookMs)}; the APIs kept serving`,
          )
          .join('\n');
      },
    ),
  );

const keysCommand = program.command('keys').description('controller keys: let another machine (a teammate, CI) manage droplets, or shut one out');

keysCommand
  .command('show')
  .description("this machine's public key, to send to a droplet's owner (nothing secret)")
  .option('--json', 'print JSON')
  .action(
    run(
      async (ctx) => (await import('./commands/keys.js')).showKey(ctx),
      (r) => `${r.publicKey}\n  (key id ${r.kid}) the owner of a droplet adds it with: plumb keys add --droplet NAME --name YOURNAME ${r.publicKey}`,
    ),
  );

const keysPrinted = (verb: string) => async (rows: Awaited<ReturnType<(typeof import('./commands/keys.js'))['listKeys']>>) => {
  if (rows.some((r) => r.error)) process.exitCode = 1;
  return (await import('./commands/keys.js')).keysText(rows, verb);
};

keysCommand
  .command('list')
  .description('the controller keys a droplet trusts')
  .option(...dropletOption)
  .option('--all', 'every droplet plumb knows')
  .option('--json', 'print JSON')
  .action(run(async (ctx, o: { droplet?: string; all?: boolean }) => (await import('./commands/keys.js')).listKeys(o, ctx), keysPrinted('trusts')));

keysCommand
  .command('add <publicKey>')
  .description('trust another machine\'s key (from its `plumb keys show`) on the droplet(s)')
  .requiredOption('--name <name>', 'whose key it is, e.g. alice or ci')
  .option(...dropletOption)
  .option('--all', 'every droplet plumb knows')
  .option('--json', 'print the result as JSON')
  .action(run(async (ctx, publicKey: string, o: { name: string; droplet?: string; all?: boolean }) => (await import('./commands/keys.js')).addKey({ ...o, key: publicKey }, ctx), keysPrinted('key added; it trusts')));

keysCommand
  .command('revoke <key>')
  .description('stop trusting a key (by name or id): its tokens get 401, its open connections close')
  .option(...dropletOption)
  .option('--all', 'every droplet plumb knows')
  .option('--json', 'print the result as JSON')
  .action(run(async (ctx, key: string, o: { droplet?: string; all?: boolean }) => (await import('./commands/keys.js')).revokeKey({ ...o, key }, ctx), keysPrinted('key revoked; it trusts')));

/** `plumb status --watch`: a line per event on stdout (or JSON per line), news of the connection on stderr. */
async function watchStatus(droplet: string | undefined, json: boolean): Promise<void> {
  const { watch } = await import('./commands/watch.js');
  const { formatEvent } = await import('./output/print-status.js');
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  const greeted = new Set<string>();
  await watch(
    droplet === undefined ? {} : { droplet },
    (item) => {
      if (json) process.stdout.write(`${JSON.stringify(item)}\n`);
      else if ('event' in item) process.stdout.write(`${formatEvent(item.event, item.droplet)}\n`);
      else if ('notice' in item) process.stderr.write(`plumb: ${item.droplet}: ${item.notice}\n`);
      else if (!greeted.has(item.droplet)) {
        greeted.add(item.droplet);
        const h = item.heartbeat;
        process.stderr.write(`watching ${item.droplet}: load ${h.load.map((l) => l.toFixed(2)).join(' ')}, ${h.workers.length} R worker${h.workers.length === 1 ? '' : 's'}; Ctrl-C to stop\n`);
      }
    },
    stop.signal,
    defaultContext(() => {}),
  );
}

program
  .command('firewall')
  .description("open or close SSH (22) in the droplet's firewall; 80, 443 and the agent port stay open")
  .argument('<action>', 'open-ssh or close-ssh')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, action: string, o: { droplet?: string }) => (await import('./commands/firewall.js')).firewall({ action, ...o }, ctx),
      (r) => `${r.droplet}: SSH is ${r.ssh}${r.changed ? '' : ' (it was already)'}; the firewall lets in ${r.allowed.join(', ')}`,
    ),
  );

program
  .command('alerts')
  .description('make the droplet POST alerts (API down/up, repeated restarts, certificate expiry) to a webhook')
  .option('--webhook <url>', 'where to POST them (JSON); the droplet must reach it')
  .option('--off', 'stop sending alerts')
  .option(...dropletOption)
  .option('--json', 'print the result as JSON')
  .action(
    run(
      async (ctx, o: { webhook?: string; off?: boolean; droplet?: string }) => (await import('./commands/alerts.js')).alerts(o, ctx),
      (r) =>
        r.webhook === null
          ? `alerts from ${r.droplet} are off${r.previous ? ` (they went to ${r.previous})` : ''}`
          : [
              `alerts from ${r.droplet} go to ${r.webhook}`,
              r.test?.ok ? `  a test alert was delivered (${r.test.detail})` : `  the test alert was not delivered (${r.test?.detail ?? 'not sent'}): alerts stay on; check that the droplet can reach this URL`,
            ].join('\n'),
    ),
  );

program.parseAsync().catch((err: unknown) => {
  process.exitCode = 1;
  // With --json, a script reads the error from stdout as JSON too; the person still sees stderr.
  if (process.argv.includes('--json') && err instanceof PlumbError) {
    const step = err instanceof RemoteError ? { step: err.step, log: err.log } : {};
    process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint, ...step } }, null, 2)}\n`);
  }
  // Messages and log lines may come from the droplet: shown with their control characters escaped.
  if (err instanceof RemoteError && err.step) {
    process.stderr.write(`plumb: failed at "${terminalSafe(err.step)}": ${terminalSafe(err.message)}\n${err.hint ? `  ${terminalSafe(err.hint)}\n` : ''}`);
    if (err.log.length > 0) process.stderr.write(`  ${err.logTitle}:\n${err.log.map((l) => `    ${terminalSafe(l)}\n`).join('')}`);
  } else if (err instanceof PlumbError) {
    process.stderr.write(`plumb: ${terminalSafe(err.message)}\n${err.hint ? `  ${terminalSafe(err.hint)}\n` : ''}`);
  } else {
    process.stderr.write(`plumb: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
});
