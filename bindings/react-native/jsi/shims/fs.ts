// `node:fs` for Hermes: the synchronous calls the suite uses, over the test host extension
// (jsi/TestHost.cpp).
const host = () => {
  if (!globalThis.__testHost) throw new Error('the test host extension (libjsi-test-host.so) is not loaded');
  return globalThis.__testHost;
};

export function mkdtempSync(prefix: string): string {
  return host().mkdtemp(prefix);
}
export function rmSync(path: string, _options?: { recursive?: boolean; force?: boolean }): void {
  host().rm(path);
}
export function existsSync(path: string): boolean {
  return host().exists(path);
}
export function mkdirSync(path: string, _options?: { recursive?: boolean }): void {
  host().mkdir(path);
}
export function writeFileSync(path: string, data: string | ArrayBuffer | ArrayBufferView): void {
  if (typeof data === 'string' || data instanceof ArrayBuffer) return host().writeFile(path, data);
  const copy = new Uint8Array(data.byteLength);
  copy.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  host().writeFile(path, copy.buffer);
}
/** The file's bytes (a Uint8Array, as Node's Buffer is one), or its text with an encoding. */
export function readFileSync(path: string): Uint8Array;
export function readFileSync(path: string, encoding: 'utf8' | 'utf-8'): string;
export function readFileSync(path: string, encoding?: 'utf8' | 'utf-8'): Uint8Array | string {
  if (encoding !== undefined) return host().readFile(path, true) as string;
  return new Uint8Array(host().readFile(path, false) as ArrayBuffer);
}
export function readdirSync(path: string): string[] {
  return host().readdir(path);
}
export function statSync(path: string): { size: number } {
  const size = host().fileSize(path);
  if (size < 0) throw new Error(`ENOENT: ${path}`);
  return { size };
}
export default { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync };
