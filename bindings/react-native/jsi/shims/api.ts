// test/api.ts for Hermes: the package's public TypeScript API in its JSI flavour — exactly what an
// app imports: the generated src/generated/robust_api.ts (its FFI module reads the JSI host object
// `globalThis.NativeRobustApi` that librn-robust_api.so installed) and the hand-written
// src/helpers.ts and src/robustApiService.ts. `initialize()` is what the generated src/native.tsx
// does in an app after installing the crate: it checks the FFI checksums and registers the
// callback vtables (listeners, header provider).
import robustApi from '../../src/generated/robust_api';

robustApi.initialize();

export * from '../../src/generated/robust_api';
export * from '../../src/helpers';
export * from '../../src/robustApiService';
