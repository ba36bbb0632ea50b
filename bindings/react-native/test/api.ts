// What the tests import: the package's public TypeScript API, as run-tests.sh builds it for Node in
// target/react-native/node — the N-API flavour of the generated bindings (`ubrn generate napi
// bindings`: same API as the app's JSI flavour, calls into target/debug/librobust_api.so through
// @ubjs/node) and verbatim copies of the hand-written src/helpers.ts and src/robustApiService.ts.
// (In the Hermes-JSI route, run-jsi-tests.sh, jsi/shims/api.ts stands in for this file.)
export * from '../../../target/react-native/node/generated/index';
export * from '../../../target/react-native/node/helpers';
export * from '../../../target/react-native/node/robustApiService';
