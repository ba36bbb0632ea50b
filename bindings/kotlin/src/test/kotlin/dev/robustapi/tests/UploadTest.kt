// Uploads from Kotlin: a file streamed as multipart with its title arrives intact (SHA-256 checked by
// the fleet), a Kotlin UploadProgressListener sees monotonic progress ending at the total, cancelling
// the coroutine or an CancelToken stops the upload, a missing file is InvalidRequest.
package dev.robustapi.tests

import dev.robustapi.ApiException
import dev.robustapi.RobustClient
import dev.robustapi.CancelToken
import dev.robustapi.UploadProgressListener
import dev.robustapi.UploadRequest
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.io.RandomAccessFile
import java.security.MessageDigest
import java.util.Collections
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

private const val MB = 1L shl 20

/** A sparse file with a distinct marker every MiB (lost or reordered chunks change the hash). */
private fun makeFile(dir: File, name: String, size: Long): File {
    val f = File(dir, name)
    RandomAccessFile(f, "rw").use { raf ->
        raf.setLength(size)
        var off = 0L
        while (off < size) {
            val marker = "offset $off ${System.nanoTime()}".toByteArray()
            raf.seek(off)
            raf.write(marker, 0, minOf(marker.size.toLong(), size - off).toInt())
            off += MB
        }
    }
    return f
}

private fun sha256(f: File): String {
    val md = MessageDigest.getInstance("SHA-256")
    f.inputStream().use { input ->
        val buf = ByteArray(MB.toInt())
        while (true) {
            val n = input.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
    }
    return md.digest().joinToString("") { "%02x".format(it) }
}

private fun jsonString(json: String, name: String): String? =
    Regex(""""$name":"([^"]*)"""").find(json)?.groupValues?.get(1)

class ProgressRecorder(private val hook: (Long, Long) -> Unit = { _, _ -> }) : UploadProgressListener {
    val calls: MutableList<Pair<Long, Long>> = Collections.synchronizedList(mutableListOf())
    val threads: MutableSet<String> = Collections.synchronizedSet(mutableSetOf())

    override fun onProgress(bytesSent: Long, totalBytes: Long) {
        calls.add(bytesSent to totalBytes)
        threads.add(Thread.currentThread().name)
        hook(bytesSent, totalBytes)
    }
}

class UploadTest {
    private lateinit var fleet: Fleet

    @TempDir lateinit var dir: File

    @BeforeEach fun startFleet() { fleet = Fleet.start(1) }
    @AfterEach fun stopFleet() = fleet.close()

    /** Waits until backend 0's received upload bytes stop changing; returns the count. */
    private fun settledUploadBytes(): Long {
        var last = fleet.uploadBytes(0)
        while (true) {
            Thread.sleep(200)
            val now = fleet.uploadBytes(0)
            if (now == last) return now
            last = now
        }
    }

    @Test
    fun `uploadVideoFile streams the file and title and reports progress to the total`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val file = makeFile(dir, "clip.mp4", 8 * MB + 3)
            val progress = ProgressRecorder()
            val r = client.uploadVideoFile(file.path, "Holiday ✓", progress)
            assertEquals(201, r.status)
            val body = r.body.decodeToString()
            assertEquals(sha256(file), jsonString(body, "sha256"), body)
            assertTrue(body.contains(""""fields":{"title":"Holiday ✓"}"""), body)
            assertEquals("/api/videos", jsonString(body, "path"))
            assertEquals("video/mp4", jsonString(body, "content_type"))
            assertTrue(fleet.uploads(0).contains(sha256(file)))

            val calls = progress.calls.toList()
            val total = calls.first().second
            assertTrue(calls.all { it.second == total })
            assertTrue(calls.zipWithNext().all { (a, b) -> a.first < b.first }, "monotonic: $calls")
            assertEquals(total, calls.last().first)
            assertTrue(calls.size in 2..110, "${calls.size} progress calls")
            // Called on the coroutine's side (the thread awaiting the call), never on the client's
            // own threads (its runtime's are named robust-api).
            assertTrue(progress.threads.none { it.startsWith("robust-api") }, "${progress.threads}")
        }
    }

    @Test
    fun `uploadFile sends the request's fields, names and idempotency key`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val file = makeFile(dir, "data.bin", MB)
            val req = UploadRequest(
                path = "/upload/docs",
                filePath = file.path,
                fieldName = "attachment",
                fileName = "photo.jpg",
                fields = mapOf("title" to "Cat"),
                idempotencyKey = "kotlin-upload-1",
            )
            val first = client.uploadFile(req)
            val again = client.uploadFile(req)
            assertEquals(first.body.decodeToString(), again.body.decodeToString())
            assertEquals("true", again.headers["idempotent-replayed"])
            val stored = fleet.uploads(0)
            assertEquals(1, Regex("\"sha256\"").findAll(stored).count(), stored)
            val body = first.body.decodeToString()
            assertEquals("attachment", jsonString(body, "field_name"))
            assertEquals("photo.jpg", jsonString(body, "file_name"))
            assertEquals("image/jpeg", jsonString(body, "content_type"))
            assertEquals("kotlin-upload-1", jsonString(body, "key"))
        }
    }

    @Test
    fun `cancelling the coroutine mid-way stops the upload`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val size = 200 * MB
            val file = makeFile(dir, "big.bin", size)
            val reached = CompletableDeferred<Unit>()
            val progress = ProgressRecorder { sent, total -> if (sent * 10 >= total) reached.complete(Unit) }
            val job = launch(Dispatchers.Default) {
                client.uploadFile(UploadRequest(path = "/upload", filePath = file.path), progress)
            }
            reached.await()
            job.cancelAndJoin()
            val received = settledUploadBytes()
            Thread.sleep(500)
            assertEquals(received, fleet.uploadBytes(0), "still receiving")
            assertTrue(received < size / 2, "received $received of $size")
            assertEquals("[]", fleet.uploads(0))
        }
    }

    @Test
    fun `an CancelToken stops the upload with Cancelled`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val size = 200 * MB
            val file = makeFile(dir, "big.bin", size)
            CancelToken().use { token ->
                val progress = ProgressRecorder { sent, total -> if (sent * 10 >= total) token.cancel() }
                assertFailsWith<ApiException.Cancelled> {
                    client.uploadFileWithToken(UploadRequest(path = "/upload", filePath = file.path), token, progress)
                }
                assertTrue(token.isCancelled())
            }
            val received = settledUploadBytes()
            assertTrue(received < size / 2, "received $received of $size")
            assertEquals("[]", fleet.uploads(0))
        }
    }

    @Test
    fun `a missing file is InvalidRequest before anything is sent`() = runBlocking<Unit> {
        RobustClient(fastConfig(fleet.backends)).use { client ->
            val missing = File(dir, "nope.mp4").path
            val e = assertFailsWith<ApiException.InvalidRequest> { client.uploadVideoFile(missing, "t") }
            assertTrue(e.reason.contains(missing), e.reason)
            assertEquals(0L, fleet.hits(0, "/api/videos"))
        }
    }
}
