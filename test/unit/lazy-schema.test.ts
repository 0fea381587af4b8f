import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';
import * as z from 'zod';
import { ApiName, lazySchema, StatusResult, type ApiStatus } from '@plumb/shared';

/**
 * @plumb/shared's schemas are built on first use (lazySchema), not at import: a command builds
 * the few it parses with. Each must still be the schema it stands for, built once.
 */

/** The same rule twice: built as it is written, and through lazySchema, counting its builds. */
function pair() {
  const eager = z.object({ name: ApiName, workers: z.number().int().min(1), tags: z.array(z.string()).default([]) });
  let builds = 0;
  const lazy = lazySchema(() => {
    builds++;
    return z.object({ name: ApiName, workers: z.number().int().min(1), tags: z.array(z.string()).default([]) });
  });
  return { eager, lazy, builds: () => builds };
}

/** A lazy schema and, once built, the schema it stands for. */
function tracked() {
  let built: z.ZodObject<{ name: typeof ApiName }> | undefined;
  const lazy = lazySchema(() => (built = z.object({ name: ApiName })));
  const inner = () => {
    assert.ok(built, 'built');
    return built;
  };
  return { lazy, inner };
}

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
}

describe('lazySchema', () => {
  test('builds nothing until first read, then once, however it is used', () => {
    const { lazy, builds } = pair();
    assert.equal(builds(), 0);
    assert.deepEqual(lazy.parse({ name: 'sum', workers: 2 }), { name: 'sum', workers: 2, tags: [] });
    assert.equal(lazy.safeParse({ name: 'Sum', workers: 2 }).success, false);
    lazy.shape.name.parse('sum');
    lazy.extend({ more: z.boolean() }).parse({ name: 'sum', workers: 1, more: true });
    z.object({ inner: lazy.optional() }).parse({});
    assert.equal(builds(), 1);
  });

  test('accepts and refuses what the schema it stands for does, with the same issues', () => {
    const { eager, lazy } = pair();
    const inputs: unknown[] = [{ name: 'sum', workers: 1 }, { name: 'sum', workers: 1, tags: ['a'] }, { name: 'Sum', workers: 1 }, { name: 'sum', workers: 0 }, { name: 'sum' }, null, 'sum'];
    for (const input of inputs) {
      const [a, b] = [eager.safeParse(input), lazy.safeParse(input)];
      assert.deepEqual(b, a, JSON.stringify(input));
    }
  });

  test('is the schema to zod: instanceof, a discriminated union of lazy members, a lazy schema inside another', () => {
    const hello = lazySchema(() => z.object({ type: z.literal('hello'), name: ApiName }));
    const bye = lazySchema(() => z.object({ type: z.literal('bye') }));
    const message = lazySchema(() => z.discriminatedUnion('type', [hello, bye]));
    assert.ok(hello instanceof z.ZodObject);
    assert.ok(message instanceof z.ZodDiscriminatedUnion);
    assert.ok('shape' in hello);
    assert.deepEqual(message.parse({ type: 'hello', name: 'sum' }), { type: 'hello', name: 'sum' });
    assert.deepEqual(message.parse({ type: 'bye' }), { type: 'bye' });
    assert.equal(message.safeParse({ type: 'hello', name: '' }).success, false);
    assert.equal(message.safeParse({ type: 'later' }).success, false);
  });

  test('is the schema to JavaScript: Object.keys, a spread, descriptors and util.inspect show the built schema', () => {
    const { lazy, inner } = tracked();
    lazy.parse({ name: 'sum' });
    assert.deepEqual(Object.keys(lazy), Object.keys(inner()));
    assert.deepEqual(Reflect.ownKeys(lazy), Reflect.ownKeys(inner()));
    assert.deepEqual(Object.keys({ ...lazy }), Object.keys(inner()));
    assert.deepEqual(Object.getOwnPropertyDescriptor(lazy, '_zod'), Object.getOwnPropertyDescriptor(inner(), '_zod'));
    assert.equal(inspect(lazy, { depth: 0 }), inspect(inner(), { depth: 0 }));
    assert.match(inspect(lazy), /^ZodObject \{/);
    Object.defineProperty(lazy, 'note', { value: 1, configurable: true, enumerable: true });
    assert.equal(Object.getOwnPropertyDescriptor(inner(), 'note')?.value, 1);
    assert.ok(delete (lazy as { note?: number }).note);
    assert.equal('note' in inner(), false);
    assert.deepEqual(Object.keys(lazy), Object.keys(inner()));
  });

  test('Object.freeze, seal and preventExtensions reach the built schema, as on an eager one', () => {
    for (const lock of [Object.freeze, Object.seal, Object.preventExtensions]) {
      const eager = z.object({ name: ApiName });
      const { lazy, inner } = tracked();
      lock(eager);
      lock(lazy);
      assert.equal(Object.isExtensible(inner()), false, lock.name);
      for (const [what, look] of [['isFrozen', Object.isFrozen], ['isSealed', Object.isSealed], ['isExtensible', Object.isExtensible]] as const) {
        assert.equal(look(lazy), look(eager), `${lock.name}: ${what}`);
      }
      assert.deepEqual(Reflect.ownKeys(lazy), Reflect.ownKeys(inner()), lock.name);
      assert.ok(lazy instanceof z.ZodObject);
      assert.equal(inspect(lazy, { depth: 0 }), inspect(inner(), { depth: 0 }));
      // zod puts a method on the schema when it is first read: on a locked schema that throws, eager or lazy.
      assert.throws(() => lazy.parse({ name: 'sum' }), { message: errorOf(() => eager.parse({ name: 'sum' })) });
    }
  });

  test('locked after zod put `register` on the built schema: reading it still works, as on an eager one', () => {
    for (const lock of [Object.freeze, Object.seal, Object.preventExtensions]) {
      const eager = z.object({ name: ApiName });
      void eager.register;
      const { lazy, inner } = tracked();
      void lazy.shape;
      void inner().register;
      lock(eager);
      lock(lazy);
      assert.equal(typeof lazy.register, typeof eager.register, lock.name);
      assert.deepEqual(Reflect.ownKeys(lazy), Reflect.ownKeys(inner()), lock.name);
    }
  });

  test('a key the built schema loses after preventExtensions leaves the stand-in too', () => {
    const { lazy, inner } = tracked();
    lazy.parse({ name: 'sum' });
    Object.defineProperty(inner(), 'note', { value: 1, configurable: true, enumerable: true });
    Object.preventExtensions(lazy);
    assert.ok(Reflect.ownKeys(lazy).includes('note'));
    delete (inner() as { note?: number }).note;
    assert.deepEqual(Reflect.ownKeys(lazy), Reflect.ownKeys(inner()));
  });

  test('util.inspect shows the schema after its descriptors were looked up', () => {
    const { lazy, inner } = tracked();
    Object.getOwnPropertyDescriptor(lazy, Symbol.for('nodejs.util.inspect.custom'));
    assert.equal(inspect(lazy, { depth: 0 }), inspect(inner(), { depth: 0 }));
  });

  test("zod's registries: .meta() and .describe() in the build, .register() on the stand-in, z.toJSONSchema of a schema holding it", () => {
    const eager = z.object({ name: ApiName }).meta({ title: 'An API', id: 'EagerApi' });
    const lazy = lazySchema(() => z.object({ name: ApiName }).meta({ title: 'An API', id: 'LazyApi' }));
    assert.deepEqual(lazy.meta(), { title: 'An API', id: 'LazyApi' });
    assert.deepEqual(z.globalRegistry.get(lazy), { title: 'An API', id: 'LazyApi' });
    const json = (schema: z.ZodType) => JSON.stringify(z.toJSONSchema(z.object({ api: schema }))).replaceAll(/(Eager|Lazy)Api/g, 'Api');
    assert.equal(json(lazy), json(eager));
    assert.match(json(lazy), /"\$ref":"#\/\$defs\/Api"/);

    const described = lazySchema(() => z.string().describe('a name'));
    assert.equal(described.description, 'a name');
    assert.deepEqual(z.toJSONSchema(z.object({ n: described })), z.toJSONSchema(z.object({ n: z.string().describe('a name') })));

    const registry = z.registry<{ title: string }>();
    const { lazy: registered, inner } = tracked();
    assert.equal(registered.register(registry, { title: 'x' }), registered);
    assert.deepEqual(registry.get(registered), { title: 'x' });
    assert.deepEqual(registry.get(inner()), { title: 'x' });
    assert.deepEqual(registry.get(registered.optional().unwrap()), { title: 'x' }, 'a schema built from its methods holds the built schema');
  });

  test('keeps the inferred type: what a lazy export parses is typed as the protocol says', () => {
    // A compile-time check: with lazySchema typed loosely, `apis` would be unknown and this would not build.
    type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
    const same: Same<z.infer<typeof StatusResult>['apis'], ApiStatus[]> = true;
    assert.ok(same);
  });

  test('importing @plumb/shared builds no zod schema; the first parse builds only what it needs', () => {
    // zod calls globalThis.__zod_globalConfig.postProcessor with every schema it constructs (its
    // hook for AOT compilation): counted in a fresh process. It is zod's internal hook, so the
    // child first checks that it still counts a schema built on purpose.
    const script = `
      let built = 0;
      globalThis.__zod_globalConfig = { postProcessor: () => { built++; } };
      const z = await import('zod');
      z.string();
      if (built !== 1) { console.log('HOOK ' + built); process.exit(0); }
      const shared = await import('@plumb/shared');
      const atImport = built - 1;
      shared.ApiName.parse('sum');
      console.log(JSON.stringify({ atImport, forApiName: built - 1 - atImport }));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: import.meta.dirname });
    assert.doesNotMatch(out, /^HOOK/, "zod's postProcessor hook no longer counts the schemas it builds: count them another way");
    const { atImport, forApiName } = JSON.parse(out) as { atImport: number; forApiName: number };
    assert.equal(atImport, 0, `importing @plumb/shared built ${atImport} zod schemas: wrap the new one in lazySchema(() => …)`);
    // z.string() and its .regex(): two schemas, none of the protocol's others.
    assert.ok(forApiName > 0 && forApiName <= 3, `parsing an API name built ${forApiName} schemas`);
  });
});
