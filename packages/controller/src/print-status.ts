import type { DropletStatus } from './commands/status.js';

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, j) => Math.max(...rows.map((r) => r[j]?.length ?? 0))) ?? [];
  return rows.map((r) => r.map((c, j) => c.padEnd(widths[j] ?? 0)).join('  ').trimEnd()).join('\n');
}

function uptime(since: string | null): string {
  if (!since) return '-';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  return seconds < 120 ? `${seconds}s` : seconds < 7200 ? `${Math.round(seconds / 60)}m` : `${Math.round(seconds / 3600)}h`;
}

/** `plumb status` as text: per droplet, its health line and a table of its APIs. */
export function printStatus(droplets: DropletStatus[]): string {
  if (droplets.length === 0) return 'no droplets (create one with `plumb provision`)';
  return droplets
    .map((d) => {
      if (!d.status) return `${d.droplet}  ${d.address}  UNREACHABLE: ${d.error}`;
      const s = d.status;
      const head = `${d.droplet}  ${d.address}  agent ${s.hello.agentVersion}  load ${s.load.map((l) => l.toFixed(2)).join(' ')}  memory ${gib(s.memory.availableBytes)} free of ${gib(s.memory.totalBytes)}  disk ${gib(s.disk.freeBytes)} free  cloud-init ${s.hello.cloudInit.status}`;
      if (s.apis.length === 0) return `${head}\n  no APIs (deploy one with \`plumb deploy DIR --name NAME\`)`;
      const rows = [
        ['  API', 'STATE', 'URL', 'RELEASE', 'WORKERS', 'UPTIME', 'RESTARTS'],
        ...s.apis.map((a) => [
          `  ${a.name}`,
          a.state,
          `http://${d.address}${a.path}/${a.forwarded ? ' (and /)' : ''}`,
          a.release,
          String(a.workers.length),
          uptime(a.workers[0]?.since ?? null),
          String(a.workers.reduce((n, w) => n + w.restarts, 0)),
        ]),
      ];
      return `${head}\n${table(rows)}`;
    })
    .join('\n\n');
}
