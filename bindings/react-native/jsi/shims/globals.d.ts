// Globals of the Hermes test process: Hermes' own `print` and `HermesInternal`, and the test host
// extension (jsi/TestHost.cpp).
declare function print(...args: unknown[]): void;
declare var HermesInternal: object | undefined;
declare var __JSI_SUITE__: string | undefined;
declare var __testHost: {
  run: number;
  pid: number;
  getenv(name: string): string | undefined;
  mkdtemp(prefix: string): string;
  rm(path: string): void;
  exists(path: string): boolean;
  mkdir(path: string): void;
  writeFile(path: string, data: string | ArrayBuffer): void;
  /** The file's text (UTF-8) with `asText`, else its bytes. */
  readFile(path: string, asText: boolean): string | ArrayBuffer;
  fileSize(path: string): number;
  readdir(path: string): string[];
  openFds(): number;
  threads(): number;
  spawn(argv: string[], timeoutMs: number): { pid: number; line: string };
  close(pid: number, signal: number): number;
} | undefined;
