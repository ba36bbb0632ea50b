// robust-api for Android: the UniFFI-generated Kotlin (src/main/kotlin, copied in by
// ../build-android.sh, never committed) plus librobust_api.so per ABI (src/main/jniLibs, built by
// `cargo ndk`). Output: build/outputs/aar/robust-api-release.aar
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.robustapi"
    compileSdk = 35

    defaultConfig {
        // API 24+: JNA's AAR supports it; below API 33 java.lang.ref.Cleaner is missing and the
        // generated code falls back to JNA's own cleaner (handled at run time).
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets["main"].apply {
        kotlin.srcDirs("src/main/kotlin")
        jniLibs.srcDirs("src/main/jniLibs")
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    buildTypes {
        release {
            // The app shrinks; a library only ships consumer rules.
            isMinifyEnabled = false
        }
    }

    packaging {
        // cargo ndk already strips release libraries; keep Gradle from touching them again.
        jniLibs.keepDebugSymbols += "**/librobust_api.so"
    }

    publishing {
        singleVariant("release") { withSourcesJar() }
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    // JNA as an AAR: it carries libjnidispatch.so for every Android ABI (the plain jar carries
    // desktop natives only). If another dependency pulls in the jna *jar*, exclude it there.
    api("net.java.dev.jna:jna:5.17.0@aar")
    // The generated code uses suspend functions and CancellableContinuation.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.10.2")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}
