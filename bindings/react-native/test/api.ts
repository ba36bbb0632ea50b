// What the tests import: the package's public TypeScript API, as run-tests.sh builds it for Node in
// target/react-native/node — the N-API flavour of the generated bindings (`ubrn generate napi
// bindings`: same API as the app's JSI flavour, calls into target/debug/librobust_api.so through
// @ubjs/node) and a verbatim copy of the hand-written src/helpers.ts.
export * from '../../../target/react-native/node/generated/index';
export * from '../../../target/react-native/node/helpers';
