import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import fc from 'fast-check';
import type WebSocket from 'ws';
import { Request, type RequestInput } from '@plumb/shared';
import type { AuthTarget } from './agent-auth.cases.js';
import { agentStillServes } from './agent-frames.cases.js';
import { agentSocket } from './agent-socket.js';

/**
 * Property-based fuzzing of every request the protocol knows (packages/shared Request), run
 * against a real agent: each request type's valid form, broken one field at a time (a hostile
 * value, a missing field), plus text that is not a request at all. Whatever arrives, the agent
 * answers that one message with a BAD_REQUEST error (by the request's id when it had a usable
 * one), keeps the socket and keeps serving, and nothing in its state changes.
 */

const sha = 'a'.repeat(64);
const url = 'https://cran.example.org';
const packages = { needs: [{ name: 'jsonlite', version: null, reason: 'plumber.R' }], repo: null, binaryRepo: null, strictVersions: false };

/** One valid request of each type: the fuzzer's starting points. A new type without one fails the coverage test below. */
export const VALID_REQUESTS: RequestInput[] = [
  { id: 1, type: 'facts' },
  { id: 1, type: 'cloud-init-wait', timeoutMs: 1000 },
  { id: 1, type: 'deploy', name: 'sum', path: '/sum', forward: false, env: { KEY: 'v' }, workers: 1, healthPath: null, memoryMax: null, keepReleases: 3, wait: false, packages, manifest: [{ path: 'plumber.R', sha256: sha, size: 1, executable: false }] },
  { id: 1, type: 'upload-end', bytes: 0 },
  { id: 1, type: 'remove', name: 'sum', keepFiles: false },
  { id: 1, type: 'forward', name: 'sum' },
  { id: 1, type: 'unforward' },
  { id: 1, type: 'restart', name: 'sum', wait: false },
  { id: 1, type: 'status' },
  { id: 1, type: 'logs', name: 'sum', lines: 10, since: null, follow: false },
  { id: 1, type: 'https', domains: ['api.example.org'], email: 'ops@example.org', agreeTos: true, server: url, force: false },
  { id: 1, type: 'releases', name: 'sum' },
  { id: 1, type: 'rollback', name: 'sum', to: null, wait: false },
  { id: 1, type: 'scale', name: 'sum', workers: 2, wait: false },
  { id: 1, type: 'watch', sinceEventId: null },
  { id: 1, type: 'alerts', webhook: null },
  { id: 1, type: 'firewall', ssh: 'open' },
  { id: 1, type: 'upgrade', version: '0.1.0', sha512: 'a'.repeat(128), force: false },
  { id: 1, type: 'keys' },
  { id: 1, type: 'keys-add', key: { kid: 'abcdefgh', name: 'ci', jwk: { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) } } },
  { id: 1, type: 'keys-revoke', key: 'ci' },
  { id: 1, type: 'packages-plan', name: null, packages },
  { id: 1, type: 'packages', name: 'sum' },
  { id: 1, type: 'repos', repo: url },
  { id: 1, type: 'secrets', name: 'sum' },
  { id: 1, type: 'secrets-set', name: 'sum', set: { KEY: 'v' }, unset: ['OLD'], wait: false },
  { id: 1, type: 'export', name: 'sum' },
  { id: 1, type: 'uninstall' },
  { id: 1, type: 'retire-legacy', names: ['sum'] },
  { id: 1, type: 'cancel' },
];

/** Values an attacker would try in any field: wrong types, paths out, control bytes, huge and odd numbers, prototype keys. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('../../etc/shadow', '/etc/plumb/agent.key', '/var/lib/plumb/state.json', 'sum/../other', '\u0000', '\u001b]0;owned\u0007', '__proto__', 'constructor', 'x'.repeat(70_000), ' ', ''),
  fc.constantFrom(-1, 0.5, 2 ** 53, -(2 ** 31), 1e308, Number.MAX_SAFE_INTEGER + 2),
  fc.constantFrom(null, true, false, [], {}, { __proto__: { polluted: true } }, [[[[[[[[[[]]]]]]]]]]),
);

type Mutant = { kind: 'message'; message: Record<string, unknown> } | { kind: 'text'; text: string };

/** A request of one type with one field set to a hostile value or left out; kept only when the schema refuses it. */
function brokenRequest(base: RequestInput): fc.Arbitrary<Mutant> {
  const fields = Object.keys(Request.options.find((o) => o.shape.type.value === base.type)!.shape);
  return fc
    .record({ field: fc.constantFrom(...fields), drop: fc.boolean(), value: hostileValue, id: fc.oneof(fc.nat(), hostileValue) })
    .map(({ field, drop, value, id }): Mutant => {
      const message: Record<string, unknown> = { ...base, id };
      if (drop) delete message[field];
      else message[field] = value;
      return { kind: 'message', message };
    })
    .filter((m) => m.kind === 'message' && !Request.safeParse(m.message).success);
}

/** Text frames that are no request: not JSON, JSON that is no object, objects of no known type. */
const notARequest: fc.Arbitrary<Mutant> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }).map((text): Mutant => ({ kind: 'text', text })),
  fc.jsonValue({ maxDepth: 4 }).map((v): Mutant => ({ kind: 'text', text: JSON.stringify(v) })),
  fc.constantFrom('null', '[]', '1', '"status"', '{"type":"status"}', '{"id":-1,"type":"status"}', '{"id":1.5,"type":"facts"}', '{"id":1,"type":"__proto__"}', '{"__proto__":{"type":"status"},"id":1}', '{', '\u0000').map((text): Mutant => ({ kind: 'text', text })),
).filter((m) => m.kind === 'text' && !parses(m.text));

function parses(text: string): boolean {
  try {
    return Request.safeParse(JSON.parse(text)).success;
  } catch {
    return false;
  }
}

/** The id the agent must answer under: the request's own when it is a usable one, else -1. */
function expectedId(m: Mutant): number {
  let id: unknown;
  try {
    id = m.kind === 'message' ? m.message.id : (JSON.parse(m.text) as { id?: unknown } | null)?.id;
  } catch {
    id = undefined;
  }
  // `+ 0`: -0 goes over JSON as 0, the id the agent answers under.
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id + 0 : -1;
}

interface Answer {
  type: string;
  id: number;
  error?: { code: string; message: string };
}

/** One authenticated socket; `ask` sends a text frame and resolves with the agent's next message. */
async function fuzzSocket(t: AuthTarget): Promise<{ ask: (text: string) => Promise<Answer>; ws: WebSocket }> {
  const { ws } = await agentSocket(t);
  ws.on('error', () => {});
  await once(ws, 'message'); // hello
  const ask = async (text: string): Promise<Answer> => {
    const answered = once(ws, 'message');
    const closed = once(ws, 'close').then(([code]) => {
      throw new Error(`the agent closed the socket (${String(code)}) instead of answering ${JSON.stringify(text.slice(0, 200))}`);
    });
    ws.send(text);
    const [data] = (await Promise.race([answered, closed])) as [Buffer];
    return JSON.parse(String(data)) as Answer;
  };
  return { ask, ws };
}

export interface FuzzOptions {
  /** Runs per request type (and for text that is no request). */
  runs: number;
  /** What must not change: a listing of the agent's state and files, taken before and after. */
  snapshot: () => Promise<string>;
  /** A lab droplet's agent (over the network), not a local one. */
  remote?: boolean;
}

export function agentFuzzCases(target: () => AuthTarget, options: FuzzOptions): void {
  // The coverage check needs no agent: run once, where the fuzzing is local.
  if (!options.remote) test('fuzz: every request type has a valid example the fuzzer starts from', () => {
    const types = Request.options.map((o) => o.shape.type.value).sort();
    assert.deepEqual(VALID_REQUESTS.map((r) => r.type).sort(), types);
    for (const r of VALID_REQUESTS) assert.ok(Request.safeParse(r).success, `${r.type}: ${JSON.stringify(Request.safeParse(r).error?.issues[0])}`);
  });

  test(`fuzz: ${VALID_REQUESTS.length} request types broken one field at a time, and text that is no request: each answered BAD_REQUEST on the same socket, nothing changed`, async () => {
    const t = target();
    const before = await options.snapshot();
    const { ask, ws } = await fuzzSocket(t);
    let tried = 0;
    const check = async (m: Mutant) => {
      tried++;
      const text = m.kind === 'text' ? m.text : JSON.stringify(m.message);
      const answer = await ask(text);
      assert.equal(answer.type, 'error', JSON.stringify(answer));
      assert.equal(answer.error?.code, 'BAD_REQUEST', `${text.slice(0, 300)} -> ${JSON.stringify(answer.error)}`);
      assert.equal(answer.id, expectedId(m), `answered under the request's id: ${text.slice(0, 300)}`);
      assert.doesNotMatch(answer.error?.message ?? '', /\n/);
      assert.ok((answer.error?.message.length ?? 0) < 2000, 'the error does not echo a huge input back');
    };
    for (const base of VALID_REQUESTS) {
      await fc.assert(fc.asyncProperty(brokenRequest(base), check), { numRuns: options.runs });
    }
    await fc.assert(fc.asyncProperty(notARequest, check), { numRuns: options.runs * 4 });
    ws.close();
    await agentStillServes(t);
    assert.equal(await options.snapshot(), before, `state unchanged after ${tried} hostile requests`);
  });
}
