import * as z from 'zod';

/**
 * A schema built on first use: `lazySchema(() => z.object({ … }))` stands for the schema the
 * function returns, with its type, and builds it (once) when something first reads it: a parse, a
 * `.shape`, an `.extend()`, or another schema built around it. Building zod schemas was a fifth to
 * a third of a short command's CPU when every schema of the protocol was built at import, and a
 * command needs a few of them (docs/benchmarks.md, "Lazy schemas"); the agent's request schemas,
 * for one, are never built by the CLI.
 *
 * The stand-in is a Proxy whose every trap (but `apply` and `construct`: a schema is not a
 * function) answers for the built schema, with the built schema as the receiver: zod's members
 * bind to it. So `instanceof`, `Object.keys`, a spread, `util.inspect` and `Object.freeze` see the
 * built schema. The Proxy's invariants tie some answers to its target, an empty object: a property
 * reported non-configurable (zod's `_zod`) must be so on the target too, and once the schema is
 * not extensible the target must have its prototype and exactly its keys; such properties are
 * copied to the target as they are reported.
 *
 * zod's registries (`.meta()`, `.describe()`, `z.toJSONSchema`) are WeakMaps keyed by the schema
 * object, and a schema built around this one holds the stand-in, not the built schema. So the
 * stand-in is registered beside the built schema: at build, in the global registry, with what
 * the built schema has there; and by `.register(registry, meta)`, in that registry too. What its
 * methods make (`.optional()` …) holds the built schema: a `z.toJSONSchema` that meets both it and
 * the stand-in, with an `id` in their metadata, sees two schemas with one id, and zod refuses it
 * (nothing in plumb converts its schemas to JSON Schema).
 */
export function lazySchema<T extends z.ZodType>(build: () => T): T {
  const target = {} as T;
  // util.inspect looks at a Proxy's target, past the traps: it is told to show the schema. Not one
  // of the schema's keys, so it goes when the target takes the schema's keys (settle); the target
  // then has the schema's prototype and properties, and shows as it would.
  Reflect.defineProperty(target, INSPECT, { configurable: true, value: (depth: number, options: object, inspect: (value: unknown, options: object) => string) => inspect(built(), { ...options, depth }) });
  let schema: T | undefined;
  const built = (): T => {
    if (schema) return schema;
    schema = build();
    const meta = z.globalRegistry.has(schema) ? z.globalRegistry.get(schema) : undefined;
    if (meta) z.globalRegistry.add(proxy, meta);
    return schema;
  };
  const register = (registry: z.core.$ZodRegistry<never>, ...meta: [never]) => {
    registry.add(built(), ...meta);
    registry.add(proxy, ...meta);
    return proxy;
  };
  /** Puts the built schema's `key` on the target, as the invariants need it there. */
  const mirror = (key: string | symbol): PropertyDescriptor | undefined => {
    const found = Reflect.getOwnPropertyDescriptor(built(), key);
    // The inspect hook stays while the target is extensible (settle takes it away with the rest).
    if (!found && key === INSPECT && Reflect.isExtensible(target)) return found;
    if (!found) Reflect.deleteProperty(target, key);
    else if (!found.configurable || !Reflect.isExtensible(target)) Reflect.defineProperty(target, key, found);
    return found;
  };
  /** Once the built schema is not extensible (frozen, sealed), neither is the target, with the same prototype and keys. */
  const settle = () => {
    if (!Reflect.isExtensible(target) || Reflect.isExtensible(built())) return;
    Reflect.setPrototypeOf(target, Reflect.getPrototypeOf(built()));
    for (const key of Reflect.ownKeys(target)) Reflect.deleteProperty(target, key);
    for (const key of Reflect.ownKeys(built())) Reflect.defineProperty(target, key, Reflect.getOwnPropertyDescriptor(built(), key) ?? {});
    Reflect.preventExtensions(target);
  };
  const proxy: T = new Proxy(target, {
    // `register` is ours, unless the target holds the schema's own as fixed (frozen after zod put
    // its method there): the invariants then want that one.
    get: (_, key) => (key === 'register' && Reflect.getOwnPropertyDescriptor(target, key)?.configurable !== false ? register : Reflect.get(built(), key)),
    has: (_, key) => Reflect.has(built(), key),
    set: (_, key, value) => Reflect.set(built(), key, value),
    getPrototypeOf: () => {
      settle();
      return Reflect.getPrototypeOf(built());
    },
    setPrototypeOf: (_, prototype) => Reflect.setPrototypeOf(built(), prototype) && (settle(), true),
    ownKeys: () => {
      settle();
      // A key the schema lost after the target stopped taking new ones must go from the target too.
      if (!Reflect.isExtensible(target)) for (const key of Reflect.ownKeys(target)) mirror(key);
      return Reflect.ownKeys(built());
    },
    getOwnPropertyDescriptor: (_, key) => {
      settle();
      return mirror(key);
    },
    defineProperty: (_, key, descriptor) => Reflect.defineProperty(built(), key, descriptor) && (mirror(key), true),
    deleteProperty: (_, key) => Reflect.deleteProperty(built(), key) && (mirror(key), true),
    isExtensible: () => {
      settle();
      return Reflect.isExtensible(target);
    },
    preventExtensions: () => Reflect.preventExtensions(built()) && (settle(), true),
  });
  return proxy;
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');
