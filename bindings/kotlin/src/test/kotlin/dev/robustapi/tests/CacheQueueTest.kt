// Response cache (offline reads, fresh hits, clearCache) and the offline request queue, against the
// local test fleet: `/cache/<name>?cc=<Cache-Control>` answers with that header.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.ApiRequest
import dev.robustapi.ApiResponse
import dev.robustapi.HttpMethod
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
import kotlin.test.assertTrue

class CacheQueueTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(1) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun `offline GET is served stale from the cache, an uncached path fails Offline`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val online = client.get("/cache/feed?cc=max-age%3D0")
            assertEquals(200, online.status)
            assertFalse(online.fromCache)

            client.setNetworkAvailable(false)
            val offline = client.get("/cache/feed?cc=max-age%3D0")
            assertTrue(offline.fromCache, "$offline")
            assertTrue(offline.stale, "$offline")
            assertContentEquals(online.body, offline.body)
            assertEquals(1L, fleet.totalHits("/cache/feed"))

            assertFailsWith<ApiException.Offline> { client.get("/cache/never-fetched?cc=max-age%3D60") }
        }
    }

    @Test
    fun `fresh entry is a cache hit until clearCache`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val first = client.get("/cache/f?cc=max-age%3D60")
            assertFalse(first.fromCache)
            val second = client.get("/cache/f?cc=max-age%3D60")
            assertTrue(second.fromCache, "$second")
            assertFalse(second.stale, "$second")
            assertContentEquals(first.body, second.body)
            assertEquals(1L, fleet.totalHits("/cache/f"))

            val cache = client.serviceStatus().cache
            assertTrue(cache.entries >= 1L, "$cache")
            assertTrue(cache.hits >= 1L, "$cache")

            client.clearCache()
            assertEquals(0L, client.serviceStatus().cache.entries)
            val third = client.get("/cache/f?cc=max-age%3D60")
            assertFalse(third.fromCache, "$third")
            assertEquals(2L, fleet.totalHits("/cache/f"))
        }
    }

    @Test
    fun `queued POSTs are delivered in order when the network returns`() = runBlocking<Unit> {
        val delivered = Collections.synchronizedList(mutableListOf<Pair<String, ApiResponse>>())
        val dead = Collections.synchronizedList(mutableListOf<String>())
        val cfg = fastConfig(fleet.backends) { queue = queue.copy(retryBaseDelayMs = 50, retryMaxDelayMs = 200) }
        RobustClient(cfg).use { client ->
            client.setQueueListener(object : QueueListener {
                override fun onDelivered(id: String, response: ApiResponse) { delivered.add(id to response) }
                override fun onDeadLettered(id: String, reason: String) { dead.add("$id: $reason") }
            })
            client.setNetworkAvailable(false)
            val ids = (1..3).map { i ->
                client.enqueue(ApiRequest(
                    method = HttpMethod.POST,
                    path = "/orders",
                    body = """{"n":$i}""".toByteArray(),
                    headers = mapOf("content-type" to "application/json"),
                ))
            }
            assertEquals(3, ids.toSet().size, "$ids")
            assertEquals(3L, client.serviceStatus().queue.pending)
            Thread.sleep(200)
            assertTrue(delivered.isEmpty(), "delivered while offline: $delivered")
            assertEquals(0L, fleet.totalHits("/orders"))

            client.setNetworkAvailable(true)
            waitUntil("3 deliveries", 5_000, { "delivered=$delivered dead=$dead ${client.serviceStatus().queue}" }) {
                delivered.size >= 3
            }
            val got = synchronized(delivered) { delivered.toList() }
            assertEquals(ids, got.map { it.first })
            got.forEach { assertEquals(200, it.second.status, "${it.first}") }
            assertTrue(dead.isEmpty(), "$dead")
            val q = client.serviceStatus().queue
            assertEquals(0L, q.pending, "$q")
            assertEquals(3L, q.delivered, "$q")
            assertEquals(3L, fleet.totalHits("/orders"))
        }
    }
}
