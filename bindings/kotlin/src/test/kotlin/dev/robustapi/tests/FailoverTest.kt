// (b) The preferred backend dies: calls keep succeeding on another one, its breaker is OPEN in
// serviceStatus(), and resetCircuitBreakers() closes it.
package dev.robustapi.tests

import dev.robustapi.BreakerState
import dev.robustapi.RobustClient
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNotEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

class FailoverTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `preferred backend killed - traffic fails over, breaker opens, reset closes it`() = runBlocking<Unit> {
        // A long open period so the breaker cannot move on its own while we look at it. Frequent probes:
        // under CPU load the latency ranking may move traffic off the dead backend before five
        // requests have failed on it, and then only probes keep counting its failures.
        val cfg = fastConfig(fleet.backends) {
            breaker = breaker.copy(openMs = 60_000)
            health = health.copy(intervalMs = 100)
        }
        RobustClient(cfg).use { client ->
            client.awaitProbed()
            val preferred = assertNotNull(client.serviceStatus().preferredBackend)
            val p = fleet.index(preferred)

            fleet.fault(p, "down")   // connection refused from now on
            repeat(30) { i ->
                val r = client.get("/item/$i")
                assertEquals(200, r.status)
                assertNotEquals(preferred, r.backend, "call $i")
                assertEquals(fleet.backends[r.headers.getValue("x-backend").toInt()], r.backend)
            }
            waitUntil("breaker of the dead backend OPEN", 3_000, { "${client.serviceStatus()}" }) {
                client.serviceStatus().backends[p].breakerState == BreakerState.OPEN
            }

            val s = client.serviceStatus()
            val dead = s.backends[p]
            assertFalse(dead.healthy, "$s")
            assertTrue(dead.lastError.orEmpty().contains("connect"), "$s")
            assertNotEquals(preferred, s.preferredBackend, "$s")
            assertTrue(s.backends.filterIndexed { i, _ -> i != p }.all { it.breakerState == BreakerState.CLOSED }, "$s")
            // At most the threshold's worth of calls paid for a failover (fewer when probes or the
            // latency ranking got there first); none after the breaker opened.
            assertTrue(s.counters.failovers <= 6L, "failovers ${s.counters.failovers}")
            assertEquals(30L, s.counters.requests)

            // Once open, the dead backend is skipped: the calls are first-try successes elsewhere.
            val r = client.get("/skip")
            assertEquals(1, r.attempts)

            fleet.fault(p, "ok")
            client.resetCircuitBreakers()
            val after = client.serviceStatus()
            assertTrue(after.backends.all { it.breakerState == BreakerState.CLOSED }, "$after")
            assertTrue(after.backends[p].healthy, "$after")
            assertEquals(0, after.backends[p].consecutiveFailures, "$after")
            // Traffic may reach it again: a burst of calls lands on it (it is healthy and preferred
            // again, or at least selectable) — check via the fleet's own hit counter.
            fleet.resetHits(p)
            fleet.faultAll("down")
            fleet.fault(p, "ok")
            repeat(3) { assertEquals(preferred, client.get("/again/$it").backend) }
            assertEquals(3L, fleet.hits(p, null) - fleet.hits(p, "/api/health"))
        }
    }
}
