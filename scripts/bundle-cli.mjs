// Bundles the whole `plumb` command (dist/cli.js and everything it imports: the controller's modules,
// @plumb/shared and the npm packages) into dist/plumb.js and chunks beside it. Node 20 has no compile
// cache, and resolving and linking some 200 separate files cost every command about a third of a second
// before it did anything (docs/benchmarks.md). Each command's work is imported dynamically by cli/, so
// esbuild splits it into chunks of its own: `plumb --help` still reads the front alone, and a command
// reads the few chunks it needs. Every module is in the bundle once, so `instanceof` on plumb's error
// classes and module-level state hold as in tsc's build. Run by `npm run build` after `tsc -b`.
//
// Beside them, dist/plumb-bundle.json says which source files each output file holds (test/unit/cli-startup
// reads it to check what a command loads).
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'packages/controller/dist');

// Chunks sit in dist/ beside plumb.js, as dist/package-files.js does in tsc's build: the paths it
// makes from `import.meta.url` hold in every output file.
for (const name of await readdir(dist)) {
  if (name === 'plumb.js' || name === 'plumb-bundle.json' || /^plumb-chunk-.*\.js$/.test(name)) await rm(path.join(dist, name));
}

const { metafile } = await build({
  entryPoints: { plumb: path.join(dist, 'cli.js') },
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
  // commander and others are CommonJS and `require` Node's builtins; an ES module has no `require`.
  banner: { js: "import { createRequire as __plumbCreateRequire } from 'node:module'; const require = __plumbCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

/** Output file (relative to dist/) -> the source files in it, relative to the repository (node_modules/... for packages). */
const contents = Object.fromEntries(
  Object.entries(metafile.outputs).map(([output, { inputs }]) => [path.relative(dist, path.resolve(root, output)), Object.keys(inputs).sort()]),
);
await writeFile(path.join(dist, 'plumb-bundle.json'), `${JSON.stringify(contents, null, 1)}\n`);
