// (c) Rust errors arrive as the matching subclass of the sealed Kotlin ApiException, with their fields.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.ApiRequest
import dev.robustapi.HttpMethod
import dev.robustapi.RetryMode
import dev.robustapi.RobustClient
import dev.robustapi.defaultClientConfig
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue

class ErrorsTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `bad configs throw InvalidConfig at construction`() {
        val bad = assertFailsWith<ApiException.InvalidConfig> {
            RobustClient(defaultClientConfig(listOf(fleet.backends[0], "not a url")))
        }
        assertContains(bad.reason, "not a url")
        assertContains(bad.message, "not a url")

        assertContains(
            assertFailsWith<ApiException.InvalidConfig> { RobustClient(defaultClientConfig(listOf("ftp://example.com"))) }.reason,
            "http",
        )
        assertFailsWith<ApiException.InvalidConfig> { RobustClient(defaultClientConfig(emptyList())) }
        assertFailsWith<ApiException.InvalidConfig> { RobustClient(fastConfig(fleet.backends).copy(connectTimeoutMs = 0uL)) }
        assertFailsWith<ApiException.InvalidConfig> { RobustClient(fastConfig(fleet.backends).copy(workerThreads = 0u)) }

        // Catchable as the base type (a plain kotlin.Exception) too, and dispatchable with `when`.
        val e: Exception = try {
            RobustClient(defaultClientConfig(listOf("http://")))
            throw AssertionError("constructed a client for http://")
        } catch (e: ApiException) {
            e
        }
        val kind = when (e) {
            is ApiException.InvalidConfig -> "config"
            is ApiException -> "other"
            else -> "not an ApiException"
        }
        assertEquals("config", kind)
    }

    @Test
    fun `all backends down throws AllBackendsUnavailable, then fails fast once every breaker is open`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends).copy(breakerOpenMs = 60_000uL)).use { client ->
            client.awaitProbed()
            fleet.faultAll("down")
            val e = assertFailsWith<ApiException.AllBackendsUnavailable> { client.get("/x") }
            assertTrue(e.attempts >= 3u, "tried every backend: $e")
            assertContains(e.lastError.lowercase(), "connect")
            assertContains(e.message, e.lastError)

            // Keep calling until every breaker is open: then nothing is sent and the call fails at once.
            var last: ApiException.AllBackendsUnavailable = e
            repeat(10) { last = assertFailsWith { client.get("/x") } }
            assertEquals(0u, last.attempts, "$last")
            val t0 = System.nanoTime()
            val fast = assertFailsWith<ApiException.AllBackendsUnavailable> { client.get("/x") }
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertEquals(0u, fast.attempts)
            assertContains(fast.lastError, "open")
            assertTrue(ms < 200, "failed fast: $ms ms")
            assertEquals(null, client.serviceStatus().preferredBackend)
        }
    }

    @Test
    fun `HTTP errors, timeouts, offline and shutdown map to their own subclasses`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            client.awaitProbed()
            fleet.faultAll("status 404")
            val http = assertFailsWith<ApiException.Http> { client.get("/missing") }
            assertEquals(404.toUShort(), http.status)
            assertEquals("error 404", http.body.decodeToString())
            assertTrue(http.backend in fleet.backends, http.backend)

            fleet.faultAll("blackhole")
            val t = assertFailsWith<ApiException.Timeout> {
                client.request(ApiRequest(HttpMethod.GET, "/hang", timeoutMs = 150uL, retry = RetryMode.NEVER))
            }
            assertEquals(150uL, t.timeoutMs)
            assertTrue(t.backend in fleet.backends, t.backend)

            assertFailsWith<ApiException.InvalidRequest> {
                client.request(ApiRequest(HttpMethod.GET, "/x", headers = mapOf("bad header" to "v")))
            }

            fleet.faultAll("ok")
            client.setNetworkAvailable(false)
            assertFalse(client.serviceStatus().networkAvailable)
            assertFailsWith<ApiException.Offline> { client.get("/x") }
            client.setNetworkAvailable(true)
            client.resetCircuitBreakers()
            assertEquals(200.toUShort(), client.get("/x").status)

            client.shutdown()
            assertFailsWith<ApiException.Cancelled> { client.get("/x") }
        }
    }

    @Test
    fun `a closed client refuses calls instead of touching freed memory`() {
        val client = RobustClient(fastConfig(fleet.backends))
        client.close()
        client.close()   // idempotent
        assertFailsWith<IllegalStateException> { client.serviceStatus() }
        assertFailsWith<IllegalStateException> { runBlocking { client.get("/x") } }
    }
}
