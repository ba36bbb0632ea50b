// test/fleet.ts for Hermes: the same `Fleet` (the local test fleet, `target/debug/examples/test-fleet`,
// one process per test), started through the test host extension (jsi/TestHost.cpp: posix_spawn
// with a stdin pipe; it exits when that closes, so a crashed runner never leaks it). Hermes has no
// `fetch`: the control API is called through a RobustClient of the SDK under test, pointed at the
// control server (network-only, no retries: one plain HTTP exchange per call).
import {
  ApiError,
  ApiRequest,
  BreakerConfig,
  CachePolicy,
  ClientConfig,
  HealthConfig,
  HttpMethod,
  RetryConfig,
  RobustClient,
  responseText,
  utf8Bytes,
} from './api';

const host = () => {
  if (!globalThis.__testHost) throw new Error('the test host extension is not loaded');
  return globalThis.__testHost;
};
export const REPO = host().getenv('ROBUST_API_REPO') ?? '.';
const FLEET_BIN = host().getenv('ROBUST_API_TEST_FLEET') ?? `${REPO}/target/debug/examples/test-fleet`;

/**
 * One plain HTTP client per control server (the SDK, with its resilience turned off); its health
 * probe asks the control server's own health route (`/health`, or `/ws` for the WebSocket one).
 */
function controlClient(base: string, healthPath: string): RobustClient {
  return new RobustClient(ClientConfig.create({
    backends: [base],
    retry: RetryConfig.create({ maxRetries: 0 }),
    breaker: BreakerConfig.create({ failureThreshold: 1_000_000 }),
    health: HealthConfig.create({ path: healthPath, intervalMs: 3_600_000 }),
  }));
}

export class Fleet {
  private readonly clients = new Map<string, RobustClient>();
  private closed = false;

  private constructor(
    private readonly pid: number,
    readonly urls: string[],
    readonly control: string,
    /** WebSocket echo servers (http:// base URLs; the client maps them to ws://), if any. */
    readonly wsUrls: string[],
    readonly wsControl: string | undefined,
  ) {}

  static async start(n = 3, options: { websockets?: boolean } = {}): Promise<Fleet> {
    const args = [FLEET_BIN, '--backends', String(n), ...(options.websockets ? ['--websockets'] : [])];
    const { pid, line } = host().spawn(args, 15_000);
    let info: { backends: string[]; control: string; ws_backends?: string[]; ws_control?: string };
    try {
      info = JSON.parse(line);
    } catch {
      host().close(pid, 9);
      throw new Error(`${FLEET_BIN} printed ${JSON.stringify(line)} instead of its URLs`);
    }
    if (info.backends.length !== n) throw new Error(`asked for ${n} backends, got ${line}`);
    if (options.websockets && info.ws_backends?.length !== n) throw new Error(`asked for ${n} WebSocket backends, got ${line}`);
    return new Fleet(pid, info.backends, info.control, info.ws_backends ?? [], info.ws_control);
  }

  private async call(method: 'GET' | 'POST', route: string, body?: string, base = this.control): Promise<string> {
    let client = this.clients.get(base);
    if (!client) this.clients.set(base, (client = controlClient(base, base === this.control ? '/health' : '/ws')));
    const request = ApiRequest.create({
      method: method === 'GET' ? HttpMethod.Get : HttpMethod.Post,
      path: route,
      body: body === undefined ? undefined : utf8Bytes(body),
      cache: CachePolicy.NetworkOnly,
    });
    try {
      return responseText(await client.request(request));
    } catch (e) {
      if (ApiError.Http.instanceOf(e)) throw new Error(`${method} ${route}: ${e.inner.status} ${String(e)}`);
      throw e;
    }
  }

  /** `ok`, `down`, `blackhole`, `status 503`, `retry-after 503 2`, `slow 200`, `truncate`, `reset`. */
  async fault(i: number, spec: string): Promise<void> {
    await this.call('POST', `/backends/${i}/fault`, spec);
  }

  /** Requests backend i received (for one path, compared without the query string). */
  async hits(i: number, forPath?: string): Promise<number> {
    const q = forPath ? `?path=${encodeURIComponent(forPath)}` : '';
    return Number((await this.call('GET', `/backends/${i}/hits${q}`)).trim());
  }

  async resetHits(i: number): Promise<void> {
    await this.call('POST', `/backends/${i}/reset-hits`);
  }

  /** Uploads backend i stored (the upload route's JSON objects), oldest first. */
  async uploads(i: number): Promise<unknown[]> {
    return JSON.parse(await this.call('GET', `/backends/${i}/uploads`)) as unknown[];
  }

  /** The WebSocket servers' control API (`/ws/{i}/...`), e.g. `ws('POST', '/ws/0/push', 'hi')`. */
  async ws(method: 'GET' | 'POST', route: string, body?: string): Promise<string> {
    if (!this.wsControl) throw new Error('this test fleet has no WebSocket servers');
    return this.call(method, route, body, this.wsControl);
  }

  indexOf(url: string): number {
    const i = this.urls.indexOf(url);
    if (i < 0) throw new Error(`${url} is not one of ${this.urls.join(', ')}`);
    return i;
  }

  /** SIGKILLs the whole fleet process (every backend at once), like a crashed server. */
  kill(): void {
    if (this.closed) return;
    this.closed = true;
    host().close(this.pid, 9);
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.shutdown();
    this.clients.clear();
    if (this.closed) return;
    this.closed = true;
    host().close(this.pid, 0); // EOF on stdin: the fleet exits (SIGKILL after 5 s)
  }
}

/** Polls `pred` until it returns something truthy (returned) or `timeoutMs` passes (the last value). */
export async function waitUntil<T>(pred: () => T | Promise<T>, timeoutMs = 2_000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
