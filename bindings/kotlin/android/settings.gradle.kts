// Standalone build of the robust-api Android library (AAR):
//   bindings/kotlin/build-android.sh        (generates sources + jniLibs, then runs Gradle here)
// To use the module inside an app instead, include it from the app's settings.gradle.kts:
//   include(":robust-api")
//   project(":robust-api").projectDir = file("<path to robust-api>/bindings/kotlin/android")
// (the app's own plugin versions are then used; the versions below apply to the standalone build only).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
    plugins {
        id("com.android.library") version "8.7.3"
        id("org.jetbrains.kotlin.android") version "2.1.21"
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "robust-api"
