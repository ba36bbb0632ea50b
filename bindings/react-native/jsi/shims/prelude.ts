// Loaded first in every Hermes test bundle: what the test files take from Node's globals and Hermes
// lacks — `console` (over Hermes' `print`), a minimal `Buffer` (byte views for comparisons) and
// `AbortController`/`AbortSignal` (the test runner's Hermes has none; an app gets them from React
// Native). Nothing here touches the SDK.
import { utf8Bytes } from '../../src/helpers';

const g = globalThis as Record<string, unknown>;

if (typeof g.console === 'undefined') {
  const show = (a: unknown) => {
    if (typeof a === 'string') return a;
    if (a instanceof Error) return `${a.name}: ${a.message}`;
    try {
      return JSON.stringify(a, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    } catch {
      return String(a);
    }
  };
  const out = (prefix: string) => (...args: unknown[]) => print(prefix + args.map(show).join(' '));
  g.console = { log: out(''), info: out(''), debug: out(''), warn: out('warning: '), error: out('error: ') };
}

if (typeof g.Buffer === 'undefined') {
  // Buffer.from(ArrayBuffer | string[, 'utf8'] | number[]) and Buffer.alloc(n, fill): Uint8Arrays.
  g.Buffer = {
    from(x: ArrayBuffer | ArrayBufferView | string | number[], encoding?: string): Uint8Array {
      if (typeof x === 'string') {
        if (encoding !== undefined && encoding !== 'utf8' && encoding !== 'utf-8') throw new Error(`Buffer shim: ${encoding}`);
        return new Uint8Array(utf8Bytes(x));
      }
      if (x instanceof ArrayBuffer) return new Uint8Array(x.slice(0));
      if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
      return Uint8Array.from(x);
    },
    alloc(n: number, fill = 0): Uint8Array {
      return new Uint8Array(n).fill(fill);
    },
  };
}

if (typeof g.AbortController === 'undefined') {
  class AbortSignalShim {
    aborted = false;
    reason: unknown = undefined;
    onabort: ((ev: unknown) => void) | null = null;
    private readonly listeners: ((ev: unknown) => void)[] = [];
    addEventListener(type: string, fn: (ev: unknown) => void): void {
      if (type === 'abort') this.listeners.push(fn);
    }
    removeEventListener(type: string, fn: (ev: unknown) => void): void {
      const i = this.listeners.indexOf(fn);
      if (type === 'abort' && i >= 0) this.listeners.splice(i, 1);
    }
    throwIfAborted(): void {
      if (this.aborted) throw this.reason;
    }
    dispatch(reason: unknown): void {
      if (this.aborted) return;
      this.aborted = true;
      this.reason = reason;
      const ev = { type: 'abort', target: this };
      this.onabort?.(ev);
      for (const fn of [...this.listeners]) fn(ev);
    }
  }
  class AbortControllerShim {
    readonly signal = new AbortSignalShim();
    abort(reason?: unknown): void {
      const e = reason ?? Object.assign(new Error('This operation was aborted'), { name: 'AbortError' });
      this.signal.dispatch(e);
    }
  }
  g.AbortController = AbortControllerShim;
  g.AbortSignal = AbortSignalShim;
}
