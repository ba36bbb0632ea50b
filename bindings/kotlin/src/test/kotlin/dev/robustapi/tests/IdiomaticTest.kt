// The hand-written layer (bindings/kotlin/src/main/kotlin): status events and service status as
// flows, upload progress as a flow, `use {}`; and error texts are the crate's Display text.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.RobustClient
import dev.robustapi.StatusEvent
import dev.robustapi.StatusListener
import dev.robustapi.UploadEvent
import dev.robustapi.UploadRequest
import dev.robustapi.defaultClientConfig
import dev.robustapi.serviceStatusFlow
import dev.robustapi.statusEvents
import dev.robustapi.uploadFileFlow
import kotlinx.coroutines.async
import kotlinx.coroutines.cancel
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertIs
import kotlin.test.assertTrue

class IdiomaticTest {
    private lateinit var fleet: Fleet

    @TempDir lateinit var dir: File

    @BeforeEach fun startFleet() { fleet = Fleet.start(2) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `error text is the Rust Display text and the variants keep their fields`() = runBlocking<Unit> {
        val bad = assertFailsWith<ApiException.InvalidConfig> { RobustClient(defaultClientConfig(emptyList())) }
        assertEquals("invalid configuration: ${bad.reason}", bad.toString())
        // `message` (what Kotlin code and stack traces read) is the same Display text, not a field dump.
        assertEquals(bad.toString(), bad.message)
        assertEquals(bad.toString(), bad.localizedMessage)
        RobustClient(fastConfig(fleet.backends)).use { client ->
            fleet.faultAll("status 404")
            val e = assertFailsWith<ApiException.Http> { client.get("/api/items") }
            assertEquals(404, e.status)
            assertEquals("HTTP 404 from ${e.backend}", e.toString())
            assertEquals("HTTP 404 from ${e.backend}", e.message)
        }
    }

    @Test
    fun `status events arrive through a Flow`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val got = async(Dispatchers.Default) {
                client.statusEvents().filterIsInstance<StatusEvent.NetworkChanged>().take(2).toList()
            }
            // The listener is registered when the flow starts collecting; wait for that.
            Thread.sleep(200)
            client.setNetworkAvailable(false)
            client.setNetworkAvailable(true)
            val events = withTimeout(5_000) { got.await() }
            assertEquals(listOf(false, true), events.map { it.available })
        }
    }

    @Test
    fun `a removed status listener gets no more events`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val removedSeen = java.util.concurrent.atomic.AtomicInteger()
            val keptSeen = java.util.concurrent.LinkedBlockingQueue<StatusEvent>()
            client.addStatusListener(object : StatusListener {
                override fun onEvent(event: StatusEvent) { keptSeen.add(event) }
            })
            val sub = client.addStatusListener(object : StatusListener {
                override fun onEvent(event: StatusEvent) { removedSeen.incrementAndGet() }
            })
            assertTrue(sub.isActive())
            sub.remove()
            assertFalse(sub.isActive())
            client.setNetworkAvailable(false)
            client.setNetworkAvailable(true)
            repeat(2) {
                assertIs<StatusEvent.NetworkChanged>(keptSeen.poll(5, java.util.concurrent.TimeUnit.SECONDS))
            }
            assertEquals(0, removedSeen.get())
        }
    }

    @Test
    fun `serviceStatusFlow follows the status`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val scope = CoroutineScope(Dispatchers.Default)
            try {
                val status = client.serviceStatusFlow(scope)
                assertTrue(status.value.networkAvailable)
                client.setNetworkAvailable(false)
                withTimeout(5_000) { status.first { !it.networkAvailable } }
            } finally {
                scope.cancel()
            }
        }
    }

    @Test
    fun `upload progress is a Flow ending with the response`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val file = File(dir, "f.bin").apply { writeBytes(ByteArray(3 shl 20) { (it % 251).toByte() }) }
            val events = client.uploadFileFlow(UploadRequest(path = "/upload", filePath = file.path)).toList()
            val done = assertIs<UploadEvent.Done>(events.last())
            assertEquals(201, done.response.status)
            val progress = events.dropLast(1).map { assertIs<UploadEvent.Progress>(it) }
            assertTrue(progress.isNotEmpty())
            val last = progress.last()
            assertEquals(last.totalBytes, last.bytesSent, "ends at the total")
            assertTrue(last.totalBytes > file.length(), "the multipart body: the file and its framing")
        }
    }

    @Test
    fun `use closes the client`() {
        val client = RobustClient(fastConfig(fleet.backends))
        client.use { assertTrue(it.serviceStatus().networkAvailable) }
        assertFailsWith<IllegalStateException> { client.serviceStatus() }
    }
}
