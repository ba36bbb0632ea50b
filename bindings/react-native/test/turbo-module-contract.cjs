// The TurboModule contract across the generated files, checked after generate.sh (run-tests.sh):
// React Native's Codegen (@react-native/codegen, what an app build runs) accepts the generated spec
// src/NativeRobustApi.ts, and the module name and JNI symbols agree between the spec, the Kotlin
// module, the JNI adapter and the iOS module — what the compile checks cannot see.
// Usage: node test/turbo-module-contract.cjs <package dir> <node_modules> <scratch dir>
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const [pkgDir, nodeModules, scratch] = process.argv.slice(2);
const read = (f) => fs.readFileSync(path.join(pkgDir, f), 'utf8');
const fail = (message) => {
  console.error(`turbo-module contract: ${message}`);
  process.exit(1);
};

const pkg = JSON.parse(read('package.json'));
const schemaFile = path.join(scratch, 'codegen-schema.json');
execFileSync(
  process.execPath,
  [path.join(nodeModules, '@react-native/codegen/lib/cli/combine/combine-js-to-schema-cli.js'), schemaFile,
    path.join(pkgDir, pkg.codegenConfig.jsSrcsDir, 'NativeRobustApi.ts')],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
const schema = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));
const spec = schema.modules.NativeRobustApi;
if (!spec || spec.type !== 'NativeModule') fail(`Codegen found no NativeModule in the spec: ${JSON.stringify(schema)}`);
const methods = spec.spec.methods.map((m) => `${m.name}(): ${m.typeAnnotation.returnTypeAnnotation.type}`).sort();
const expected = ['cleanupRustCrate(): BooleanTypeAnnotation', 'installRustCrate(): BooleanTypeAnnotation'];
if (JSON.stringify(methods) !== JSON.stringify(expected)) fail(`spec methods ${methods.join(', ')}`);
const name = spec.moduleName;

const javaPackage = pkg.codegenConfig.android.javaPackageName;
const kotlinFile = path.join('android/src/main/java', ...javaPackage.split('.'), `${name}Module.kt`);
if (!fs.existsSync(path.join(pkgDir, kotlinFile))) fail(`no ${kotlinFile}`);
const kotlin = read(kotlinFile);
if (!kotlin.includes(`package ${javaPackage}`)) fail(`${kotlinFile} is not in package ${javaPackage}`);
if (!kotlin.includes(`const val NAME = "${name}"`)) fail(`${kotlinFile} does not register "${name}"`);
if (!kotlin.includes(`NativeRobustApiSpec`)) fail(`${kotlinFile} does not extend the Codegen spec class`);
if (!kotlin.includes(`System.loadLibrary("react-native-robust-api")`)) fail(`${kotlinFile} loads another library`);

const adapter = read('android/cpp-adapter.cpp');
const jni = `Java_${javaPackage.replace(/\./g, '_')}_${name}Module_native`;
for (const method of ['InstallRustCrate', 'CleanupRustCrate']) {
  if (!adapter.includes(`${jni}${method}(`)) fail(`android/cpp-adapter.cpp has no ${jni}${method}`);
}
if (!read('android/CMakeLists.txt').includes('add_library(react-native-robust-api')) {
  fail('android/CMakeLists.txt does not build react-native-robust-api');
}

const mm = read(`ios/${name}.mm`);
if (!new RegExp(`@implementation ${name}\\b`).test(mm) || !mm.includes('RCT_EXPORT_MODULE()')) {
  fail(`ios/${name}.mm does not export the module ${name}`);
}
if (!read('RobustApi.podspec').includes('s.vendored_frameworks = "RobustApiFramework.xcframework"')) {
  fail('RobustApi.podspec does not vendor RobustApiFramework.xcframework (what build-ios.sh builds)');
}
console.error(`turbo-module contract: ok (module ${name}, Codegen methods ${methods.join(', ')})`);
