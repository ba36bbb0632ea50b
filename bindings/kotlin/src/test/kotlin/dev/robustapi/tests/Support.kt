// Test support: the local test fleet (examples/test-fleet, a separate process), fast client configs,
// polling, and /proc counters for the leak tests. No external libraries beyond the JDK.
package dev.robustapi.tests

import dev.robustapi.BreakerConfig
import dev.robustapi.ClientConfig
import dev.robustapi.RetryConfig
import dev.robustapi.RobustClient
import dev.robustapi.TimeoutConfig
import java.io.File
import java.net.HttpURLConnection
import java.net.URI
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit

/**
 * N real HTTP/1.1 backends plus a control server, run by the `test-fleet` binary (path in the system
 * property `robustapi.fleet`, set by run-tests.sh); with `websockets = true` also N WebSocket echo
 * backends ([wsBackends], which answer `/api/health` too) and their control server ([wsCall]). The
 * one place the suite starts the fleet. It exits when its stdin closes, so a dead test JVM never
 * leaks it.
 */
class Fleet private constructor(
    private val process: Process,
    val backends: List<String>,
    private val control: String,
    val wsBackends: List<String>,
    private val wsControl: String?,
    /** With `proxyTo`: the fleet's HTTP proxy in front of that port (see [proxyCall]). */
    val proxy: String?,
) : AutoCloseable {
    companion object {
        /** With [proxyTo], the fleet also relays [proxy] to `127.0.0.1:proxyTo` (cuts on request). */
        fun start(n: Int = 3, websockets: Boolean = false, proxyTo: Int? = null): Fleet {
            val bin = System.getProperty("robustapi.fleet")
                ?: error("system property robustapi.fleet (path of target/debug/examples/test-fleet) is not set")
            val args = listOf(bin, "--backends", n.toString()) +
                (if (websockets) listOf("--websockets") else emptyList()) +
                (if (proxyTo != null) listOf("--proxy-to", proxyTo.toString()) else emptyList())
            val process = ProcessBuilder(args)
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start()
            val reader = process.inputStream.bufferedReader()
            val line = try {
                CompletableFuture.supplyAsync { reader.readLine() }.get(15, TimeUnit.SECONDS)
            } catch (e: Exception) {
                process.destroyForcibly()
                throw IllegalStateException("test-fleet printed no line within 15 s", e)
            } ?: run {
                process.waitFor(5, TimeUnit.SECONDS)
                error("test-fleet exited before printing its addresses (exit ${process.exitValue()})")
            }
            // One JSON object: {"backends":[...],"control":"..."[,"ws_backends":[...],"ws_control":"..."]}.
            val backends = jsonStrings(line, "backends")
            val control = jsonString(line, "control")
            val wsBackends = jsonStrings(line, "ws_backends").orEmpty()
            val wsControl = jsonString(line, "ws_control")
            val proxy = jsonString(line, "proxy")
            if (backends == null || control == null || backends.size != n ||
                (websockets && (wsBackends.size != n || wsControl == null)) ||
                (proxyTo != null && proxy == null)
            ) {
                process.destroyForcibly()
                error("unexpected test-fleet line for $n backends (websockets=$websockets): $line")
            }
            return Fleet(process, backends, control, wsBackends, wsControl, proxy)
        }

        private fun jsonString(line: String, key: String): String? =
            Regex(""""$key"\s*:\s*"([^"]*)"""").find(line)?.groupValues?.get(1)

        private fun jsonStrings(line: String, key: String): List<String>? =
            Regex(""""$key"\s*:\s*\[([^\]]*)\]""").find(line)?.groupValues?.get(1)
                ?.let { list -> Regex(""""([^"]+)"""").findAll(list).map { it.groupValues[1] }.toList() }
    }

    /** Index of a backend by its base URL (as the client reports it). */
    fun index(url: String): Int {
        val i = backends.indexOf(url)
        check(i >= 0) { "$url is not one of $backends" }
        return i
    }

    /** `ok`, `down`, `blackhole`, `status 503`, `retry-after 503 2`, `slow 200`, `truncate`, `reset`. */
    fun fault(i: Int, fault: String) {
        val (code, body) = call(control, "POST", "/backends/$i/fault", fault)
        check(code == 200) { "setting fault '$fault' on backend $i: HTTP $code $body" }
    }

    fun faultAll(fault: String) = backends.indices.forEach { fault(it, fault) }

    fun hits(i: Int, path: String? = null): Long {
        val q = if (path == null) "" else "?path=" + java.net.URLEncoder.encode(path, "UTF-8")
        val (code, body) = call(control, "GET", "/backends/$i/hits$q", null)
        check(code == 200) { "hits of backend $i: HTTP $code $body" }
        return body.trim().toLong()
    }

    fun totalHits(path: String? = null): Long = backends.indices.sumOf { hits(it, path) }

    fun resetHits(i: Int) {
        check(call(control, "POST", "/backends/$i/reset-hits", null).first == 200)
    }

    /** Uploads backend [i] stored, as the fleet's JSON array (see `StoredUpload` in tests/support/fleet.rs). */
    fun uploads(i: Int): String {
        val (code, body) = call(control, "GET", "/backends/$i/uploads", null)
        check(code == 200) { "uploads of backend $i: HTTP $code $body" }
        return body
    }

    /** Body bytes backend [i] received on its upload route (finished or aborted uploads). */
    fun uploadBytes(i: Int): Long {
        val (code, body) = call(control, "GET", "/backends/$i/upload-bytes", null)
        check(code == 200) { "upload bytes of backend $i: HTTP $code $body" }
        return body.trim().toLong()
    }

    /**
     * One call to the token service's control API (`POST /auth/issue`, `/auth/expire`,
     * `GET /auth/refreshes`, `/auth/reused`, `/auth/rejected`; see TokenService in fleet/src/auth.rs).
     */
    fun auth(method: String, action: String, body: String? = null): String {
        val (code, text) = call(control, method, "/auth/$action", body)
        check(code == 200) { "$method /auth/$action: HTTP $code $text" }
        return text
    }

    /**
     * One call to the WebSocket backends' control API (`/ws/{i}/kill`, `/start`, `/received`, ...; see
     * `WsControl` in tests/support/ws_server.rs); returns the body, fails on a non-200 answer.
     */
    fun wsCall(method: String, path: String, body: String? = null): String {
        val base = checkNotNull(wsControl) { "fleet started without websockets = true" }
        val (code, text) = call(base, method, path, body)
        check(code == 200) { "$method $path: HTTP $code $text" }
        return text
    }

    /**
     * One call to the proxy's control API (`POST /proxy/cut-after` with `<bytes>`, `GET /proxy/cuts`,
     * `/proxy/body-bytes`, `/proxy/wire-bytes`, `/proxy/requests`); returns the body.
     */
    fun proxyCall(method: String, action: String, body: String? = null): String {
        val (code, text) = call(control, method, "/proxy/$action", body)
        check(code == 200) { "$method /proxy/$action: HTTP $code $text" }
        return text
    }

    /**
     * One control call on its own connection (`Connection: close`), so the JVM's keep-alive cache holds
     * no sockets that would blur the file-descriptor counts of the leak tests. A POST always sends a
     * body (empty if [body] is null).
     */
    private fun call(base: String, method: String, path: String, body: String?): Pair<Int, String> {
        val c = URI(base + path).toURL().openConnection() as HttpURLConnection
        try {
            c.requestMethod = method
            c.connectTimeout = 5_000
            c.readTimeout = 5_000
            c.setRequestProperty("Connection", "close")
            if (body != null || method == "POST") {
                c.doOutput = true
                c.outputStream.use { it.write((body ?: "").toByteArray()) }
            }
            val code = c.responseCode
            val text = (if (code < 400) c.inputStream else c.errorStream)?.use { it.readBytes().decodeToString() } ?: ""
            return code to text
        } finally {
            c.disconnect()
        }
    }

    override fun close() {
        runCatching { process.outputStream.close() }   // EOF on stdin: the fleet exits
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(5, TimeUnit.SECONDS)
        process.inputStream.close()
    }
}

/**
 * Defaults, with delays short enough for tests; [tweak] adjusts the result, e.g.
 * `fastConfig(urls) { breaker = breaker.copy(openMs = 60_000) }` (keeps the other fast settings).
 */
fun fastConfig(backends: List<String>, tweak: ClientConfig.() -> Unit = {}): ClientConfig = ClientConfig(
    backends = backends,
    // A folder of its own: the offline queue needs durable storage, and one client owns a folder.
    storageDir = kotlin.io.path.createTempDirectory("robust-api-kt-").toString(),
    timeouts = TimeoutConfig(connectMs = 500, requestMs = 2_000),
    retry = RetryConfig(baseDelayMs = 10, maxDelayMs = 40),
    breaker = BreakerConfig(openMs = 500),
).apply(tweak)

/**
 * Polls [cond] every 10 ms; fails after [timeoutMs] with [what] and [detail] (evaluated at the failure,
 * so it shows the state then, not when the wait began).
 */
fun waitUntil(what: String, timeoutMs: Long = 3_000, detail: () -> String = { "" }, cond: () -> Boolean) {
    val deadline = System.nanoTime() + timeoutMs * 1_000_000
    while (!cond()) {
        if (System.nanoTime() > deadline) {
            throw AssertionError("timed out after $timeoutMs ms waiting for: $what ${detail()}".trim())
        }
        Thread.sleep(10)
    }
}

/** Waits until the start-up health probes have given every backend a latency sample. */
fun RobustClient.awaitProbed() = waitUntil("start-up probes of every backend", 5_000) {
    serviceStatus().backends.all { it.latencyEwmaMs != null }
}

/** Byte `i` of the fleet's `/bytes/{n}` body. */
fun patternByte(i: Int): Byte = (i % 251).toByte()

/** Open file descriptors of this JVM. */
fun openFds(): Int = File("/proc/self/fd").list()!!.size

/** Native threads of this JVM (Java threads, JVM internals and Rust threads alike). */
fun nativeThreads(): Int = File("/proc/self/task").list()!!.size

fun nativeThreadNames(): List<String> = File("/proc/self/task").listFiles()!!.mapNotNull {
    runCatching { File(it, "comm").readText().trim() }.getOrNull()
}.sorted()

/**
 * Native threads started by robust-api clients (tokio workers and blocking threads are named
 * `robust-api`, the event thread `robust-api-events`, truncated by the kernel to 15 characters).
 */
fun robustThreads(): Int = nativeThreadNames().count { it.startsWith("robust-api") }
