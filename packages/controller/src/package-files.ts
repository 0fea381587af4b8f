/**
 * Where the files that ship with the controller are (its package.json, the built agent package, the
 * example API), as URLs. This module sits at the top of dist/, and so does every chunk of the CLI's
 * bundle (scripts/bundle-cli.mjs): `import.meta.url` here means a file in dist/ either way, so the
 * paths below hold whether the bundle or tsc's own files run. Keep it at the top of src/.
 */

/** A file of the controller's package (the directory that holds package.json and dist/). */
export const packageFile = (relative: string): URL => new URL(`../${relative}`, import.meta.url);

/** A file the build put in dist/. */
export const distFile = (relative: string): URL => new URL(relative, import.meta.url);
