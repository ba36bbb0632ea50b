// The test fleet's control API, defined once for both routes: test/fleet.ts (Node, N-API: the
// fleet a child process, the control calls through fetch) and jsi/shims/fleet.ts (Hermes, JSI: the
// fleet spawned by the test host, the control calls through a RobustClient, since Hermes has no
// fetch) only start/stop the process and send one HTTP exchange (`send`). Imports nothing, so it
// bundles for Hermes as it is.

/** What `test-fleet` prints on its first line. */
export interface FleetInfo {
  backends: string[];
  control: string;
  ws_backends?: string[];
  ws_control?: string;
}

export interface FleetOptions {
  websockets?: boolean;
}

/** `test-fleet`'s arguments for `n` backends (and `n` WebSocket servers with `websockets`). */
export function fleetArgs(n: number, options: FleetOptions): string[] {
  return ['--backends', String(n), ...(options.websockets ? ['--websockets'] : [])];
}

/** Parses and checks `test-fleet`'s first line (throws naming `bin` if it is not what was asked). */
export function parseFleetLine(bin: string, line: string, n: number, options: FleetOptions): FleetInfo {
  let info: FleetInfo;
  try {
    info = JSON.parse(line) as FleetInfo;
  } catch {
    throw new Error(`${bin} printed ${JSON.stringify(line)} instead of its URLs`);
  }
  if (info.backends?.length !== n) throw new Error(`asked for ${n} backends, got ${line}`);
  if (options.websockets && info.ws_backends?.length !== n) throw new Error(`asked for ${n} WebSocket backends, got ${line}`);
  return info;
}

export abstract class FleetControl {
  readonly urls: string[];
  readonly control: string;
  /** WebSocket echo servers (http:// base URLs; the client maps them to ws://), if any. */
  readonly wsUrls: string[];
  readonly wsControl: string | undefined;

  protected constructor(info: FleetInfo) {
    this.urls = info.backends;
    this.control = info.control;
    this.wsUrls = info.ws_backends ?? [];
    this.wsControl = info.ws_control;
  }

  /** One request to a control server (`base`): the response text; throws on a non-2xx status. */
  protected abstract send(method: 'GET' | 'POST', route: string, body: string | undefined, base: string): Promise<string>;

  private call(method: 'GET' | 'POST', route: string, body?: string, base = this.control): Promise<string> {
    return this.send(method, route, body, base);
  }

  /** The token service's control API (`POST /auth/issue`, `/auth/expire`, `GET /auth/refreshes`, ...). */
  async auth(method: 'GET' | 'POST', action: string, body?: string): Promise<string> {
    return this.call(method, `/auth/${action}`, body);
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
