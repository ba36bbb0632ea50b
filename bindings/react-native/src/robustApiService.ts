// A drop-in for the app's old hand-written `robustApiService.ts`: the same five entry points —
// `executeRequest(url, options, { timeout, retries, useCircuitBreaker, fallbackBackends })`,
// `getServiceStatus()`, `clearCache()`, `resetCircuitBreakers()`, `uploadVideoFile(uri, title,
// onProgress?)` — mapped onto one RobustClient, so migrating a screen is an import change plus one
// `configureRobustApiService({ backends })` at start-up. No SDK behaviour lives here (failover,
// breakers, retries, the cache and the queue are all in Rust): only the translation of the old
// call shapes. What maps exactly and what differs: README.md, "Migrating from robustApiService".
import {
  ApiRequest,
  BreakerState,
  ClientConfig,
  HttpMethod,
  RetryConfig,
  RetryMode,
  RobustClient,
  TimeoutConfig,
  type ApiResponse,
  type CachePolicy,
  type ServiceStatus,
} from './generated/robust_api';
import { responseText, uploadVideoFile as uploadVideo, utf8Bytes, type UploadProgress } from './helpers';

/** The old service's `fetch`-style options. */
export interface ServiceRequestOptions {
  /** `GET` (default), `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` (any case). */
  method?: string;
  headers?: Record<string, string> | Map<string, string>;
  /** A string or bytes go as they are; any other value is sent as JSON (with `Content-Type`). */
  body?: string | ArrayBuffer | ArrayBufferView | object | null;
  signal?: AbortSignal;
  /** Makes a POST/PATCH safe to retry and fail over (sent as `Idempotency-Key` on every attempt). */
  idempotencyKey?: string;
  /** GETs only; default: network first, the cache when the network fails (CachePolicy). */
  cache?: CachePolicy;
}

/** The old service's per-call resilience settings. */
export interface ExecuteRequestConfig {
  /** Milliseconds per attempt (the SDK's `ApiRequest.timeoutMs`). */
  timeout?: number;
  /** 0: never sent twice. Any other number: the client's `retry.maxRetries` (see the README). */
  retries?: number;
  /** Accepted for compatibility; the SDK's breakers always apply (see the README). */
  useCircuitBreaker?: boolean;
  /** Must be among the configured backends; the SDK fails over across all of them. */
  fallbackBackends?: string[];
}

export interface BackendSummary {
  url: string;
  healthy: boolean;
  circuitBreaker: 'CLOSED' | 'OPEN' | 'HALF_OPEN';
  consecutiveFailures: number;
  latencyMs: number | undefined;
  lastError: string | undefined;
}

/** `getServiceStatus()`: the old service's summary, plus the SDK's full snapshot as `details`. */
export interface ServiceStatusSummary {
  online: boolean;
  preferredBackend: string | undefined;
  backends: BackendSummary[];
  /** Requests, retries and failovers since the client started (numbers; `details` has the bigints). */
  requests: number;
  retries: number;
  failovers: number;
  cache: { entries: number; bytes: number };
  queue: { pending: number; deadLettered: number };
  details: ServiceStatus;
}

export type UploadProgressCallback = (percent: number, progress: UploadProgress) => void;

export interface RobustApiServiceOptions {
  /** Base URLs, primary first, then the fallbacks (every URL the service may call). */
  backends: string[];
  /** A writable app folder for the cache and the offline queue (see the README). */
  storageDir?: string;
  /** Default milliseconds per attempt (`timeouts.requestMs`; default 30 000). */
  timeout?: number;
  /** Default re-sends of a failed idempotent call (`retry.maxRetries`; default 3). */
  retries?: number;
  /** Everything else, as a full ClientConfig (then `backends`, `timeout`, `retries` above win). */
  config?: ClientConfig;
}

const METHODS: Record<string, HttpMethod> = {
  GET: HttpMethod.Get,
  HEAD: HttpMethod.Head,
  POST: HttpMethod.Post,
  PUT: HttpMethod.Put,
  PATCH: HttpMethod.Patch,
  DELETE: HttpMethod.Delete,
};

const trimSlash = (url: string) => url.replace(/\/+$/, '');

/** The old service's interface over one RobustClient. */
export class RobustApiService {
  readonly client: RobustClient;
  private readonly backends: string[];

  constructor(clientOrOptions: RobustClient | RobustApiServiceOptions) {
    if (clientOrOptions instanceof RobustClient) {
      this.client = clientOrOptions;
    } else {
      const o = clientOrOptions;
      const base = o.config ?? ClientConfig.create({ backends: o.backends });
      this.client = new RobustClient(ClientConfig.create({
        ...base,
        backends: o.backends,
        storageDir: o.storageDir ?? base.storageDir,
        timeouts: o.timeout === undefined ? base.timeouts : TimeoutConfig.create({ ...base.timeouts, requestMs: o.timeout }),
        retry: o.retries === undefined ? base.retry : RetryConfig.create({ ...base.retry, maxRetries: o.retries }),
      }));
    }
    this.backends = this.client.serviceStatus().backends.map((b) => trimSlash(b.url));
  }

  /**
   * Sends `url` — a path (`/api/items?page=2`) or an absolute URL under one of the configured
   * backends — through the SDK and resolves with the body: parsed JSON when the response says
   * `application/json` (or `+json`), `undefined` when empty, the text otherwise. A non-2xx answer
   * rejects with `ApiError.Http` (status and body in `e.inner`), like every other SDK error.
   */
  async executeRequest<T = unknown>(url: string, options: ServiceRequestOptions = {}, config: ExecuteRequestConfig = {}): Promise<T> {
    return parseBody<T>(await this.executeRequestRaw(url, options, config));
  }

  /** `executeRequest`, resolving with the SDK's whole ApiResponse (status, headers, backend, …). */
  executeRequestRaw(url: string, options: ServiceRequestOptions = {}, config: ExecuteRequestConfig = {}): Promise<ApiResponse> {
    for (const fallback of config.fallbackBackends ?? []) {
      if (!this.backends.includes(trimSlash(fallback))) {
        throw new TypeError(`fallback backend ${fallback} is not configured (configured: ${this.backends.join(', ')})`);
      }
    }
    const method = METHODS[(options.method ?? 'GET').toUpperCase()];
    if (method === undefined) throw new TypeError(`unsupported HTTP method ${options.method}`);
    const headers = new Map(options.headers instanceof Map ? options.headers : Object.entries(options.headers ?? {}));
    const request = ApiRequest.create({
      method,
      path: this.pathOf(url),
      headers,
      body: encodeBody(options.body, headers),
      timeoutMs: config.timeout,
      retry: config.retries === 0 ? RetryMode.Never : undefined,
      idempotencyKey: options.idempotencyKey,
      cache: options.cache,
    });
    return this.client.request(request, options.signal ? { signal: options.signal } : undefined);
  }

  getServiceStatus(): ServiceStatusSummary {
    const s = this.client.serviceStatus();
    return {
      online: s.networkAvailable,
      preferredBackend: s.preferredBackend,
      backends: s.backends.map((b) => ({
        url: b.url,
        healthy: b.healthy,
        circuitBreaker: b.breakerState === BreakerState.Open ? 'OPEN' : b.breakerState === BreakerState.HalfOpen ? 'HALF_OPEN' : 'CLOSED',
        consecutiveFailures: b.consecutiveFailures,
        latencyMs: b.latencyEwmaMs,
        lastError: b.lastError,
      })),
      requests: Number(s.counters.requests),
      retries: Number(s.counters.retries),
      failovers: Number(s.counters.failovers),
      cache: { entries: Number(s.cache.entries), bytes: Number(s.cache.bytes) },
      queue: { pending: Number(s.queue.pending), deadLettered: Number(s.queue.deadLettered) },
      details: s,
    };
  }

  clearCache(): void {
    this.client.clearCache();
  }

  resetCircuitBreakers(): void {
    this.client.resetCircuitBreakers();
  }

  /**
   * Streams the file at `uri` (`file://` URI or path) as form field `file`, with `title`, to the
   * configured `upload.videoPath`; resolves with the parsed body like `executeRequest`.
   * `onProgress(percent, progress)`: percent 0–100, then the byte counts.
   */
  async uploadVideoFile<T = unknown>(uri: string, title: string, onProgress?: UploadProgressCallback): Promise<T> {
    const handler = onProgress && ((p: UploadProgress) => onProgress(Math.round(p.fraction * 100), p));
    return parseBody<T>(await uploadVideo(this.client, uri, title, handler));
  }

  /** Stops the client's threads (the old service had nothing to stop; call it when done with it). */
  shutdown(): void {
    this.client.shutdown();
  }

  private pathOf(url: string): string {
    if (url.startsWith('/')) return url;
    if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(url)) return `/${url}`;
    for (const backend of this.backends) {
      if (url === backend || url.startsWith(`${backend}/`) || url.startsWith(`${backend}?`)) {
        const rest = url.slice(backend.length);
        return rest.startsWith('/') ? rest : `/${rest}`;
      }
    }
    throw new TypeError(`${url} is not under a configured backend (${this.backends.join(', ')}): the SDK sends only there`);
  }
}

function encodeBody(body: ServiceRequestOptions['body'], headers: Map<string, string>): ArrayBuffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return utf8Bytes(body);
  if (body instanceof ArrayBuffer) return body;
  if (ArrayBuffer.isView(body)) return body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer;
  if (![...headers.keys()].some((k) => k.toLowerCase() === 'content-type')) headers.set('Content-Type', 'application/json');
  return utf8Bytes(JSON.stringify(body));
}

function parseBody<T>(r: ApiResponse): T {
  if (r.body.byteLength === 0) return undefined as T;
  const type = [...r.headers].find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '';
  const text = responseText(r);
  return (/[/+]json\b/i.test(type) ? JSON.parse(text) : text) as T;
}

let shared: RobustApiService | undefined;

/** Creates the shared service behind `robustApiService` (once, at app start); returns it. */
export function configureRobustApiService(options: RobustApiServiceOptions | RobustClient): RobustApiService {
  shared?.shutdown();
  shared = new RobustApiService(options);
  return shared;
}

function current(): RobustApiService {
  if (!shared) throw new Error('call configureRobustApiService({ backends }) once before using robustApiService');
  return shared;
}

/** The old module's singleton, bound to the service `configureRobustApiService` made. */
export const robustApiService = {
  executeRequest: <T = unknown>(url: string, options?: ServiceRequestOptions, config?: ExecuteRequestConfig) =>
    current().executeRequest<T>(url, options, config),
  getServiceStatus: () => current().getServiceStatus(),
  clearCache: () => current().clearCache(),
  resetCircuitBreakers: () => current().resetCircuitBreakers(),
  uploadVideoFile: <T = unknown>(uri: string, title: string, onProgress?: UploadProgressCallback) =>
    current().uploadVideoFile<T>(uri, title, onProgress),
};
