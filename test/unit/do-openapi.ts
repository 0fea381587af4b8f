import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import YAML from 'yaml';

/**
 * DigitalOcean's published OpenAPI spec, used as the judge of the lab's stand-in: for a request
 * and the answer it got, find the operation by method and path template, take the response
 * documented for the status (or `default`) and check the body and headers against it.
 */

/** The part of the spec the stand-in implements, vendored by scripts/vendor-do-spec.mjs. */
export function specPath(): string {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  return path.join(repoRoot, 'test', 'spec', 'do-openapi.yaml');
}

type Json = Record<string, unknown>;

export interface Answer {
  method: string;
  /** The path as requested, query excluded: /v2/droplets/123. */
  path: string;
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined for an empty body. */
  body: unknown;
}

export interface Verdict {
  /** `GET /v2/droplets/{droplet_id}`, when the spec has the operation. */
  operation: string | undefined;
  /** The response key used: the status code or `default`. */
  documentedAs: string | undefined;
  problems: string[];
}

/**
 * Headers checked for presence although the spec does not mark them `required`: the rate-limit
 * trio, which DigitalOcean sends on every answer, and content-type, which the spec documents only
 * on the answers it says carry one (204s of DELETE /v2/droplets).
 */
const alwaysSent = new Set(['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'content-type']);

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

// ajv-formats is CommonJS; under NodeNext its default import is the module, whose `default` is the plugin.
const addFormats = addFormatsModule.default;

export class OpenApiContract {
  private readonly ajv: Ajv;
  private readonly headerAjv: Ajv;
  private readonly templates: { template: string; pattern: RegExp; literals: number }[];
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(private readonly spec: Json) {
    // The spec's patterns are ECMAScript ones without the u flag (the tag name's `[a-zA-Z0-9_\-\:]` escapes a colon).
    const options = { strict: false, allErrors: true, validateSchema: false, unicodeRegExp: false } as const;
    this.ajv = new Ajv(options);
    // Header values arrive as strings; their schemas say integer.
    this.headerAjv = new Ajv({ ...options, coerceTypes: true });
    for (const ajv of [this.ajv, this.headerAjv]) {
      addFormats(ajv);
      // OpenAPI's own numeric and binary formats: the type keyword already checks what matters.
      for (const format of ['int32', 'int64', 'float', 'double', 'byte', 'binary', 'password']) ajv.addFormat(format, true);
    }
    // OpenAPI 3.0 schemas are JSON Schema with `nullable` (which ajv knows) and annotations such as
    // `example` and `x-*` (which strict: false ignores); the spec becomes one schema, so internal
    // $refs resolve as JSON pointers into it.
    this.ajv.addSchema(spec, 'do');
    this.headerAjv.addSchema(spec, 'do');

    const paths = isObject(spec.paths) ? Object.keys(spec.paths) : [];
    this.templates = paths.map((template) => {
      const segments = template.split('/');
      const pattern = segments.map((s) => (/^\{[^}]+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))).join('/');
      return { template, pattern: new RegExp(`^${pattern}$`), literals: segments.filter((s) => !s.startsWith('{')).length };
    });
  }

  static load(file: string = specPath()): OpenApiContract {
    return new OpenApiContract(YAML.parse(readFileSync(file, 'utf8')) as Json);
  }

  /** The most specific template wins: /v2/droplets/actions over /v2/droplets/{droplet_id}. */
  findTemplate(method: string, requestPath: string): string | undefined {
    const paths = this.spec.paths as Json;
    const hasMethod = (template: string) => {
      const item = paths[template];
      return isObject(item) && method.toLowerCase() in item;
    };
    const matches = this.templates.filter(({ template, pattern }) => pattern.test(requestPath) && hasMethod(template));
    matches.sort((a, b) => b.literals - a.literals);
    return matches[0]?.template;
  }

  /** Follows `$ref`s from a JSON pointer, returning the object reached and its own pointer. */
  private deref(pointer: string): { node: unknown; pointer: string } {
    let current = pointer;
    for (let hops = 0; hops < 20; hops++) {
      const node = current
        .slice(2)
        .split('/')
        .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
        .reduce<unknown>((n, key) => (isObject(n) ? n[key] : undefined), this.spec);
      if (!isObject(node) || typeof node.$ref !== 'string') return { node, pointer: current };
      if (!node.$ref.startsWith('#/')) throw new Error(`external $ref ${node.$ref} at ${current}`);
      current = node.$ref;
    }
    throw new Error(`$ref chain too long at ${pointer}`);
  }

  private compiled(ajv: Ajv, schema: Json): ValidateFunction {
    const key = `${ajv === this.ajv ? 'body' : 'header'} ${JSON.stringify(schema)}`;
    let validate = this.validators.get(key);
    if (validate === undefined) {
      validate = ajv.compile(schema);
      this.validators.set(key, validate);
    }
    return validate;
  }

  /** Validates a value against the schema at `pointer` in the spec. */
  validate(pointer: string, value: unknown): ErrorObject[] {
    const validate = this.compiled(this.ajv, { $ref: `do${pointer}` });
    return validate(value) ? [] : [...(validate.errors ?? [])];
  }

  check(answer: Answer): Verdict {
    const template = this.findTemplate(answer.method, answer.path);
    const label = `${answer.method} ${answer.path} -> ${answer.status}`;
    if (template === undefined) {
      return { operation: undefined, documentedAs: undefined, problems: [`${label}: no operation in the spec`] };
    }
    const operation = `${answer.method.toUpperCase()} ${template}`;
    const responses = this.deref(`#/paths/${escapePointer(template)}/${answer.method.toLowerCase()}/responses`).node;
    const documentedAs = isObject(responses) ? [String(answer.status), 'default'].find((k) => k in responses) : undefined;
    if (documentedAs === undefined) {
      return { operation, documentedAs, problems: [`${label}: status not documented for ${operation}`] };
    }
    const { node: response, pointer } = this.deref(
      `#/paths/${escapePointer(template)}/${answer.method.toLowerCase()}/responses/${escapePointer(documentedAs)}`,
    );
    if (!isObject(response)) throw new Error(`response ${pointer} is not an object`);
    const problems = [...this.checkBody(response, pointer, answer), ...this.checkHeaders(response, pointer, answer)];
    const where = `${label} (${operation}, response ${documentedAs})`;
    return { operation, documentedAs, problems: problems.map((p) => `${where}: ${p}`) };
  }

  private checkBody(response: Json, pointer: string, answer: Answer): string[] {
    const content = isObject(response.content) ? response.content : {};
    const json = content['application/json'];
    if (!isObject(json) || json.schema === undefined) {
      return answer.body === undefined ? [] : ['a body where the spec documents none'];
    }
    if (answer.body === undefined) return ['no body where the spec documents one'];
    const errors = this.validate(`${pointer}/content/application~1json/schema`, answer.body);
    return errors.length === 0 ? [] : [`body does not match the schema: ${this.ajv.errorsText(errors, { separator: '; ' })}`];
  }

  private checkHeaders(response: Json, responsePointer: string, answer: Answer): string[] {
    const names = isObject(response.headers) ? Object.keys(response.headers) : [];
    const problems: string[] = [];
    for (const name of names) {
      const { node: header, pointer } = this.deref(`${responsePointer}/headers/${escapePointer(name)}`);
      const documented = isObject(header) ? header : {};
      const value = answer.headers.get(name);
      if (value === null) {
        if (documented.required === true || alwaysSent.has(name)) problems.push(`header ${name} missing`);
        continue;
      }
      if (documented.schema === undefined) continue;
      // Wrapped in an object so that ajv may coerce the header's string to the documented type.
      const validate = this.compiled(this.headerAjv, {
        type: 'object',
        properties: { value: { $ref: `do${pointer}/schema` } },
      });
      if (!validate({ value })) {
        problems.push(`header ${name}: ${JSON.stringify(value)} ${this.headerAjv.errorsText(validate.errors)}`);
      }
    }
    return problems;
  }
}
