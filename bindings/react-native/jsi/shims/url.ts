// `node:url` for Hermes: pathToFileURL(path).href.
export function pathToFileURL(path: string): { href: string; toString(): string } {
  const href = 'file://' + path.split('/').map((s) => encodeURIComponent(s)).join('/');
  return { href, toString: () => href };
}
export default { pathToFileURL };
