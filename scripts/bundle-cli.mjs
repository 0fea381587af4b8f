// Bundles the `plumb` command's front (dist/cli.js, dist/cli/, dist/output/, commander) into dist/plumb.js and
// a few chunks beside it, so `plumb --help` reads a couple of files instead of ~50 (timings in
// docs/benchmarks.md). Everything else of the controller (commands' work, the agent and
// DigitalOcean clients, local state) and every other package stay separate files, imported as
// before when a command runs: each module is then loaded once, so `instanceof` on plumb's error
// classes and module-level state hold as in the unbundled build. Run by `npm run build` after `tsc -b`.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'packages/controller/dist');
// Presentation only: cli/ and the pure text helpers of output/ (no state, no classes), so a copy of them
// in the bundle beside the separate files a command's work imports changes nothing.
const front = (file) =>
  [path.join(dist, 'cli.js'), path.join(dist, 'plumb-version.js')].includes(file) ||
  ['cli', 'output'].some((dir) => file.startsWith(path.join(dist, dir) + path.sep));

// Chunks sit in dist/ beside plumb.js, so a relative import written for dist/cli.js holds in every output file.
for (const name of await readdir(dist)) {
  if (name === 'plumb.js' || /^plumb-chunk-.*\.js$/.test(name)) await rm(path.join(dist, name));
}

/** Keeps the controller's modules outside the front as their own files, imported relative to dist/. */
const keepOutside = {
  name: 'keep-outside',
  setup(b) {
    b.onResolve({ filter: /^\./ }, ({ path: spec, resolveDir }) => {
      const file = path.resolve(resolveDir, spec);
      if (!file.startsWith(dist + path.sep) || front(file)) return undefined;
      return { path: `./${path.relative(dist, file).split(path.sep).join('/')}`, external: true };
    });
  },
};

/** Only commander goes in (it is what --help runs); @plumb/shared and the rest load from node_modules. */
const otherPackagesOutside = {
  name: 'other-packages-outside',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, ({ path: spec }) => (/^(commander|@commander-js\/extra-typings)$/.test(spec) ? undefined : { path: spec, external: true }));
  },
};

await build({
  entryPoints: { plumb: path.join(dist, 'cli.js') },
  outdir: dist,
  chunkNames: 'plumb-chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  plugins: [keepOutside, otherPackagesOutside],
  // commander is CommonJS and `require`s Node's builtins; an ES module has no `require`.
  banner: { js: "import { createRequire as __plumbCreateRequire } from 'node:module'; const require = __plumbCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
