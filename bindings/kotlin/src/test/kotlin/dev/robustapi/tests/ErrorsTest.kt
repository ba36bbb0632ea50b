// (c) Rust errors arrive as the matching subclass of the sealed Kotlin ApiException, with their fields.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.ApiRequest
import dev.robustapi.ClientConfig
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
        assertFailsWith<ApiException.InvalidConfig> { RobustClient(fastConfig(fleet.backends) { timeouts = timeouts.copy(connectMs = 0) }) }
        assertFailsWith<ApiException.InvalidConfig> { RobustClient(fastConfig(fleet.backends) { workerThreads = 0 }) }

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
    fun `a negative number in any group is InvalidConfig`() {
        // The exported numbers are Int (i32): a negative one crosses the binding and Rust rejects it.
        fun case(field: String, tweak: ClientConfig.() -> Unit) = field to tweak
        val cases = listOf(
            case("connect_ms") { timeouts = timeouts.copy(connectMs = -1) },
            case("request_ms") { timeouts = timeouts.copy(requestMs = -1) },
            case("max_retries") { retry = retry.copy(maxRetries = -1) },
            case("hedge_after_ms") { retry = retry.copy(hedgeAfterMs = -1) },
            case("open_ms") { breaker = breaker.copy(openMs = -1) },
            case("max_bytes") { cache = cache.copy(maxBytes = -1) },
            case("max_entries") { queue = queue.copy(maxEntries = -1) },
            case("max_buffered_messages") { websocket = websocket.copy(maxBufferedMessages = -1) },
        )
        for ((field, tweak) in cases) {
            val e = assertFailsWith<ApiException.InvalidConfig>(field) {
                RobustClient(ClientConfig(backends = fleet.backends).apply(tweak)).close()
            }
            assertContains(e.reason, field)
        }
    }

    @Test
    fun `all backends down throws AllBackendsUnavailable, then fails fast once every breaker is open`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends) { breaker = breaker.copy(openMs = 60_000) }).use { client ->
            client.awaitProbed()
            fleet.faultAll("down")
            val e = assertFailsWith<ApiException.AllBackendsUnavailable> { client.get("/x") }
            assertTrue(e.attempts >= 3, "tried every backend: $e")
            assertContains(e.lastError.lowercase(), "connect")
            assertContains(e.toString(), e.lastError)

            // Keep calling until every breaker is open: then nothing is sent and the call fails at once.
            var last: ApiException.AllBackendsUnavailable = e
            repeat(10) { last = assertFailsWith { client.get("/x") } }
            assertEquals(0, last.attempts, "$last")
            val t0 = System.nanoTime()
            val fast = assertFailsWith<ApiException.AllBackendsUnavailable> { client.get("/x") }
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertEquals(0, fast.attempts)
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
            assertEquals(404, http.status)
            assertEquals("error 404", http.body.decodeToString())
            assertTrue(http.backend in fleet.backends, http.backend)

            fleet.faultAll("blackhole")
            val t = assertFailsWith<ApiException.Timeout> {
                client.request(ApiRequest(HttpMethod.GET, "/hang", timeoutMs = 150, retry = RetryMode.NEVER))
            }
            assertEquals(150, t.timeoutMs)
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
            assertEquals(200, client.get("/x").status)

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
