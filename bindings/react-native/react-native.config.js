// React Native CLI autolinking: the Codegen output dir is android/generated (package.json
// codegenConfig.outputDir), so the CMakeLists.txt Codegen writes is under generated/jni.
module.exports = {
  dependency: {
    platforms: {
      android: {
        cmakeListsPath: 'generated/jni/CMakeLists.txt',
      },
    },
  },
};
