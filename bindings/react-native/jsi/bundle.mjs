// Bundles TypeScript test files for Hermes (run-jsi-tests.sh): one self-contained script per test
// file, which ubrn's test-runner evaluates.
//   1. esbuild bundles the file with its imports (the generated JSI bindings, the package's
//      hand-written src/, @ubjs/core), jsi/shims/error-subclassing.ts and the prelude first; the
//      test files' Node imports resolve to the Hermes shims in jsi/shims (node:test,
//      node:assert/strict, node:fs, ...) and their './api' / './fleet' / './tus' to the JSI
//      flavours (shims/api.ts, shims/fleet.ts, shims/tus.ts), so the N-API suite's files run
//      unchanged;
//   2. TypeScript's transpiler lowers the bundle to ES5 (as ubrn's own JSI test pipeline does:
//      this Hermes compiles no ES6 classes), keeping BigInt literals.
// Usage: node bundle.mjs OUT_DIR NODE_MODULES TEST.ts...   (writes OUT_DIR/<test name>.js; ES5
// results cached in OUT_DIR/../es5-cache)
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const [outDir, nodeModules, ...files] = process.argv.slice(2);
const require = createRequire(path.join(nodeModules, 'noop.js'));
const esbuild = require('esbuild');
const ts = require('typescript');
const HERE = path.dirname(new URL(import.meta.url).pathname);
const SHIMS = path.join(HERE, 'shims');
const NODE_SHIMS = {
  'node:test': 'node-test.ts',
  'node:assert/strict': 'assert.ts',
  'node:assert': 'assert.ts',
  'node:fs': 'fs.ts',
  'node:path': 'path.ts',
  'node:os': 'os.ts',
  'node:url': 'url.ts',
  'node:crypto': 'crypto.ts',
};
const TEST_MODULES = { api: 'api.ts', fleet: 'fleet.ts', tus: 'tus.ts' };
const TEST_DIR = path.join(HERE, '..', 'test');

const hermesShims = {
  name: 'hermes-shims',
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => {
      const shim = NODE_SHIMS[args.path];
      if (!shim) return { errors: [{ text: `${args.path} has no Hermes shim (jsi/shims)` }] };
      return { path: path.join(SHIMS, shim) };
    });
    // The test directory's own api/fleet/tus modules (from test/ or test/jsi/): the JSI flavours.
    build.onResolve({ filter: /^\.\.?\/(api|fleet|tus)$/ }, (args) => {
      const target = path.resolve(args.resolveDir, args.path);
      const name = path.basename(target);
      if (target !== path.join(TEST_DIR, name)) return undefined;
      return { path: path.join(SHIMS, TEST_MODULES[name]) };
    });
  },
};

fs.mkdirSync(outDir, { recursive: true });
const cacheDir = path.join(outDir, '..', 'es5-cache');
fs.mkdirSync(cacheDir, { recursive: true });
for (const f of fs.readdirSync(cacheDir)) {  // entries unused for a week go
  const p = path.join(cacheDir, f);
  if (Date.now() - fs.statSync(p).mtimeMs > 7 * 86_400_000) fs.rmSync(p, { force: true });
}
for (const file of files) {
  const abs = path.resolve(file);
  const name = path.basename(abs).replace(/\.test\.ts$|\.ts$/, '');
  const result = await esbuild.build({
    stdin: {
      contents: [
        `import ${JSON.stringify(path.join(SHIMS, 'error-subclassing.ts'))};`,
        `import ${JSON.stringify(path.join(SHIMS, 'prelude.ts'))};`,
        `import ${JSON.stringify(abs)};`,
      ].join('\n'),
      resolveDir: path.dirname(abs),
      sourcefile: `${name}.entry.ts`,
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['import', 'default'],
    target: 'es2020',
    nodePaths: [nodeModules],
    plugins: [hermesShims],
    banner: { js: `var __JSI_SUITE__ = ${JSON.stringify(name)};` },
    logLevel: 'warning',
  });
  // The ES5 lowering is the slow step: cached by the bundle's hash (and the TypeScript version).
  const bundled = result.outputFiles[0].text;
  const key = createHash('sha256').update(ts.version).update(bundled).digest('hex').slice(0, 24);
  const cached = path.join(cacheDir, `${key}.js`);
  if (!fs.existsSync(cached)) {
    const es5 = ts.transpileModule(bundled, {
      compilerOptions: { target: ts.ScriptTarget.ES5, downlevelIteration: true, module: ts.ModuleKind.None, removeComments: true },
      reportDiagnostics: false,
    }).outputText;
    fs.writeFileSync(`${cached}.tmp`, es5);
    fs.renameSync(`${cached}.tmp`, cached);
  } else {
    const now = new Date();
    fs.utimesSync(cached, now, now);
  }
  fs.copyFileSync(cached, path.join(outDir, `${name}.js`));
}
