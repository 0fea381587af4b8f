// Copies the cloud-init user-data template(s) and cloud-init's schema into the controller's dist/,
// which is what the published package ships; the controller reads them from there at run time.
import { cp, mkdir, readdir } from 'node:fs/promises';

const from = new URL('../cloud-init/', import.meta.url);
const to = new URL('../packages/controller/dist/cloud-init/', import.meta.url);
const shipped = (name) => name.endsWith('.yaml') || name === 'bootstrap.py' || name === 'adopt-check.sh' || name === 'schema-cloud-config-v1.json';

await mkdir(to, { recursive: true });
for (const name of (await readdir(from)).filter(shipped)) await cp(new URL(name, from), new URL(name, to));
