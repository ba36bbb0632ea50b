// WebSockets through the Kotlin binding: a WebSocketListener implemented in Kotlin receives the echo
// (text and binary) on a background thread, and the socket reconnects by itself after its server
// restarts, delivering what was sent meanwhile. Servers: `Fleet.start(1, websockets = true)` (Support.kt:
// `test-fleet --websockets`, WebSocket echo backends that also answer /api/health), driven through
// their control API (`Fleet.wsCall`).
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.RobustClient
import dev.robustapi.WebSocketListener
import dev.robustapi.WebSocketState
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.concurrent.CopyOnWriteArrayList
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

/** Records every callback with the name of the thread that delivered it. */
class SocketRecorder : WebSocketListener {
    val events = CopyOnWriteArrayList<Pair<Any, String>>()
    private fun add(e: Any) { events += e to Thread.currentThread().name }

    data class Open(val backend: String)
    data class Text(val text: String)
    class Binary(val data: ByteArray)
    data class State(val state: WebSocketState)
    data class Error(val error: ApiException)
    data class Closed(val code: Int, val reason: String)

    override fun onOpen(backend: String) = add(Open(backend))
    override fun onText(text: String) = add(Text(text))
    override fun onBinary(data: ByteArray) = add(Binary(data))
    override fun onStateChange(state: WebSocketState) = add(State(state))
    override fun onError(error: ApiException) = add(Error(error))
    override fun onClosed(code: Int, reason: String) = add(Closed(code, reason))

    inline fun <reified T> of(): List<T> = events.mapNotNull { it.first as? T }
}

class WebSocketTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(1, websockets = true) }
    @AfterEach fun stopFleet() = fleet.close()

    private fun config() = fastConfig(fleet.wsBackends) {
        websocket = websocket.copy(
            heartbeatIntervalMs = 200,
            pongTimeoutMs = 1_000,
            reconnectBaseDelayMs = 50,
            reconnectMaxDelayMs = 400,
        )
    }

    @Test
    fun `echo through a Kotlin listener, on a background thread`() {
        RobustClient(config()).use { client ->
            val rec = SocketRecorder()
            val conn = client.connectWebsocket("/ws/chat", rec)
            conn.sendText("sent before open")   // buffered, delivered first
            // The state is Open as soon as the socket is; on_open follows on the listener's thread.
            waitUntil("open", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Open>().isNotEmpty() }
            assertEquals(WebSocketState.OPEN, conn.state())
            assertEquals(listOf(SocketRecorder.Open(fleet.wsBackends[0])), rec.of<SocketRecorder.Open>())
            conn.sendText("héllo")
            conn.sendBinary(byteArrayOf(0, 1, -1))
            waitUntil("echoes", 5_000, { "${rec.events}" }) {
                rec.of<SocketRecorder.Text>().size == 2 && rec.of<SocketRecorder.Binary>().size == 1
            }
            assertEquals(listOf("sent before open", "héllo"), rec.of<SocketRecorder.Text>().map { it.text })
            assertContentEquals(byteArrayOf(0, 1, -1), rec.of<SocketRecorder.Binary>().single().data)
            val caller = Thread.currentThread().name
            assertTrue(rec.events.none { it.second == caller }, "callbacks run on the connection's own thread")

            val status = client.serviceStatus().sockets.single()
            assertEquals(WebSocketState.OPEN, status.state)
            assertEquals(fleet.wsBackends[0], status.backend)
            waitUntil("a pong RTT") { conn.status().lastPongRttMs != null }

            conn.close(1000, "bye")
            waitUntil("closed") { rec.of<SocketRecorder.Closed>().isNotEmpty() }
            assertEquals(listOf(SocketRecorder.Closed(1000, "bye")), rec.of<SocketRecorder.Closed>())
            assertEquals(WebSocketState.CLOSED, conn.state())
            assertFailsWith<ApiException.WebSocketClosed> { conn.sendText("too late") }
            assertFailsWith<ApiException.InvalidRequest> { conn.close(1006, "reserved code") }
            conn.destroy()
        }
    }

    @Test
    fun `reconnects after a server restart and delivers what was sent meanwhile`() {
        RobustClient(config()).use { client ->
            val rec = SocketRecorder()
            val conn = client.connectWebsocket("/ws", rec)
            waitUntil("open", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Open>().isNotEmpty() }

            fleet.wsCall("POST", "/ws/0/kill")
            waitUntil("reconnecting", 3_000, { "${rec.events}" }) { conn.state() == WebSocketState.RECONNECTING }
            repeat(3) { conn.sendText("while down $it") }
            assertEquals(3, conn.status().bufferedMessages)
            fleet.wsCall("POST", "/ws/0/start")

            val expected = (0 until 3).map { "while down $it" }
            waitUntil("echoes after reconnect", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Text>().size == 3 }
            assertEquals(expected, rec.of<SocketRecorder.Text>().map { it.text })
            assertEquals(expected, fleet.wsCall("GET", "/ws/0/received").lines())
            assertEquals(2, rec.of<SocketRecorder.Open>().size)
            assertEquals(1, conn.status().reconnects)
            assertTrue(rec.of<SocketRecorder.State>().any { it.state == WebSocketState.RECONNECTING })
            assertNotNull(rec.of<SocketRecorder.Error>().firstOrNull(), "the drop was reported")
            conn.destroy()
        }
    }
}
