// `node:test` for Hermes: the subset the suite uses — `test(name, fn)` with `t.after(fn)` — run one
// test at a time, in file order, after the file has registered them all. Ends with the line
// `react-native-jsi: N passed, M failed` (run-jsi-tests.sh reads it) and, if anything failed, an
// exception thrown from a timer, which makes ubrn's test-runner exit non-zero.
//
// ubrn's test-runner leaves its event loop when no timer is pending, even while a Rust call is
// still to resolve a promise; a timer per test (its timeout) keeps the loop alive meanwhile.
export interface TestContext {
  after(fn: () => unknown): void;
  readonly name: string;
}
type TestFn = (t: TestContext) => unknown;

const tests: { name: string; fn: TestFn }[] = [];
const TIMEOUT_MS = Number(globalThis.__testHost?.getenv('JSI_TEST_TIMEOUT_MS') ?? 60_000);
const FILTER = globalThis.__testHost?.getenv('JSI_TEST_NAME_PATTERN');
// ubrn's test-runner runs the script twice, each time in a fresh runtime: the tests run in the first.
const SECOND_RUN = (globalThis.__testHost?.run ?? 1) > 1;

export function test(name: string, fn: TestFn): void;
export function test(name: string, options: object, fn: TestFn): void;
export function test(name: string, a: object | TestFn, b?: TestFn): void {
  const fn = (typeof a === 'function' ? a : b) as TestFn;
  if (SECOND_RUN || (FILTER && !new RegExp(FILTER).test(name))) return;
  tests.push({ name, fn });
}
// After the file has registered its tests (a file with none still prints its summary line).
if (!SECOND_RUN) setTimeout(() => void runAll(), 0);
export const it = test;

function describe(e: unknown): string {
  if (e instanceof Error) {
    const head = `${e.name}: ${e.message}`;
    return e.stack ? (e.stack.startsWith(head) ? e.stack : `${head}\n${e.stack}`) : head;
  }
  try {
    return String(e);
  } catch {
    return Object.prototype.toString.call(e);
  }
}

async function runOne(name: string, fn: TestFn): Promise<string | undefined> {
  const cleanups: (() => unknown)[] = [];
  const t: TestContext = { name, after: (f) => void cleanups.push(f) };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let error: string | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(() => fn(t)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    error = describe(e);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
  // t.after hooks run last-registered first, like node:test; a timer keeps the loop alive.
  const keepAlive = setTimeout(() => {}, TIMEOUT_MS);
  for (const f of cleanups.reverse()) {
    try {
      await f();
    } catch (e) {
      error ??= `after hook: ${describe(e)}`;
    }
  }
  clearTimeout(keepAlive);
  return error;
}

async function runAll(): Promise<void> {
  let passed = 0;
  let failed = 0;
  const suite = globalThis.__JSI_SUITE__ ?? 'suite';
  for (const { name, fn } of tests) {
    const started = Date.now();
    const error = await runOne(name, fn);
    const ms = Date.now() - started;
    if (error === undefined) {
      passed++;
      print(`ok - ${name} (${ms} ms)`);
    } else {
      failed++;
      print(`not ok - ${name} (${ms} ms)\n  ${error.replace(/\n/g, '\n  ')}`);
    }
  }
  print(`react-native-jsi: ${passed} passed, ${failed} failed (${suite})`);
  if (failed > 0) {
    setTimeout(() => {
      throw new Error(`${suite}: ${failed} failed`);
    }, 0);
  }
}
