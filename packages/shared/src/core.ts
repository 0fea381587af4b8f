/**
 * The part of @plumb/shared that needs no zod: error classes and codes, exit codes, limits and
 * whole-number ranges. The CLI's flag definitions import only this, so `plumb --help` starts
 * without loading a schema; everything here is also exported by the package's main entry.
 */
export * from './errors.js';
export * from './limits.js';
export * from './ranges.js';
