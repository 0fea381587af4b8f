// Builds the agent as the npm package the controller installs on every droplet: one esbuild bundle
// (the droplet has Debian's nodejs but no npm, so nothing may be left to install), packed by
// `npm pack` into packages/controller/dist/agent-package/ with a manifest of its version and hashes.
// Run by `npm run build` after `tsc -b`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const agentDir = path.join(root, 'packages/agent');
const controllerDir = path.join(root, 'packages/controller');
const bundleFile = path.join(agentDir, 'bundle/plumb-agent.mjs');
const outDir = path.join(controllerDir, 'dist/agent-package');

const readJson = async (file) => JSON.parse(await readFile(file, 'utf8'));

function fail(message) {
  console.error(`pack-agent: ${message}`);
  process.exit(1);
}

const agent = await readJson(path.join(agentDir, 'package.json'));
const controller = await readJson(path.join(controllerDir, 'package.json'));
if (agent.version !== controller.version) {
  fail(
    `${agent.name} is version ${agent.version} but ${controller.name} is ${controller.version}: ` +
      'the controller installs exactly its own version of the agent, so set both package.json versions alike',
  );
}

// Minified: the droplet gets it over the controller's link and node parses it at every start
// (sizes before and after in docs/benchmarks.md).
const built = await build({
  entryPoints: [path.join(agentDir, 'dist/main.js')],
  outfile: bundleFile,
  bundle: true,
  minify: true,
  metafile: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // ws loads these native helpers only if present and works without them.
  external: ['bufferutil', 'utf-8-validate'],
  // CommonJS dependencies (ws) `require` Node's builtins; an ES module has no `require`.
  // Aliased so it cannot clash with the bundle's own `createRequire` import (src/version.ts).
  banner: {
    js: "import { createRequire as __plumbCreateRequire } from 'node:module'; const require = __plumbCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
// The droplet links /usr/local/bin/plumb-agent to this file; tar keeps the mode.
await chmod(bundleFile, 0o755);

await mkdir(outDir, { recursive: true });
for (const name of await readdir(outDir)) {
  if (name.endsWith('.tgz')) await rm(path.join(outDir, name));
}
// --ignore-scripts: nothing in the agent's package.json may change what is packed behind our back.
const packed = JSON.parse(
  execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', outDir], {
    cwd: agentDir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }),
);
const [result] = packed;
if (packed.length !== 1 || !result?.filename) fail(`npm pack printed no single result: ${JSON.stringify(packed)}`);
// npm names a scoped package's tarball scope-name-version.tgz (no directory).
const file = path.basename(result.filename);
const tarball = await readFile(path.join(outDir, file));
const digest = createHash('sha512').update(tarball).digest();
const integrity = `sha512-${digest.toString('base64')}`;
if (integrity !== result.integrity) fail(`npm pack reported integrity ${result.integrity}, the file has ${integrity}`);
const leaked = result.files.map((f) => f.path).filter((p) => p.startsWith('node_modules/') || p.includes('/node_modules/'));
if (leaked.length > 0) fail(`the agent package would ship node_modules: ${leaked.join(', ')}`);

const manifest = {
  name: agent.name,
  version: agent.version,
  file,
  integrity,
  sha512: digest.toString('hex'),
};
await writeFile(path.join(outDir, 'agent-package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
const bundleBytes = Object.values(built.metafile.outputs)[0]?.bytes ?? 0;
console.log(`pack-agent: ${file} (${tarball.length} bytes, bundle ${bundleBytes} bytes, ${integrity.slice(0, 24)}…)`);
// One `import { z } from 'zod'` anywhere the agent imports pulls zod's 40-odd locales back in (English, the default, stays) (about
// 260 KB, a third of the bundle): every module must say `import * as z from 'zod'`.
const locales = Object.keys(Object.values(built.metafile.outputs)[0]?.inputs ?? {}).filter((input) => /zod\/.*locales\//.test(input) && !input.endsWith('/en.js'));
if (locales.length > 0) {
  console.error(`pack-agent: zod's locales are in the agent bundle (${locales.length} files): a module imports { z } from 'zod'; write import * as z from 'zod'`);
  process.exit(1);
}
if (process.argv.includes('--sizes')) {
  // Bytes each package contributes to the bundle, largest first: what to look at to make it smaller.
  const byPackage = new Map();
  for (const [input, { bytesInOutput }] of Object.entries(Object.values(built.metafile.outputs)[0]?.inputs ?? {})) {
    const key = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1] ?? (input.includes('packages/shared') ? '@plumb/shared' : '@plumb/agent');
    byPackage.set(key, (byPackage.get(key) ?? 0) + bytesInOutput);
  }
  for (const [name, bytes] of [...byPackage].sort((a, b) => b[1] - a[1])) console.log(`  ${String(bytes).padStart(8)}  ${name}`);
}
