// Bundles the whole `plumb` command (dist/cli/main.js and everything it imports: the controller's
// modules, @plumb/shared and the npm packages) into dist/plumb-main.js and chunks beside it, which
// dist/plumb.js (tsc's, from src/plumb.ts: the package's bin) runs. Node 20 has no compile cache, and
// resolving and linking some 200 separate files cost every command about a third of a second before it
// did anything (docs/benchmarks.md). Each command's work is imported dynamically by cli/, so esbuild
// splits it into chunks of its own: `plumb --help` still reads the front alone, and a command reads the
// few chunks it needs. Every module is in the bundle once, so `instanceof` on plumb's error classes and
// module-level state hold as in tsc's build. Run by `npm run build` after `tsc -b`.
//
// The chunks are then made scripts (CommonJS in form: `require` for another chunk or a node built-in,
// `module.exports`), not ES modules: node 20 compiles an ES module from its source every time, while a
// script compiled by `vm.Script` can be given V8's code cache of an earlier run, which dist/plumb.js
// does. esbuild splits ES modules only, hence the two steps.
//
// Beside them, dist/plumb-bundle.json says which source files each output file holds (test/unit/cli-startup
// reads it to check what a command loads).
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, transform } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'packages/controller/dist');

// Chunks sit in dist/ beside plumb.js, as dist/package-files.js does in tsc's build: the paths it
// makes from `import.meta.url` hold in every output file.
for (const name of await readdir(dist)) {
  if (name === 'plumb-main.js' || name === 'plumb-bundle.json' || /^plumb-chunk-.*\.js$/.test(name)) await rm(path.join(dist, name));
}

const { metafile } = await build({
  entryPoints: { 'plumb-main': path.join(dist, 'cli/main.js') },
  outdir: dist,
  chunkNames: 'plumb-chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // ws's optional native speed-ups: it runs without them (try/require), and none is installed.
  external: ['bufferutil', 'utf-8-validate'],
  // Whitespace and syntax only: names stay, so a stack trace of an unexpected error still reads.
  minifyWhitespace: true,
  minifySyntax: true,
  metafile: true,
  // The metafile's paths are relative to this: the repository.
  absWorkingDir: root,
  logLevel: 'warning',
});

// A cycle of static imports between output files would, as CommonJS, give one of them the other's
// exports half made (an ES module's live bindings would not): refuse to build rather than ship that.
{
  const statics = Object.fromEntries(
    Object.entries(metafile.outputs).map(([output, { imports }]) => [output, imports.filter((i) => i.kind === 'import-statement' && !i.external).map((i) => i.path)]),
  );
  const done = new Set();
  const visit = (output, trail) => {
    if (trail.includes(output)) {
      const cycle = [...trail.slice(trail.indexOf(output)), output].map((o) => path.basename(o));
      console.error(`bundle-cli: the bundle's chunks import each other in a cycle (${cycle.join(' -> ')}): as CommonJS, one would see the other's exports half made. Break the cycle between the modules these chunks hold, or make one of the imports a dynamic import().`);
      process.exit(1);
    }
    if (done.has(output)) return;
    for (const next of statics[output] ?? []) visit(next, [...trail, output]);
    done.add(output);
  };
  for (const output of Object.keys(statics)) visit(output, []);
}

// Each output file as a script: its imports `require` calls (a dynamic one stays asynchronous:
// `Promise.resolve().then(() => require(...))`), its exports `module.exports`, and `import.meta.url`
// the file's URL, which dist/plumb.js passes in as `__plumbUrl`.
for (const output of Object.keys(metafile.outputs).filter((o) => o.endsWith('.js'))) {
  const file = path.resolve(root, output);
  const { code } = await transform(await readFile(file, 'utf8'), {
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    supported: { 'dynamic-import': false },
    define: { 'import.meta.url': '__plumbUrl' },
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: 'warning',
  });
  await writeFile(file, code);
}

/** Output file (relative to dist/) -> the source files in it, relative to the repository (node_modules/... for packages). */
const contents = Object.fromEntries(
  Object.entries(metafile.outputs).map(([output, { inputs }]) => [path.relative(dist, path.resolve(root, output)), Object.keys(inputs).sort()]),
);
// The bin that runs them, tsc's own file, is part of what ships.
contents['plumb.js'] = ['packages/controller/dist/plumb.js'];
await writeFile(path.join(dist, 'plumb-bundle.json'), `${JSON.stringify(contents, null, 1)}\n`);
