// (a) A client with default settings for three local backends: calls succeed and every field of the
// response (status, headers, body bytes, backend) crosses the binding intact.
package dev.robustapi.tests

import dev.robustapi.ApiRequest
import dev.robustapi.BreakerConfig
import dev.robustapi.BreakerState
import dev.robustapi.CacheConfig
import dev.robustapi.ClientConfig
import dev.robustapi.HealthConfig
import dev.robustapi.HttpMethod
import dev.robustapi.QueryParam
import dev.robustapi.RetryConfig
import dev.robustapi.RobustClient
import dev.robustapi.TimeoutConfig
import dev.robustapi.UploadConfig
import dev.robustapi.defaultClientConfig
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertNull
import kotlin.test.assertTrue

class BasicCallsTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `nested config defaults are the documented ones, from Rust and from the Kotlin default arguments`() {
        val c = ClientConfig(backends = fleet.backends)
        // The generated default arguments (from #[uniffi(default)]) agree with Rust's ClientConfig::new.
        assertEquals(defaultClientConfig(fleet.backends), c)
        assertEquals(fleet.backends, c.backends)
        assertNull(c.storageDir)
        assertEquals(emptyMap<String, String>(), c.defaultHeaders)
        assertEquals(2, c.workerThreads)
        assertEquals(TimeoutConfig(connectMs = 10_000, requestMs = 30_000), c.timeouts)
        with(c.retry) {
            assertEquals(listOf(3, 1_000, 8_000, 10), listOf(maxRetries, baseDelayMs, maxDelayMs, budgetMinPerSec))
            assertEquals(0.2, budgetRatio)
            assertNull(hedgeAfterMs)
        }
        assertEquals(BreakerConfig(failureThreshold = 5, openMs = 30_000, slowCallThresholdMs = null), c.breaker)
        assertEquals(HealthConfig(path = "/api/health", intervalMs = 60_000), c.health)
        assertEquals(
            CacheConfig(maxBytes = 20_971_520, defaultTtlMs = 0, maxStaleMs = 604_800_000, cleanupIntervalMs = 300_000),
            c.cache,
        )
        with(c.queue) {
            assertEquals(listOf(50, 10_485_760, 604_800_000), listOf(maxEntries, maxBytes, maxAgeMs))
            assertEquals(listOf(1_000, 300_000, 4), listOf(retryBaseDelayMs, retryMaxDelayMs, maxInFlight))
            assertEquals(emptyList<String>(), sensitiveHeaders)
        }
        assertEquals(UploadConfig(idleTimeoutMs = 30_000, maxRetries = 3, videoPath = "/api/videos"), c.upload)
        with(c.websocket) {
            assertEquals(
                listOf(30_000, 10_000, 1_000, 30_000, 1_000, 1_048_576),
                listOf(heartbeatIntervalMs, pongTimeoutMs, reconnectBaseDelayMs, reconnectMaxDelayMs, maxBufferedMessages, maxBufferedBytes),
            )
            assertNull(maxReconnectAttempts)
            assertTrue(reconnectOnNormalClose)
        }
        // One group given: its other fields, and every other group, keep their defaults.
        val hedged = ClientConfig(backends = fleet.backends, retry = RetryConfig(hedgeAfterMs = 300))
        assertEquals(300, hedged.retry.hedgeAfterMs)
        assertEquals(3, hedged.retry.maxRetries)
        assertEquals(c.copy(retry = c.retry.copy(hedgeAfterMs = 300)), hedged)
    }

    @Test
    fun `get returns status, headers, body bytes and backend intact`() = runBlocking<Unit> {
        RobustClient(defaultClientConfig(fleet.backends)).use { client ->
            val r = client.get("/bytes/1024")
            assertEquals(200, r.status)
            assertEquals(1024, r.body.size)
            assertContentEquals(ByteArray(1024) { patternByte(it) }, r.body)
            assertEquals("application/octet-stream", r.headers["content-type"])
            assertEquals("1024", r.headers["content-length"])
            // `backend` names the server that really answered (its X-Backend header).
            val index = r.headers.getValue("x-backend").toInt()
            assertEquals(fleet.backends[index], r.backend)
            assertEquals(1, r.attempts)
            assertTrue(r.elapsedMs < 10_000, "elapsedMs ${r.elapsedMs}")
        }
    }

    @Test
    fun `large and empty bodies, query parameters and a JSON POST round-trip`() = runBlocking<Unit> {
        RobustClient(defaultClientConfig(fleet.backends)).use { client ->
            val big = client.get("/bytes/3000000")
            assertEquals(3_000_000, big.body.size)
            for (i in big.body.indices) if (big.body[i] != patternByte(i)) throw AssertionError("byte $i differs")

            assertEquals(0, client.get("/bytes/0").body.size)

            val q = client.request(
                ApiRequest(
                    method = HttpMethod.GET,
                    path = "/items/7",
                    query = listOf(QueryParam("q", "a b&c"), QueryParam("q", "ü")),
                    headers = mapOf("x-trace" to "t1"),
                )
            )
            val json = q.body.decodeToString()
            assertEquals("application/json", q.headers["content-type"])
            assertTrue(json.contains("\"method\":\"GET\""), json)
            assertTrue(json.contains("\"path\":\"/items/7?q=a"), json)
            assertTrue(json.contains("\"server\":${q.headers["x-backend"]}"), json)

            val payload = """{"name":"Zoë","emoji":"🚀","n":[1,2,3]}"""
            val echoed = client.postJson("/echo", payload)
            assertEquals(200, echoed.status)
            assertEquals("application/json", echoed.headers["content-type"])
            assertEquals(payload, echoed.body.decodeToString())
        }
    }

    @Test
    fun `service status lists the backends in order with closed breakers and counts calls`() = runBlocking<Unit> {
        RobustClient(defaultClientConfig(fleet.backends)).use { client ->
            client.awaitProbed()
            repeat(5) { client.get("/x/$it") }
            val s = client.serviceStatus()
            assertEquals(fleet.backends, s.backends.map { it.url })
            assertTrue(s.backends.all { it.breakerState == BreakerState.CLOSED && it.healthy }, "$s")
            assertTrue(s.backends.all { it.consecutiveFailures == 0 && it.lastError == null }, "$s")
            assertTrue(s.preferredBackend in fleet.backends, "$s")
            assertTrue(s.networkAvailable)
            assertEquals(5L, s.counters.requests)
            assertEquals(0L, s.counters.retries)
            assertEquals(0L, s.counters.failovers)
        }
    }
}
