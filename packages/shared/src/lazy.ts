import type * as z from 'zod';

/**
 * A schema built on first use: `lazySchema(() => z.object({ … }))` stands for the schema the
 * function returns, with its type, and builds it (once) when something first reads it: a parse, a
 * `.shape`, an `.extend()`, or another schema built around it. Building zod schemas was a fifth to
 * a third of a short command's CPU when every schema of the protocol was built at import, and a
 * command needs a few of them (docs/benchmarks.md, "Lazy schemas"); the agent's request schemas,
 * for one, are never built by the CLI.
 *
 * The stand-in is a Proxy that forwards reads (`get`, `in`, the prototype, so `instanceof` holds)
 * and writes to the built schema, with the built schema as the receiver: zod's members bind to it.
 * It lists no own keys: nothing in zod or plumb enumerates a schema's properties.
 */
export function lazySchema<T extends z.ZodType>(build: () => T): T {
  let schema: T | undefined;
  const built = (): T => (schema ??= build());
  return new Proxy({} as T, {
    get: (_, key) => Reflect.get(built(), key),
    has: (_, key) => Reflect.has(built(), key),
    set: (_, key, value) => Reflect.set(built(), key, value),
    getPrototypeOf: () => Reflect.getPrototypeOf(built()),
  });
}
