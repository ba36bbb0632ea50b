// WebSockets through the Kotlin binding: a WebSocketListener implemented in Kotlin receives the echo
// (text and binary) on a background thread, and the socket reconnects by itself after its server
// restarts, delivering what was sent meanwhile. Servers: `test-fleet --websockets` (WebSocket echo
// backends that also answer /api/health), driven through their control API.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.RobustClient
import dev.robustapi.WebSocketListener
import dev.robustapi.WebSocketState
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.net.HttpURLConnection
import java.net.URI
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

/** `test-fleet --websockets`: N WebSocket echo backends and their control API. */
class WsFleet private constructor(private val process: Process, val backends: List<String>, private val control: String) :
    AutoCloseable {
    companion object {
        fun start(n: Int = 1): WsFleet {
            val bin = System.getProperty("robustapi.fleet") ?: error("system property robustapi.fleet is not set")
            val process = ProcessBuilder(bin, "--backends", n.toString(), "--websockets")
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start()
            val reader = process.inputStream.bufferedReader()
            val line = try {
                CompletableFuture.supplyAsync { reader.readLine() }.get(15, TimeUnit.SECONDS)
            } catch (e: Exception) {
                process.destroyForcibly()
                throw IllegalStateException("test-fleet printed no line within 15 s", e)
            } ?: error("test-fleet exited before printing its addresses")
            val urls = Regex(""""ws_backends":\[([^\]]*)\]""").find(line)?.groupValues?.get(1)
                ?.let { list -> Regex(""""([^"]+)"""").findAll(list).map { it.groupValues[1] }.toList() }
            val control = Regex(""""ws_control":"([^"]+)"""").find(line)?.groupValues?.get(1)
            if (urls == null || control == null || urls.size != n) {
                process.destroyForcibly()
                error("unexpected test-fleet line: $line")
            }
            return WsFleet(process, urls, control)
        }
    }

    /** One control call (see `WsControl` in tests/support/ws_server.rs). */
    fun call(method: String, path: String, body: String? = null): String {
        val c = URI(control + path).toURL().openConnection() as HttpURLConnection
        try {
            c.requestMethod = method
            c.connectTimeout = 5_000
            c.readTimeout = 5_000
            c.setRequestProperty("Connection", "close")
            if (body != null || method == "POST") {
                c.doOutput = true
                c.outputStream.use { it.write((body ?: "").toByteArray()) }
            }
            val code = c.responseCode
            val text = (if (code < 400) c.inputStream else c.errorStream)?.use { it.readBytes().decodeToString() } ?: ""
            check(code == 200) { "$method $path: HTTP $code $text" }
            return text
        } finally {
            c.disconnect()
        }
    }

    override fun close() {
        runCatching { process.outputStream.close() }   // EOF on stdin: the fleet exits
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(5, TimeUnit.SECONDS)
        process.inputStream.close()
    }
}

/** Records every callback with the name of the thread that delivered it. */
class SocketRecorder : WebSocketListener {
    val events = CopyOnWriteArrayList<Pair<Any, String>>()
    private fun add(e: Any) { events += e to Thread.currentThread().name }

    data class Open(val backend: String)
    data class Text(val text: String)
    class Binary(val data: ByteArray)
    data class State(val state: WebSocketState)
    data class Error(val error: ApiException)
    data class Closed(val code: UShort, val reason: String)

    override fun onOpen(backend: String) = add(Open(backend))
    override fun onText(text: String) = add(Text(text))
    override fun onBinary(data: ByteArray) = add(Binary(data))
    override fun onStateChange(state: WebSocketState) = add(State(state))
    override fun onError(error: ApiException) = add(Error(error))
    override fun onClosed(code: UShort, reason: String) = add(Closed(code, reason))

    inline fun <reified T> of(): List<T> = events.mapNotNull { it.first as? T }
}

class WebSocketTest {
    private lateinit var fleet: WsFleet

    @BeforeEach fun startFleet() { fleet = WsFleet.start(1) }
    @AfterEach fun stopFleet() = fleet.close()

    private fun config() = fastConfig(fleet.backends).copy(
        wsHeartbeatIntervalMs = 200uL,
        wsPongTimeoutMs = 1_000uL,
        wsReconnectBaseDelayMs = 50uL,
        wsReconnectMaxDelayMs = 400uL,
    )

    @Test
    fun `echo through a Kotlin listener, on a background thread`() {
        RobustClient(config()).use { client ->
            val rec = SocketRecorder()
            val conn = client.connectWebsocket("/ws/chat", rec)
            conn.sendText("sent before open")   // buffered, delivered first
            // The state is Open as soon as the socket is; on_open follows on the listener's thread.
            waitUntil("open", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Open>().isNotEmpty() }
            assertEquals(WebSocketState.OPEN, conn.state())
            assertEquals(listOf(SocketRecorder.Open(fleet.backends[0])), rec.of<SocketRecorder.Open>())
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
            assertEquals(fleet.backends[0], status.backend)
            waitUntil("a pong RTT") { conn.status().lastPongRttMs != null }

            conn.close(1000u, "bye")
            waitUntil("closed") { rec.of<SocketRecorder.Closed>().isNotEmpty() }
            assertEquals(listOf(SocketRecorder.Closed(1000u, "bye")), rec.of<SocketRecorder.Closed>())
            assertEquals(WebSocketState.CLOSED, conn.state())
            assertFailsWith<ApiException.WebSocketClosed> { conn.sendText("too late") }
            assertFailsWith<ApiException.InvalidRequest> { conn.close(1006u, "reserved code") }
            conn.destroy()
        }
    }

    @Test
    fun `reconnects after a server restart and delivers what was sent meanwhile`() {
        RobustClient(config()).use { client ->
            val rec = SocketRecorder()
            val conn = client.connectWebsocket("/ws", rec)
            waitUntil("open", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Open>().isNotEmpty() }

            fleet.call("POST", "/ws/0/kill")
            waitUntil("reconnecting", 3_000, { "${rec.events}" }) { conn.state() == WebSocketState.RECONNECTING }
            repeat(3) { conn.sendText("while down $it") }
            assertEquals(3u, conn.status().bufferedMessages)
            fleet.call("POST", "/ws/0/start")

            val expected = (0 until 3).map { "while down $it" }
            waitUntil("echoes after reconnect", 5_000, { "${rec.events}" }) { rec.of<SocketRecorder.Text>().size == 3 }
            assertEquals(expected, rec.of<SocketRecorder.Text>().map { it.text })
            assertEquals(expected, fleet.call("GET", "/ws/0/received").lines())
            assertEquals(2, rec.of<SocketRecorder.Open>().size)
            assertEquals(1u, conn.status().reconnects)
            assertTrue(rec.of<SocketRecorder.State>().any { it.state == WebSocketState.RECONNECTING })
            assertNotNull(rec.of<SocketRecorder.Error>().firstOrNull(), "the drop was reported")
            conn.destroy()
        }
    }
}
