// Bundles TypeScript test files for Hermes (run-jsi-tests.sh): one self-contained script per test
// file, which ubrn's test-runner evaluates.
//   1. esbuild bundles the file with its imports (the generated JSI bindings, the package's
//      hand-written src/, @ubjs/core), the prelude first; the test files' Node imports resolve to
//      the Hermes shims in jsi/shims (node:test, node:assert/strict, node:fs, ...) and their
//      './api' / './fleet' to the JSI flavours (shims/api.ts, shims/fleet.ts), so the N-API
//      suite's files run unchanged;
//   2. TypeScript's transpiler lowers the bundle to ES5 (as ubrn's own JSI test pipeline does:
//      this Hermes compiles no ES6 classes), keeping BigInt literals.
// Usage: node bundle.mjs OUT_DIR NODE_MODULES TEST.ts...   (writes OUT_DIR/<test name>.js)
import fs from 'node:fs';
import path from 'node:path';
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
const TEST_MODULES = { api: 'api.ts', fleet: 'fleet.ts' };
const TEST_DIR = path.join(HERE, '..', 'test');

const hermesShims = {
  name: 'hermes-shims',
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => {
      const shim = NODE_SHIMS[args.path];
      if (!shim) return { errors: [{ text: `${args.path} has no Hermes shim (jsi/shims)` }] };
      return { path: path.join(SHIMS, shim) };
    });
    // The test directory's own api/fleet modules (from test/ or test/jsi/): the JSI flavours.
    build.onResolve({ filter: /^\.\.?\/(api|fleet)$/ }, (args) => {
      const target = path.resolve(args.resolveDir, args.path);
      const name = path.basename(target);
      if (target !== path.join(TEST_DIR, name)) return undefined;
      return { path: path.join(SHIMS, TEST_MODULES[name]) };
    });
  },
};

fs.mkdirSync(outDir, { recursive: true });
for (const file of files) {
  const abs = path.resolve(file);
  const name = path.basename(abs).replace(/\.test\.ts$|\.ts$/, '');
  const result = await esbuild.build({
    stdin: {
      contents: `import ${JSON.stringify(path.join(SHIMS, 'prelude.ts'))};\nimport ${JSON.stringify(abs)};\n`,
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
  const es5 = ts.transpileModule(result.outputFiles[0].text, {
    compilerOptions: { target: ts.ScriptTarget.ES5, downlevelIteration: true, module: ts.ModuleKind.None, removeComments: true },
    reportDiagnostics: false,
  }).outputText;
  fs.writeFileSync(path.join(outDir, `${name}.js`), es5);
}
