#!/usr/bin/env node
import http from 'node:http';
import { createApiClient } from 'dots-wrapper';
import { sleep } from './host.js';
import { startLab } from './lab.js';

/**
 * The README's first command: the lab's whole story on this machine. Until `plumb provision`
 * exists it boots one droplet through the DigitalOcean stand-in whose cloud-init installs nginx,
 * and shows it answering. `--keep` leaves it up until Ctrl-C.
 */
const keep = process.argv.includes('--keep');
const started = Date.now();
const step = (text: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${text}`);

const lab = await startLab({ log: step });
const stop = async () => {
  step('tearing the lab down');
  await lab.stop();
};
process.once('SIGINT', () => void stop().then(() => process.exit(130)));

try {
  step(`DigitalOcean stand-in at ${lab.apiUrl}`);
  const api = createApiClient({ token: lab.token, endpoint: lab.apiUrl });
  const { droplet } = (
    await api.droplet.createDroplet({
      name: 'demo-1',
      region: 'nyc3',
      size: 's-1vcpu-1gb',
      image: 'debian-13-x64',
      user_data: '#cloud-config\nlocale: C.UTF-8\npackage_update: true\npackages: [nginx]\n',
    })
  ).data;
  step(`created droplet ${droplet.name} (id ${droplet.id}), status ${droplet.status}`);
  let address: string | undefined;
  while (!address) {
    const { droplet: now } = (await api.droplet.getDroplet({ droplet_id: droplet.id })).data;
    if (now.status === 'active') address = now.networks.v4.find((n) => n.type === 'public')?.ip_address;
    else await sleep(250);
  }
  step(`droplet is active at ${address}; waiting for cloud-init`);
  const status = await lab.droplet(droplet.id).exec(['cloud-init', 'status', '--wait'], { timeoutMs: 600_000 });
  step(`cloud-init ${status.replace(/^\.+/, '').trim()}`);
  const body = await new Promise<string>((resolve, reject) =>
    http.get(`http://${address}/`, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(`HTTP ${res.statusCode}: ${/<title>(.*)<\/title>/.exec(text)?.[1] ?? text.slice(0, 60)}`));
    }).on('error', reject),
  );
  step(`GET http://${address}/ -> ${body}`);
  if (keep) {
    step(`try it: curl http://${address}/   (Ctrl-C ends the lab)`);
    await new Promise(() => {});
  }
} finally {
  if (!keep) await stop();
}
