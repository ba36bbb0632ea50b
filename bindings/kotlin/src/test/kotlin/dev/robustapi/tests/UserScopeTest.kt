// Two users on one device (issue 12): user scopes (setUserScope, clearUserData) with a Kotlin
// HeaderProvider that answers with the credentials of the scope it is asked for. Alice's cached
// profile is never served to Bob, and her queued transfer waits while Bob is current, then goes out
// with her credentials.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.ApiRequest
import dev.robustapi.ApiResponse
import dev.robustapi.CachePolicy
import dev.robustapi.HeaderProvider
import dev.robustapi.HttpMethod
import dev.robustapi.QueryParam
import dev.robustapi.QueueListener
import dev.robustapi.RobustClient
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.Collections
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNull
import kotlin.test.assertTrue

/**
 * The app's token store as a [HeaderProvider]: `Authorization` for the user `scope`, nothing without
 * a user. Records every call with the user the test had made current at that moment ([switch]).
 */
class ScopedProvider : HeaderProvider {
    data class Call(val method: HttpMethod, val path: String, val scope: String?, val current: String?)

    private val tokens = mapOf("alice" to "Bearer ALICE-TOKEN", "bob" to "Bearer BOB-TOKEN")
    @Volatile private var current: String? = null
    private val asked = Collections.synchronizedList(mutableListOf<Call>())

    override fun headersFor(method: HttpMethod, path: String, scope: String?): Map<String, String> {
        asked.add(Call(method, path, scope, current))
        return tokens[scope]?.let { mapOf("Authorization" to it) } ?: emptyMap()
    }

    /** Makes [user] current, for the test's records first, then for the client. */
    fun switch(client: RobustClient, user: String?) {
        current = user
        client.setUserScope(user)
    }

    /** Calls so far, for [path] (compared without the query) or every path. */
    fun calls(path: String? = null): List<Call> = synchronized(asked) {
        asked.filter { path == null || it.path.substringBefore('?') == path }
    }
}

class UserScopeTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(1) }
    @AfterEach fun stopFleet() = fleet.close()

    private fun get(path: String, cache: CachePolicy? = null) =
        ApiRequest(method = HttpMethod.GET, path = path, cache = cache)

    /** The fleet's per-path hit counter echoed in a `/cache/...` body. */
    private fun n(r: ApiResponse): Int =
        Regex(""""n"\s*:\s*(\d+)""").find(r.body.decodeToString())?.groupValues?.get(1)?.toInt()
            ?: error("no \"n\" in ${r.body.decodeToString()}")

    @Test
    fun `two users never share cache entries`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val provider = ScopedProvider()
            client.setHeaderProvider(provider)
            val me = "/cache/me?cc=max-age%3D600"

            assertNull(client.currentUserScope())
            provider.switch(client, "alice")
            assertEquals("alice", client.currentUserScope())
            val first = client.get(me)
            assertFalse(first.fromCache, "$first")
            assertEquals(1, n(first))
            val again = client.get(me)
            assertTrue(again.fromCache, "Alice's own entry: $again")
            assertContentEquals(first.body, again.body)
            assertEquals(1L, fleet.hits(0, "/cache/me"))
            assertTrue(provider.calls("/cache/me").any { it.scope == "alice" }, "${provider.calls()}")

            provider.switch(client, "bob")
            assertEquals("bob", client.currentUserScope())
            val miss = assertFailsWith<ApiException.NotCached> { client.request(get(me, CachePolicy.CACHE_ONLY)) }
            assertEquals("GET /cache/me", miss.key, "the key has no query")
            assertEquals(1L, fleet.hits(0, "/cache/me"), "CacheOnly sent a request")
            val bob = client.get(me)
            assertFalse(bob.fromCache, "Bob was served Alice's cached profile: $bob")
            assertEquals(2, n(bob))
            assertEquals(2L, fleet.hits(0, "/cache/me"))
            val bobCalls = provider.calls("/cache/me").filter { it.current == "bob" }
            assertTrue(bobCalls.isNotEmpty() && bobCalls.all { it.scope == "bob" }, "${provider.calls()}")

            provider.switch(client, "alice")
            val back = client.get(me)
            assertTrue(back.fromCache, "Alice's entry after switching back: $back")
            assertContentEquals(first.body, back.body)
            assertEquals(2L, fleet.hits(0, "/cache/me"))

            // Logout: Alice's entries are gone, Bob's are untouched.
            client.clearUserData("alice")
            assertFailsWith<ApiException.NotCached> { client.request(get(me, CachePolicy.CACHE_ONLY)) }
            provider.switch(client, "bob")
            val kept = client.request(get(me, CachePolicy.CACHE_ONLY))
            assertTrue(kept.fromCache, "$kept")
            assertEquals(2, n(kept))
            assertEquals(2L, fleet.hits(0, "/cache/me"))
            provider.switch(client, null)
            assertNull(client.currentUserScope())
        }
    }

    @Test
    fun `a queued transfer waits for its user and goes with her credentials`() = runBlocking<Unit> {
        val delivered = Collections.synchronizedList(mutableListOf<Pair<String, Int>>())
        val dead = Collections.synchronizedList(mutableListOf<String>())
        val cfg = fastConfig(fleet.backends) { queue = queue.copy(retryBaseDelayMs = 20, retryMaxDelayMs = 100) }
        RobustClient(cfg).use { client ->
            val provider = ScopedProvider()
            client.setHeaderProvider(provider)
            client.setQueueListener(object : QueueListener {
                override fun onDelivered(id: String, response: ApiResponse) { delivered.add(id to response.status) }
                override fun onDeadLettered(id: String, reason: String) { dead.add("$id: $reason") }
            })
            fun deliveredIds() = synchronized(delivered) { delivered.map { it.first } }

            provider.switch(client, "alice")
            client.setNetworkAvailable(false)
            assertFailsWith<ApiException.InvalidRequest>("a credential in the query is never queued") {
                client.enqueue(ApiRequest(
                    method = HttpMethod.POST, path = "/transfer",
                    query = listOf(QueryParam(name = "api_key", value = "K-123")),
                ))
            }
            val transfer = client.enqueue(ApiRequest(
                method = HttpMethod.POST,
                path = "/transfer",
                body = """{"to":"carol","amount":100}""".toByteArray(),
                headers = mapOf("content-type" to "application/json"),
            ))
            assertEquals(listOf(transfer), client.queuedRequests().map { it.id })

            // Bob logs in on the same device; the network comes back.
            provider.switch(client, "bob")
            assertEquals(emptyList<String>(), client.queuedRequests().map { it.id }, "Bob sees Alice's queue")
            client.setNetworkAvailable(true)
            client.flushQueue()
            Thread.sleep(300)
            assertTrue(delivered.isEmpty() && dead.isEmpty(), "while Bob is current: delivered=$delivered dead=$dead")
            assertEquals(emptyList<String>(), client.queueOutcomes().filter { it.delivered }.map { it.id })
            assertEquals(0L, fleet.hits(0, "/transfer"), "sent while Bob is current")

            // Bob's own writes do go out meanwhile (the queue is running).
            val note = client.enqueue(ApiRequest(
                method = HttpMethod.POST, path = "/bob-note",
                body = "{}".toByteArray(), headers = mapOf("content-type" to "application/json"),
            ))
            waitUntil("Bob's note delivered", 5_000, { "${client.serviceStatus().queue}" }) { delivered.isNotEmpty() }
            client.flushQueue()
            Thread.sleep(300)
            assertEquals(listOf(note), deliveredIds())
            assertTrue(dead.isEmpty(), "$dead")
            assertEquals(listOf(note to true), client.queueOutcomes().map { it.id to it.delivered })
            assertEquals(0L, fleet.hits(0, "/transfer"), "sent while Bob is current")
            assertEquals(emptyList<ScopedProvider.Call>(), provider.calls("/transfer"), "asked for the transfer while Bob is current")
            assertEquals(emptyList<ScopedProvider.Call>(), provider.calls().filter { it.scope == "alice" && it.current == "bob" })
            assertEquals(setOf<String?>("bob"), provider.calls("/bob-note").map { it.scope }.toSet())
            val q = client.serviceStatus().queue
            assertEquals(1L to 0L, q.pending to q.deadLettered, "waiting, not dead-lettered: $q")
            assertTrue(client.deadLetters().isEmpty())

            // Alice is back: her transfer goes, with her credentials.
            provider.switch(client, "alice")
            waitUntil("Alice's transfer delivered", 5_000, { "delivered=$delivered ${client.serviceStatus().queue}" }) {
                transfer in deliveredIds()
            }
            assertEquals(1L, fleet.hits(0, "/transfer"))
            assertEquals(
                listOf(ScopedProvider.Call(HttpMethod.POST, "/transfer", "alice", "alice")),
                provider.calls("/transfer"),
            )
            assertEquals(emptyList<ScopedProvider.Call>(), provider.calls().filter { it.scope == "alice" && it.current == "bob" })
            waitUntil("the transfer's outcome", 3_000) { client.queueOutcomes().any { it.id == transfer && it.delivered } }
            assertTrue(client.queueOutcomes().all { it.id == transfer }, "Alice sees only her outcomes")
            assertEquals(200, synchronized(delivered) { delivered.first { it.first == transfer }.second })
            assertTrue(client.queuedRequests().isEmpty())
        }
    }
}
