// test/fleet.ts for Hermes: the same `Fleet` (the local test fleet, `target/debug/examples/test-fleet`,
// one process per test; its control API is test/fleet-control.ts, shared with the Node route),
// started through the test host extension (jsi/TestHost.cpp: posix_spawn with a stdin pipe; it
// exits when that closes, so a crashed runner never leaks it). Hermes has no `fetch`: the control
// calls go through a RobustClient of the SDK under test, pointed at the control server
// (network-only, no retries: one plain HTTP exchange per call).
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
import { FleetControl, fleetArgs, parseFleetLine, type FleetInfo, type FleetOptions } from '../../test/fleet-control';

export { waitUntil } from '../../test/fleet-control';

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

export class Fleet extends FleetControl {
  private readonly clients = new Map<string, RobustClient>();
  private closed = false;

  private constructor(private readonly pid: number, info: FleetInfo) {
    super(info);
  }

  static async start(n = 3, options: FleetOptions = {}): Promise<Fleet> {
    const { pid, line } = host().spawn([FLEET_BIN, ...fleetArgs(n, options)], 15_000);
    try {
      return new Fleet(pid, parseFleetLine(FLEET_BIN, line, n, options));
    } catch (e) {
      host().close(pid, 9);
      throw e;
    }
  }

  protected async send(method: 'GET' | 'POST', route: string, body: string | undefined, base: string): Promise<string> {
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

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.shutdown();
    this.clients.clear();
    if (this.closed) return;
    this.closed = true;
    host().close(this.pid, 0); // EOF on stdin: the fleet exits (SIGKILL after 5 s)
  }
}
