// The authenticator (issue 15): a Kotlin `suspend` authenticator whose refresh goes through the same
// client (skipAuthentication) against the fleet's token service (rotating refresh tokens, each valid
// once). 20 concurrent calls with an expired access token share exactly one refresh and all succeed.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.ApiRequest
import dev.robustapi.Authenticator
import dev.robustapi.HttpMethod
import dev.robustapi.RobustClient
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import java.util.concurrent.atomic.AtomicInteger
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/** The app's token store: the access token as the header; a refresh POSTs the refresh token. */
class TokenApp(pair: List<String>) : Authenticator {
    @Volatile var tokens: List<String> = pair
    @Volatile var client: RobustClient? = null
    val refreshes = AtomicInteger()

    override suspend fun credentials(scope: String?): Map<String, String> =
        mapOf("Authorization" to "Bearer ${tokens[0]}")

    override suspend fun refresh(scope: String?): Map<String, String> {
        refreshes.incrementAndGet()
        val request = ApiRequest(
            method = HttpMethod.POST,
            path = "/auth/token",
            body = tokens[1].toByteArray(),
            skipAuthentication = true,
        )
        val body = checkNotNull(client).request(request).body.decodeToString()
        fun field(name: String) = Regex(""""$name":"([^"]+)"""").find(body)!!.groupValues[1]
        tokens = listOf(field("access_token"), field("refresh_token"))
        return mapOf("Authorization" to "Bearer ${tokens[0]}")
    }
}

class AuthenticatorTest {
    private lateinit var fleet: Fleet

    @BeforeEach fun startFleet() { fleet = Fleet.start(1) }
    @AfterEach fun stopFleet() = fleet.close()

    @Test
    fun twentyConcurrentCallsWithAnExpiredTokenShareOneRefresh() = runBlocking {
        RobustClient(fastConfig(fleet.backends) { workerThreads = 2 }).use { client ->
            val app = TokenApp(fleet.auth("POST", "issue").split(" "))
            app.client = client
            client.setAuthenticator(app)
            assertEquals(200, client.get("/private/warm").status)
            fleet.auth("POST", "expire")
            val answers = (0 until 20).map { i -> async { client.get("/private/kt/$i") } }.awaitAll()
            assertEquals(List(20) { 200 }, answers.map { it.status })
            // Refused once and re-sent once, or (started after the refresh) sent once.
            assertTrue(answers.all { it.attempts in 1..2 })
            val resent = answers.count { it.attempts == 2 }
            assertEquals(resent.toString(), fleet.auth("GET", "rejected"))
            assertEquals(1, app.refreshes.get())
            assertEquals("1", fleet.auth("GET", "refreshes"))
            assertEquals("0", fleet.auth("GET", "reused"))
        }
    }

    @Test
    fun aFailedRefreshIsUnauthorized() = runBlocking {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val app = TokenApp(fleet.auth("POST", "issue").split(" "))
            app.client = client
            client.setAuthenticator(app)
            fleet.auth("POST", "refresh-fails", "on")
            fleet.auth("POST", "expire")
            val e = assertFailsWith<ApiException.Unauthorized> { client.get("/private/x") }
            assertTrue(e.refreshFailed)
            assertFalse(e.toString().contains(app.tokens[0]) || e.toString().contains(app.tokens[1]))
        }
    }
}
