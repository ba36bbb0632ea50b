// Issue 15: attempt records and log records reach listeners implemented in Kotlin, on the SDK's
// own threads; the app's life cycle and network type cross the binding.
package dev.robustapi.tests

import dev.robustapi.AppState
import dev.robustapi.AttemptListener
import dev.robustapi.AttemptOutcome
import dev.robustapi.AttemptReason
import dev.robustapi.AttemptRecord
import dev.robustapi.LogLevel
import dev.robustapi.LogListener
import dev.robustapi.LogRecord
import dev.robustapi.RobustClient
import dev.robustapi.clearLogListener
import dev.robustapi.setLogListener
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.concurrent.CopyOnWriteArrayList
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

class ObserveTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(3) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `attempt records show a failover, delivered off the caller's thread`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            client.awaitProbed()
            val records = CopyOnWriteArrayList<Pair<AttemptRecord, String>>()
            client.setAttemptListener(object : AttemptListener {
                override fun onAttempt(record: AttemptRecord) {
                    records += record to Thread.currentThread().name
                }
            })
            val preferred = assertNotNull(client.serviceStatus().preferredBackend)
            fleet.fault(fleet.index(preferred), "down")
            val r = client.get("/items/1?page=2")
            assertEquals(2, r.attempts)
            waitUntil("two attempt records", 3_000, { "$records" }) { records.size >= 2 }
            val (first, second) = records.map { it.first }
            assertEquals(Triple(1, AttemptReason.FIRST, AttemptOutcome.CONNECT_FAILED), Triple(first.attempt, first.reason, first.outcome))
            assertEquals(Triple(2, AttemptReason.FAILOVER, 200), Triple(second.attempt, second.reason, second.status))
            assertEquals("/items/1", second.path)
            // (JNA names the attached native thread `Thread-N`; it is never the caller's.)
            val caller = Thread.currentThread().name
            assertTrue(records.none { it.second == caller }, "$records")
        }
    }

    @Test
    fun `log records reach a Kotlin listener`() = runBlocking<Unit> {
        val logs = CopyOnWriteArrayList<LogRecord>()
        assertTrue(setLogListener(object : LogListener {
            override fun onLog(record: LogRecord) { logs += record }
        }, LogLevel.INFO))
        try {
            RobustClient(fastConfig(fleet.backends)).use { client ->
                client.setAppState(AppState.BACKGROUND)
                waitUntil("the app-state record", 3_000, { "$logs" }) { logs.any { "Background" in it.message } }
                val r = logs.first { "Background" in it.message }
                assertEquals(LogLevel.INFO, r.level)
                assertTrue(r.target.startsWith("robust_api"))
                assertEquals(AppState.BACKGROUND, client.serviceStatus().appState)
                client.setNetworkMetered(true)
                assertTrue(client.serviceStatus().networkMetered)
                client.setAppState(AppState.FOREGROUND)
            }
        } finally {
            clearLogListener()
        }
    }
}
