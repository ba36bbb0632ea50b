// (a) A client with default settings for three local backends: calls succeed and every field of the
// response (status, headers, body bytes, backend) crosses the binding intact.
package dev.robustapi.tests

import dev.robustapi.ApiRequest
import dev.robustapi.BreakerState
import dev.robustapi.ClientConfig
import dev.robustapi.HttpMethod
import dev.robustapi.QueryParam
import dev.robustapi.RobustClient
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
    fun `default config from Rust matches the documented defaults and the Kotlin default arguments`() {
        val c = defaultClientConfig(fleet.backends)
        assertEquals(fleet.backends, c.backends)
        assertEquals(10_000uL, c.connectTimeoutMs)
        assertEquals(30_000uL, c.requestTimeoutMs)
        assertEquals(3u, c.maxRetries)
        assertEquals(5u, c.breakerFailureThreshold)
        assertEquals(30_000uL, c.breakerOpenMs)
        assertEquals("/api/health", c.healthPath)
        assertNull(c.hedgeAfterMs)
        assertNull(c.storageDir)
        // The generated data-class defaults (from #[uniffi(default)]) agree with Rust's ClientConfig::new.
        assertEquals(c, ClientConfig(backends = fleet.backends))
    }

    @Test
    fun `get returns status, headers, body bytes and backend intact`() = runBlocking<Unit> {
        RobustClient(defaultClientConfig(fleet.backends)).use { client ->
            val r = client.get("/bytes/1024")
            assertEquals(200.toUShort(), r.status)
            assertEquals(1024, r.body.size)
            assertContentEquals(ByteArray(1024) { patternByte(it) }, r.body)
            assertEquals("application/octet-stream", r.headers["content-type"])
            assertEquals("1024", r.headers["content-length"])
            // `backend` names the server that really answered (its X-Backend header).
            val index = r.headers.getValue("x-backend").toInt()
            assertEquals(fleet.backends[index], r.backend)
            assertEquals(1u, r.attempts)
            assertTrue(r.elapsedMs < 10_000uL, "elapsedMs ${r.elapsedMs}")
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
            assertEquals(200.toUShort(), echoed.status)
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
            assertTrue(s.backends.all { it.consecutiveFailures == 0u && it.lastError == null }, "$s")
            assertTrue(s.preferredBackend in fleet.backends, "$s")
            assertTrue(s.networkAvailable)
            assertEquals(5uL, s.counters.requests)
            assertEquals(0uL, s.counters.retries)
            assertEquals(0uL, s.counters.failovers)
        }
    }
}
