// `node:os` for Hermes: tmpdir() ($TMPDIR or /tmp, as Node).
export function tmpdir(): string {
  return (globalThis.__testHost?.getenv('TMPDIR') ?? '/tmp').replace(/\/+$/, '') || '/';
}
export default { tmpdir };
