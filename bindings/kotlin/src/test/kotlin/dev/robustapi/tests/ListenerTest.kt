// (e) A StatusListener implemented in Kotlin hears breaker changes (made by Rust request tasks and by
// the Rust health-probe task) and network changes, on a background thread.
package dev.robustapi.tests

import dev.robustapi.BreakerState
import dev.robustapi.RobustClient
import dev.robustapi.StatusEvent
import dev.robustapi.StatusListener
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.test.assertEquals
import kotlin.test.assertNotEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

/** Records every event with the name of the thread that delivered it. */
class Recorder : StatusListener {
    val events = CopyOnWriteArrayList<Pair<StatusEvent, String>>()
    override fun onEvent(event: StatusEvent) {
        events += event to Thread.currentThread().name
    }

    fun breakerMoves(backend: String): List<BreakerState> = events.mapNotNull { (e, _) ->
        (e as? StatusEvent.BreakerChanged)?.takeIf { it.backend == backend }?.current
    }

    fun network(): List<Boolean> = events.mapNotNull { (e, _) -> (e as? StatusEvent.NetworkChanged)?.available }
}

class ListenerTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `breaker events from request and probe tasks, network events, delivered off the caller's thread`() = runBlocking<Unit> {
        // breakerOpenMs = 500. Frequent probes: under CPU load the latency ranking may move traffic off
        // the dead backend before five requests failed on it; the probes then finish the job.
        RobustClient(fastConfig(fleet.backends) { health = health.copy(intervalMs = 100) }).use { client ->
            client.awaitProbed()
            val rec = Recorder()
            val opened = CountDownLatch(1)
            client.addStatusListener(rec)
            client.addStatusListener(object : StatusListener {
                override fun onEvent(event: StatusEvent) {
                    if (event is StatusEvent.BreakerChanged && event.current == BreakerState.OPEN) opened.countDown()
                }
            })
            val preferred = assertNotNull(client.serviceStatus().preferredBackend)
            fleet.fault(fleet.index(preferred), "down")
            repeat(10) { client.get("/e/$it") }   // failures on `preferred` (request tasks, probe task) open its breaker
            assertTrue(opened.await(2, TimeUnit.SECONDS), "no BreakerChanged(current = OPEN) within 2 s: ${rec.events}")
            val first = rec.events.first { it.first is StatusEvent.BreakerChanged }.first as StatusEvent.BreakerChanged
            assertEquals(StatusEvent.BreakerChanged(preferred, previous = BreakerState.CLOSED, current = BreakerState.OPEN), first)

            // Recovery is driven by the Rust probe task alone: no calls from here on.
            fleet.fault(fleet.index(preferred), "ok")
            waitUntil("probe closes the breaker", 5_000, { "${rec.breakerMoves(preferred)}" }) {
                rec.breakerMoves(preferred).lastOrNull() == BreakerState.CLOSED
            }
            val moves = rec.breakerMoves(preferred)
            assertEquals(listOf(BreakerState.HALF_OPEN, BreakerState.CLOSED), moves.takeLast(2), "$moves")
            assertTrue(rec.events.any { (e, _) -> e == StatusEvent.BackendHealthChanged(preferred, false) }, "${rec.events}")
            waitUntil("BackendHealthChanged(healthy = true)", 3_000, { "${rec.events}" }) {
                rec.events.any { (e, _) -> e == StatusEvent.BackendHealthChanged(preferred, true) }
            }

            client.setNetworkAvailable(false)
            client.setNetworkAvailable(false)   // no change, no event
            client.setNetworkAvailable(true)
            waitUntil("two NetworkChanged events", 3_000, { "${rec.network()}" }) { rec.network().size >= 2 }
            Thread.sleep(50)
            assertEquals(listOf(false, true), rec.network())

            val me = Thread.currentThread().name
            assertTrue(rec.events.all { (_, thread) -> thread != me }, "delivered on the caller's thread: ${rec.events}")
        }
    }

    @Test
    fun `a throwing listener does not stop delivery to the others`() {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val rec = Recorder()
            client.addStatusListener(object : StatusListener {
                override fun onEvent(event: StatusEvent) = throw IllegalStateException("listener bug")
            })
            client.addStatusListener(rec)
            client.setNetworkAvailable(false)
            client.setNetworkAvailable(true)
            waitUntil("both events reach the second listener", 3_000, { "${rec.events}" }) { rec.network() == listOf(false, true) }
            assertTrue(client.serviceStatus().networkAvailable, "client still works")
        }
    }
}
