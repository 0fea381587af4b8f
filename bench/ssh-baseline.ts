import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';

/**
 * The old way, for comparison: plumberDeploy's `do_deploy_api()` replayed operation by operation
 * with OpenSSH over one connection (ControlMaster), as that package did it through analogsea:
 * make a temporary directory, upload the API, move it into place, upload the unit, reload
 * systemd, start (then its fixed `sleep 1`), enable, status, upload the nginx location, test and
 * reload nginx. Its files live beside plumb's (/var/plumber-ssh, a unit `plumber-ssh-NAME`, an
 * nginx server on BASELINE_PORT) so the two do not touch each other. The seed's `systemctl start`
 * does nothing to a running unit (a redeploy kept the old code); this replay restarts, so the new
 * code does serve.
 */
export const BASELINE_PORT = 8082;
const API_PORT = 8500;
/** The seed's fixed waits, reported apart from the work. */
export const SEED_SLEEP_MS = 1000;

export interface SshDeploy {
  /** From the first ssh to the last operation's end (closing the connection not counted). */
  totalMs: number;
  /** Of which fixed sleeps. */
  sleepMs: number;
  /** Each operation's time. */
  operations: Array<{ what: string; ms: number }>;
}

export interface SshBaseline {
  deploy(dir: string, target: { host: string; port: number }): Promise<SshDeploy>;
  url: string;
  /** The replayed unit's last journal lines: why its API does not answer. */
  lastLines(): Promise<string>;
}

/** Lets the bench's key in as root, opens BASELINE_PORT in ufw: done once, not timed. */
export async function sshBaseline(onDroplet: (argv: string[], opts?: { input?: string }) => Promise<string>, address: string, name = 'sshapi'): Promise<SshBaseline> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'plumb-bench-ssh-'));
  const key = path.join(home, 'key');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const pub = await execa('cat', [`${key}.pub`]);
  await onDroplet(['sh', '-c', 'mkdir -p /root/.ssh && chmod 700 /root/.ssh && cat >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && systemctl enable --now ssh.service && ufw allow 8082/tcp >/dev/null && mkdir -p /var/plumber-ssh'], { input: `${pub.stdout}\n` });
  // "$$": systemd's way to write a "$" in ExecStart=. It knows no "\$" escape: it kept the
  // backslash (warning "Ignoring unknown escape sequences"), R refused `pr\$run` as a syntax
  // error, and the replayed API never answered: the bench's NaN.
  const unit = `[Unit]\nDescription=plumber API ${name} (plumberDeploy replay)\n\n[Service]\nExecStart=/usr/bin/Rscript -e "pr <- plumber::plumb(dir='/var/plumber-ssh/${name}'); pr$$run(host='127.0.0.1', port=${API_PORT}, docs=FALSE)"\nRestart=on-failure\nWorkingDirectory=/var/plumber-ssh/${name}\n\n[Install]\nWantedBy=multi-user.target\n`;
  const nginx = `server {\n  listen ${BASELINE_PORT};\n  location /${name}/ {\n    proxy_pass http://127.0.0.1:${API_PORT}/;\n  }\n}\n`;
  await writeFile(path.join(home, 'unit'), unit);
  await writeFile(path.join(home, 'nginx.conf'), nginx);
  const control = path.join(home, 'control');

  return {
    url: `http://${address}:${BASELINE_PORT}/${name}`,
    lastLines: () => onDroplet(['journalctl', '-u', `plumber-ssh-${name}`, '-n', '8', '-o', 'cat', '--no-pager']),
    async deploy(dir, target) {
      const opts = ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', '-o', `ControlPath=${control}`];
      const ssh = (command: string) => execa('ssh', [...opts, '-p', String(target.port), `root@${target.host}`, command]);
      const scp = (args: string[]) => execa('scp', [...opts, '-P', String(target.port), ...args]);
      const remote = (p: string) => `root@${target.host}:${p}`;
      const tmp = `/tmp/plumb-bench-${Date.now()}`;
      const operations: SshDeploy['operations'] = [];
      const step = async (what: string, work: () => Promise<unknown>) => {
        const started = performance.now();
        await work();
        operations.push({ what, ms: performance.now() - started });
      };
      await step('connect (ControlMaster)', () => execa('ssh', [...opts, '-p', String(target.port), '-M', '-N', '-f', '-o', 'ControlPersist=60', `root@${target.host}`]));
      try {
        await step('mkdir the temporary directory', () => ssh(`mkdir -p ${tmp}`));
        await step('upload the API (scp -r)', () => scp(['-r', dir, remote(tmp)]));
        await step('move it into /var/plumber-ssh', () => ssh(`rm -rf /var/plumber-ssh/${name} && mv ${tmp}/${path.basename(dir)} /var/plumber-ssh/${name}`));
        await step('upload the unit', () => scp([path.join(home, 'unit'), remote(`/etc/systemd/system/plumber-ssh-${name}.service`)]));
        await step('systemctl daemon-reload', () => ssh('systemctl daemon-reload'));
        await step('systemctl restart && sleep 1', () => ssh(`systemctl restart plumber-ssh-${name} && sleep 1`));
        await step('systemctl enable', () => ssh(`systemctl enable plumber-ssh-${name}`));
        await step('systemctl status', () => ssh(`systemctl status --no-pager plumber-ssh-${name}`));
        await step('upload the nginx location', () => scp([path.join(home, 'nginx.conf'), remote(`/etc/nginx/conf.d/zz-plumber-ssh-${name}.conf`)]));
        await step('nginx -t && systemctl reload nginx', () => ssh('nginx -t -q && systemctl reload nginx'));
      } finally {
        await execa('ssh', [...opts, '-p', String(target.port), '-O', 'exit', `root@${target.host}`], { reject: false });
      }
      return { totalMs: operations.reduce((n, o) => n + o.ms, 0), sleepMs: SEED_SLEEP_MS, operations };
    },
  };
}
