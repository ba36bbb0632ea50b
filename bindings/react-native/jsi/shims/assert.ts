// `node:assert/strict` for Hermes: the functions the suite uses, with strict semantics
// (equal = strictEqual, deepEqual = deepStrictEqual).
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

function show(v: unknown): string {
  try {
    return JSON.stringify(v, (_, x: unknown) =>
      typeof x === 'bigint' ? `${x}n`
        : x instanceof Map ? { Map: [...x.entries()] }
        : x instanceof Set ? { Set: [...x] }
        : x instanceof ArrayBuffer ? { ArrayBuffer: [...new Uint8Array(x)] }
        : ArrayBuffer.isView(x) ? { bytes: [...new Uint8Array(x.buffer, x.byteOffset, x.byteLength)] }
        : x === undefined ? '<undefined>' : x) ?? String(v);
  } catch {
    return String(v);
  }
}

function failWith(message: string | Error | undefined, fallback: string): never {
  if (message instanceof Error) throw message;
  throw new AssertionError(message ? `${message}\n${fallback}` : fallback);
}

function isDeepEqual(a: unknown, b: unknown, seen = new Map<object, object>()): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (seen.get(a) === b) return true;
  seen.set(a, b);
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof ArrayBuffer) return isDeepEqual(new Uint8Array(a), new Uint8Array(b as ArrayBuffer), seen);
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array((b as ArrayBufferView).buffer, (b as ArrayBufferView).byteOffset, (b as ArrayBufferView).byteLength);
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  if (a instanceof Date) return a.getTime() === (b as Date).getTime();
  if (a instanceof Map) {
    const m = b as Map<unknown, unknown>;
    if (a.size !== m.size) return false;
    for (const [k, v] of a) if (!m.has(k) || !isDeepEqual(v, m.get(k), seen)) return false;
    return true;
  }
  if (a instanceof Set) {
    const s = b as Set<unknown>;
    return a.size === s.size && [...a].every((v) => s.has(v));
  }
  if (Array.isArray(a) && a.length !== (b as unknown[]).length) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k)
    && isDeepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], seen));
}

type Validator = RegExp | ((e: unknown) => boolean) | (new (...args: never[]) => unknown) | object;

function check(e: unknown, validator: Validator | undefined, message?: string | Error): void {
  if (validator === undefined) return;
  if (validator instanceof RegExp) {
    if (!validator.test(String(e))) failWith(message, `the error ${show(String(e))} does not match ${validator}`);
    return;
  }
  if (typeof validator === 'function') {
    const proto = (validator as { prototype?: object }).prototype;
    if (proto !== undefined && e instanceof (validator as new () => unknown)) return;
    if (proto !== undefined && (validator === Error || Error.prototype.isPrototypeOf(proto))) {
      failWith(message, `the error is not an instance of ${(validator as { name?: string }).name}: ${String(e)}`);
    }
    if ((validator as (e: unknown) => boolean)(e) !== true) failWith(message, `the validator did not return true for ${String(e)}`);
    return;
  }
  for (const [k, v] of Object.entries(validator)) {
    const actual = (e as Record<string, unknown>)[k];
    if (v instanceof RegExp ? !v.test(String(actual)) : !isDeepEqual(actual, v)) {
      failWith(message, `the error's ${k} is ${show(actual)}, expected ${show(v)}`);
    }
  }
}

function assert(value: unknown, message?: string | Error): asserts value {
  if (!value) failWith(message, `expected a truthy value, got ${show(value)}`);
}

namespace assert {
  export const ok: (value: unknown, message?: string | Error) => asserts value = assert;
  export function equal<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T {
    if (!Object.is(actual, expected)) failWith(message, `${show(actual)} !== ${show(expected)}`);
  }
  export const strictEqual = equal;
  export function notEqual(actual: unknown, expected: unknown, message?: string | Error): void {
    if (Object.is(actual, expected)) failWith(message, `expected something other than ${show(expected)}`);
  }
  export const notStrictEqual = notEqual;
  export function deepEqual<T>(actual: unknown, expected: T, message?: string | Error): asserts actual is T {
    if (!isDeepEqual(actual, expected)) failWith(message, `not deep-equal:\n  actual   ${show(actual)}\n  expected ${show(expected)}`);
  }
  export const deepStrictEqual = deepEqual;
  export function notDeepEqual(actual: unknown, expected: unknown, message?: string | Error): void {
    if (isDeepEqual(actual, expected)) failWith(message, `expected not deep-equal to ${show(expected)}`);
  }
  export function match(actual: string, re: RegExp, message?: string | Error): void {
    if (typeof actual !== 'string' || !re.test(actual)) failWith(message, `${show(actual)} does not match ${re}`);
  }
  export function fail(message?: string | Error): never {
    failWith(message, 'failed');
  }
  export function throws(fn: () => unknown, validator?: Validator | string, message?: string | Error): void {
    if (typeof validator === 'string') [message, validator] = [validator, undefined];
    try {
      fn();
    } catch (e) {
      check(e, validator, message);
      return;
    }
    failWith(message, 'missing expected exception');
  }
  export async function rejects(
    p: Promise<unknown> | (() => Promise<unknown>),
    validator?: Validator | string,
    message?: string | Error,
  ): Promise<void> {
    if (typeof validator === 'string') [message, validator] = [validator, undefined];
    try {
      await (typeof p === 'function' ? p() : p);
    } catch (e) {
      check(e, validator, message);
      return;
    }
    failWith(message, 'missing expected rejection');
  }
  export async function doesNotReject(p: Promise<unknown> | (() => Promise<unknown>)): Promise<void> {
    await (typeof p === 'function' ? p() : p);
  }
  export function doesNotThrow(fn: () => unknown): void {
    fn();
  }
}

export default assert;
export const { ok, equal, strictEqual, notEqual, deepEqual, deepStrictEqual, match, throws, rejects, fail } = assert;
