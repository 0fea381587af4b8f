#!/usr/bin/env node
import { isIPv4 } from 'node:net';
import { Command } from 'commander';
import { DomainName } from '@plumb/shared';
import { LabError } from './errors.js';
import { alive, run } from './host.js';
import { labDown } from './down.js';
import { nsenterArgs } from './droplets/droplet.js';
import { netFor } from './droplets/network.js';
import { containerInit, findNspawn } from './droplets/processes.js';
import { listRecords } from './droplets/records.js';
import { prefetchDropletPackages } from './droplets/prefetch.js';
import { ensureRootfs } from './droplets/rootfs.js';
import { listInstances } from './instances.js';
import { startLab } from './lab.js';

const program = new Command('plumb-lab').description('the plumb lab: a DigitalOcean on this machine, for tests and for trying plumb out');

program
  .command('prepare')
  .description('build the cached droplet root filesystem (debootstrap) and download what droplets install (once)')
  .action(async () => {
    console.log(`droplet image ready: ${await ensureRootfs((line) => console.log(line))}`);
    await prefetchDropletPackages((line) => console.log(line));
  });

program
  .command('up')
  .description('start the DigitalOcean stand-in and the ACME server; runs until Ctrl-C, then removes everything')
  .option('--port <port>', 'port of the DigitalOcean stand-in on 127.0.0.1', '4780')
  .option('--instance <name>', 'name for this lab on the host')
  .option('--no-acme', 'do not start the ACME server')
  .option('--no-package-server', 'no mirror of the agent package: droplets reach only what a real droplet reaches')
  .action(async (o: { port: string; instance?: string; acme: boolean; packageServer: boolean }) => {
    const lab = await startLab({ port: Number(o.port), acme: o.acme, packageServer: o.packageServer, log: (line) => console.log(line), ...(o.instance ? { instance: o.instance } : {}) });
    console.log(`lab ${lab.instance} is up. In another shell:`);
    console.log(`  export DIGITALOCEAN_ACCESS_TOKEN=${lab.token}`);
    console.log(`  export PLUMB_DIGITALOCEAN_API_URL=${lab.apiUrl}`);
    if (lab.agentUrl) console.log(`  a mirror of the agent package, for plumb provision --agent-url: ${lab.agentUrl}`);
    console.log(`  faults and request counts: ${lab.controlUrl}/lab/faults, ${lab.controlUrl}/lab/requests`);
    if (lab.acme) {
      console.log(`  ACME directory ${lab.acme.directoryUrl} (CA: ${lab.acme.listenerCaPath}); for plumb https:`);
      console.log(`  export PLUMB_ACME_SERVER=${lab.acme.directoryUrl} PLUMB_DNS_SERVER=${lab.acme.dnsServer} NODE_EXTRA_CA_CERTS=${lab.acme.listenerCaPath}`);
      console.log(`  and make a test domain point at a droplet: npm run lab -- resolve api.lab.test 10.213.1.2${o.instance ? ` --instance ${o.instance}` : ''}`);
    }
    console.log('Ctrl-C stops the lab and deletes its droplets.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    console.log('stopping the lab…');
    await lab.stop();
  });

program
  .command('status')
  .description('labs running on this host and their droplets')
  .option('--json', 'print JSON')
  .option('--show-token', "with --json: include each lab's API token (a credential for its stand-in; `lab up` prints it)")
  .action(async (o: { json?: boolean; showToken?: boolean }) => {
    // The token is left out unless asked for: status output ends up in logs and bug reports.
    const instances = (await listInstances()).map(({ token, ...i }) => ({ ...i, ...(o.showToken ? { token } : {}), running: alive(i.pid) }));
    const droplets = await Promise.all(
      (await listRecords()).map(async (r) => ({ ...r, address: netFor(r.index).address, running: (await findNspawn(r.machine)).length > 0 })),
    );
    if (o.json) return console.log(JSON.stringify({ instances, droplets }, null, 2));
    if (instances.length === 0 && droplets.length === 0) return console.log('no lab is running');
    for (const i of instances) console.log(`lab ${i.instance}  ${i.running ? 'up' : 'DEAD (run: npx @plumb/lab down)'}  api ${i.apiUrl}  pid ${i.pid}`);
    for (const d of droplets) console.log(`  droplet ${d.name}  id ${d.id}  ${d.address}  ${d.running ? 'running' : 'off'}  lab ${d.instance}`);
  });

program
  .command('down')
  .description('stop labs and remove everything they made (safe to run any time, twice)')
  .option('--instance <name>', 'only this lab')
  .action(async (o: { instance?: string }) => {
    const removed = await labDown(o.instance);
    console.log(removed.length === 0 ? 'nothing to remove' : removed.map((r) => `removed ${r}`).join('\n'));
  });

program
  .command('exec <droplet> <command...>')
  .description('run a command inside a droplet (by name or id), as root')
  .action(async (which: string, command: string[]) => {
    const record = (await listRecords()).find((r) => r.name === which || String(r.id) === which);
    if (!record) throw new LabError(`no lab droplet named ${which}`, 'see `npx @plumb/lab status`');
    const nspawn = (await findNspawn(record.machine))[0];
    const init = nspawn && (await containerInit(nspawn.pid));
    if (!init) throw new LabError(`droplet ${which} is not running`);
    process.stdout.write(await run('nsenter', [...nsenterArgs(init), ...command]));
    process.stdout.write('\n');
  });

program
  .command('resolve <domain> <address>')
  .description("make DOMAIN resolve to ADDRESS in the lab's DNS (what the ACME server and PLUMB_DNS_SERVER see)")
  .option('--instance <name>', 'the lab (needed when several run)')
  .action(async (domain: string, address: string, o: { instance?: string }) => {
    if (!DomainName.safeParse(domain).success || !isIPv4(address)) throw new LabError(`resolve wants a domain and an IPv4 address, got "${domain}" and "${address}"`);
    const labs = (await listInstances()).filter((i) => alive(i.pid) && i.acmeDnsManagementUrl && (o.instance === undefined || i.instance === o.instance));
    const lab = labs[0];
    if (!lab?.acmeDnsManagementUrl || labs.length > 1) throw new LabError(labs.length > 1 ? 'several labs run an ACME server' : 'no lab with an ACME server is running', labs.length > 1 ? 'say which with --instance' : 'start one with `npx @plumb/lab up`');
    // challtestsrv adds to a name's addresses: clear them first, so DOMAIN answers ADDRESS only.
    await fetch(`${lab.acmeDnsManagementUrl}/clear-a`, { method: 'POST', body: JSON.stringify({ host: domain }) });
    const response = await fetch(`${lab.acmeDnsManagementUrl}/add-a`, { method: 'POST', body: JSON.stringify({ host: domain, addresses: [address] }) });
    if (!response.ok) throw new LabError(`the lab's DNS refused ${domain} -> ${address}: HTTP ${response.status} ${await response.text()}`);
    console.log(`${domain} now resolves to ${address} in lab ${lab.instance} (${lab.acmeDnsServer})`);
  });

program.parseAsync().catch((err: unknown) => {
  if (err instanceof LabError) {
    console.error(`lab: ${err.message}${err.hint ? `\n  ${err.hint}` : ''}`);
  } else {
    console.error(err);
  }
  process.exitCode = 1;
});
