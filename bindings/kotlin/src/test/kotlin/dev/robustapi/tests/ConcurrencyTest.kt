// (d) `suspend` calls from coroutines: many concurrent calls on Dispatchers.Default, real overlap,
// and cancellation of a coroutine cancels the Rust call.
package dev.robustapi.tests

import dev.robustapi.RobustClient
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class ConcurrencyTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `500 concurrent calls on Dispatchers Default each get their own response`() = runBlocking<Unit> {
        // A generous timeout: 500 calls queue up on two cores (more so on a loaded machine); this test
        // is about marshalling and concurrency, not timeouts.
        RobustClient(fastConfig(fleet.backends) { timeouts = timeouts.copy(requestMs = 20_000) }).use { client ->
            val n = 500
            val responses = (0 until n).map { i ->
                async(Dispatchers.Default) {
                    // Mixed kinds: JSON echoing the path, and byte bodies of a call-specific size.
                    if (i % 2 == 0) i to client.get("/call/$i") else i to client.get("/bytes/${i * 7}")
                }
            }.awaitAll()
            assertEquals(n, responses.size)
            for ((i, r) in responses) {
                assertEquals(200, r.status, "call $i")
                if (i % 2 == 0) {
                    assertTrue(r.body.decodeToString().contains("\"path\":\"/call/$i\""), "call $i got ${r.body.decodeToString()}")
                } else {
                    assertContentEquals(ByteArray(i * 7) { patternByte(it) }, r.body, "call $i")
                }
            }
            assertEquals(n.toLong(), client.serviceStatus().counters.requests)
            assertEquals(n.toLong(), fleet.totalHits() - fleet.totalHits("/api/health"))
        }
    }

    @Test
    fun `concurrent calls really overlap - 60 calls to 200 ms backends take far less than 12 s`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            client.awaitProbed()
            fleet.faultAll("slow 200")
            val t0 = System.nanoTime()
            val rs = (0 until 60).map { i -> async(Dispatchers.Default) { client.get("/slow/$i") } }.awaitAll()
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertTrue(rs.all { it.status == 200 })
            assertTrue(ms < 3_000, "60 x 200 ms calls took $ms ms: not concurrent")
        }
    }

    @Test
    fun `cancelling the coroutine cancels the call promptly and the client stays usable`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends) { timeouts = timeouts.copy(requestMs = 30_000) }).use { client ->
            client.awaitProbed()
            fleet.faultAll("blackhole")
            val t0 = System.nanoTime()
            assertFailsWith<TimeoutCancellationException> { withTimeout(300) { client.get("/never") } }
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertTrue(ms < 2_000, "cancellation took $ms ms")
            fleet.faultAll("ok")
            assertEquals(200, client.get("/after").status)
        }
    }
}
