// A thin, typed layer over the generated API for React Native code. No behaviour of the SDK lives
// here (failover, retries, caching and queueing are all in Rust): only JavaScript conveniences.
// It imports the generated bindings only as types, so it works over the JSI bindings in an app and
// over the N-API bindings in the Node tests alike.
import type {
  ApiError,
  ApiResponse,
  QueuedRequestId,
  QueueListener,
  RobustClientInterface,
  StatusEvent,
  StatusListener,
  StatusSubscriptionInterface,
  UploadProgressListener,
  UploadRequest,
  WebSocketListener,
  WebSocketState,
} from './generated/robust_api';

export type StatusEventHandler = (event: StatusEvent) => void;

/** What `addListener` returns, as React Native's own emitters do: call `remove()` to unsubscribe. */
export interface Subscription {
  remove(): void;
}

/**
 * Fans a client's status events (breaker changes, backend health, network, storage recovery) out to
 * any number of JavaScript handlers, in the React Native style:
 *
 * ```ts
 * const events = new StatusEvents(client);
 * useEffect(() => {
 *   const sub = events.addListener(() => setStatus(client.serviceStatus()));
 *   return () => sub.remove();
 * }, []);
 * ```
 *
 * One `StatusListener` is registered with the client on the first `addListener`, and removed
 * from the client (its `StatusSubscription.remove()`) when the last handler is removed; a later
 * `addListener` registers a new one. A handler that throws does not stop the others (its error is
 * re-thrown asynchronously, as an unhandled rejection, so it is still reported).
 */
export class StatusEvents {
  private readonly handlers = new Set<{ handler: StatusEventHandler }>();
  private registration: StatusSubscriptionInterface | undefined;

  constructor(private readonly client: Pick<RobustClientInterface, 'addStatusListener'>) {}

  addListener(handler: StatusEventHandler): Subscription {
    if (!this.registration) {
      const listener: StatusListener = { onEvent: (event) => this.emit(event) };
      this.registration = this.client.addStatusListener(listener);
    }
    const entry = { handler };
    this.handlers.add(entry);
    return {
      remove: () => {
        if (this.handlers.delete(entry) && this.handlers.size === 0) this.unregister();
      },
    };
  }

  removeAllListeners(): void {
    this.handlers.clear();
    this.unregister();
  }

  /** Whether a listener is registered with the client (false once every handler is removed). */
  get isRegistered(): boolean {
    return this.registration !== undefined;
  }

  get listenerCount(): number {
    return this.handlers.size;
  }

  private unregister(): void {
    this.registration?.remove();
    this.registration = undefined;
  }

  private emit(event: StatusEvent): void {
    for (const { handler } of [...this.handlers]) {
      try {
        handler(event);
      } catch (error) {
        void Promise.reject(error);
      }
    }
  }
}

/**
 * The one `StatusEvents` of `client` (made on first use), so every hook and screen shares one
 * listener registered with the client.
 */
export function statusEventsOf(client: Pick<RobustClientInterface, 'addStatusListener'>): StatusEvents {
  let events = sharedStatusEvents.get(client);
  if (!events) {
    events = new StatusEvents(client);
    sharedStatusEvents.set(client, events);
  }
  return events;
}
const sharedStatusEvents = new WeakMap<object, StatusEvents>();

/** A small typed emitter: `addListener(type, handler)` returns a `Subscription`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each set holds one event type's handlers
type AnyHandler = (...args: any[]) => void;

class Emitter<Events extends Record<string, unknown[]>> {
  private readonly handlers = new Map<keyof Events, Set<{ handler: AnyHandler }>>();

  addListener<K extends keyof Events>(type: K, handler: (...args: Events[K]) => void): Subscription {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    const entry: { handler: AnyHandler } = { handler };
    set.add(entry);
    return { remove: () => void set.delete(entry) };
  }

  removeAllListeners(): void {
    this.handlers.clear();
  }

  listenerCount(type: keyof Events): number {
    return this.handlers.get(type)?.size ?? 0;
  }

  protected emit<K extends keyof Events>(type: K, ...args: Events[K]): void {
    for (const { handler } of [...(this.handlers.get(type) ?? [])]) {
      try {
        handler(...args);
      } catch (error) {
        void Promise.reject(error);
      }
    }
  }
}

export type QueueEventMap = {
  delivered: [id: QueuedRequestId, response: ApiResponse];
  deadLettered: [id: QueuedRequestId, reason: string];
};

/**
 * The offline queue's outcomes in the React Native style (the client has one queue listener; this
 * is it, fanning out): `new QueueEvents(client).addListener('delivered', (id, r) => …).remove()`.
 * Registers itself with `setQueueListener` (replacing any other), which first replays the outcomes
 * no listener has seen.
 */
export class QueueEvents extends Emitter<QueueEventMap> {
  constructor(client: Pick<RobustClientInterface, 'setQueueListener'>) {
    super();
    const listener: QueueListener = {
      onDelivered: (id, response) => this.emit('delivered', id, response),
      onDeadLettered: (id, reason) => this.emit('deadLettered', id, reason),
    };
    client.setQueueListener(listener);
  }
}

export type WebSocketEventMap = {
  open: [backend: string];
  text: [text: string];
  binary: [data: ArrayBuffer];
  stateChange: [state: WebSocketState];
  error: [error: ApiError];
  closed: [code: number, reason: string];
};

/**
 * A WebSocket's events in the React Native style: pass `events.listener` to
 * `client.connectWebsocket(path, events.listener)`, then `events.addListener('text', …)` returns a
 * `Subscription`.
 */
export class WebSocketEvents extends Emitter<WebSocketEventMap> {
  readonly listener: WebSocketListener = {
    onOpen: (backend) => this.emit('open', backend),
    onText: (text) => this.emit('text', text),
    onBinary: (data) => this.emit('binary', data),
    onStateChange: (state) => this.emit('stateChange', state),
    onError: (error) => this.emit('error', error),
    onClosed: (code, reason) => this.emit('closed', code, reason),
  };
}

/**
 * `client.uploadFile` with progress as plain numbers (`UploadProgress`); `request.filePath` may be
 * a `file://` URI. Pass `{ signal }` to cancel.
 */
export function uploadFile(
  client: Pick<RobustClientInterface, 'uploadFile'>,
  request: UploadRequest,
  onProgress?: UploadProgressHandler,
  options?: Parameters<RobustClientInterface['uploadFile']>[2],
): Promise<ApiResponse> {
  const req = { ...request, filePath: filePathFromUri(request.filePath) };
  return client.uploadFile(req, uploadProgressListener(onProgress), options);
}

/** An upload's progress, as numbers (the SDK reports the byte counts as `bigint`s: they are i64). */
export interface UploadProgress {
  bytesSent: number;
  totalBytes: number;
  /** `bytesSent / totalBytes`, 0 to 1. */
  fraction: number;
}
export type UploadProgressHandler = (progress: UploadProgress) => void;

/**
 * Uploads a video picked in the app: `uri` is a `file://` URI (what camera and picker libraries
 * return) or a plain path, `title` the form field `title`; the file goes as form field `file` to the
 * configured `upload.videoPath` of the ClientConfig, streamed from disk, with every retry rule of
 * `client.uploadVideoFile` (which this calls). `onProgress` gets numbers. Pass `{ signal }` to cancel.
 * A `content://` (Android) or `ph://` (iOS Photos) URI is not a file: copy it to a file first.
 */
export function uploadVideoFile(
  client: Pick<RobustClientInterface, 'uploadVideoFile'>,
  uri: string,
  title: string,
  onProgress?: UploadProgressHandler,
  options?: Parameters<RobustClientInterface['uploadVideoFile']>[3],
): Promise<ApiResponse> {
  return client.uploadVideoFile(filePathFromUri(uri), title, uploadProgressListener(onProgress), options);
}

/** An `UploadProgressListener` calling `onProgress` with numbers (`undefined` for no handler). */
export function uploadProgressListener(onProgress?: UploadProgressHandler): UploadProgressListener | undefined {
  if (!onProgress) return undefined;
  return {
    onProgress(bytesSent: bigint, totalBytes: bigint): void {
      const sent = Number(bytesSent);
      const total = Number(totalBytes);
      onProgress({ bytesSent: sent, totalBytes: total, fraction: total > 0 ? sent / total : 1 });
    },
  };
}

/**
 * The file path of a `file://` URI (`file:///a/b%20c.mp4` → `/a/b c.mp4`; host empty or `localhost`);
 * a string without a scheme is returned as it is. Throws a `TypeError` for any other scheme.
 */
export function filePathFromUri(uri: string): string {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(uri);
  if (!scheme) return uri;
  if (scheme[1]!.toLowerCase() !== 'file') {
    throw new TypeError(`not a file:// URI: ${uri} (copy content:// or ph:// assets to a file first)`);
  }
  let rest = uri.slice(scheme[0].length).replace(/[?#].*$/, '');
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = rest.slice(2, slash < 0 ? undefined : slash);
    if (host !== '' && host.toLowerCase() !== 'localhost') {
      throw new TypeError(`not a local file URI (host ${host}): ${uri}`);
    }
    rest = slash < 0 ? '/' : rest.slice(slash);
  }
  return decodeURIComponent(rest);
}

/** A response body as text (UTF-8; invalid sequences become U+FFFD). */
export function responseText(response: Pick<ApiResponse, 'body'>): string {
  return utf8Decode(new Uint8Array(response.body));
}

/** A response body parsed as JSON. */
export function responseJson<T = unknown>(response: Pick<ApiResponse, 'body'>): T {
  return JSON.parse(responseText(response)) as T;
}

/** A string as the UTF-8 bytes of a request body (`ApiRequest.body`). */
export function utf8Bytes(text: string): ArrayBuffer {
  const bytes = utf8Encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

// TextDecoder/TextEncoder are not in every React Native JavaScript engine: used when present.
interface Codecs {
  TextDecoder?: new (label?: string) => { decode(bytes: Uint8Array): string };
  TextEncoder?: new () => { encode(text: string): Uint8Array };
}
const codecs = globalThis as unknown as Codecs;

function utf8Decode(bytes: Uint8Array): string {
  if (codecs.TextDecoder) return new codecs.TextDecoder('utf-8').decode(bytes);
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b0 = bytes[i]!;
    // Sequence length and the smallest code point it may encode (shorter forms are invalid).
    const [len, min] =
      b0 < 0x80 ? [1, 0] : b0 >= 0xc2 && b0 < 0xe0 ? [2, 0x80] : b0 >= 0xe0 && b0 < 0xf0 ? [3, 0x800]
        : b0 >= 0xf0 && b0 < 0xf5 ? [4, 0x10000] : [0, 0];
    if (len === 0) {
      out += '\ufffd';
      i += 1;
      continue;
    }
    let cp = len === 1 ? b0 : b0 & (0xff >> (len + 1));
    let j = 1;
    while (j < len && i + j < bytes.length && (bytes[i + j]! & 0xc0) === 0x80) {
      cp = (cp << 6) | (bytes[i + j]! & 0x3f);
      j++;
    }
    if (j < len || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) {
      out += '\ufffd';
      i += j; // skip the maximal invalid prefix
      continue;
    }
    out += String.fromCodePoint(cp);
    i += len;
  }
  return out;
}

function utf8Encode(text: string): Uint8Array {
  if (codecs.TextEncoder) return new codecs.TextEncoder().encode(text);
  const out: number[] = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}
