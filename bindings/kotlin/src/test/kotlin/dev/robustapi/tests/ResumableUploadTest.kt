// Resumable uploads (tus 1.0) from Kotlin, against the official Node server (@tus/server with
// @tus/file-store, pinned; installed by scripts/setup-tus-server.sh), behind the fleet's HTTP proxy
// (test-fleet --proxy-to): an upload marked unmeteredOnly sends nothing while the app reports a
// metered network, then goes out; the proxy cuts its connection mid-PATCH (a network drop); the upload
// resumes from the server's offset, completes with the source's SHA-256, and a Kotlin
// UploadProgressListener sees progress that never goes backwards and ends at the total.
package dev.robustapi.tests

import dev.robustapi.RobustClient
import dev.robustapi.UploadProgressListener
import dev.robustapi.UploadRequest
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.io.RandomAccessFile
import java.security.MessageDigest
import java.util.Collections
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import kotlin.test.assertEquals
import kotlin.test.assertTrue

private const val MiB = 1L shl 20

/** `node server.mjs <store> 0 0`: the official tus server on a free 127.0.0.1 port. */
class TusServer(val store: File) : AutoCloseable {
    private val process: Process
    val port: Int

    init {
        val root = System.getProperty("robustapi.root") ?: error("system property robustapi.root is not set")
        val setup = ProcessBuilder("bash", "$root/scripts/setup-tus-server.sh")
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start()
        val dir = setup.inputStream.bufferedReader().readText().trim()
        check(setup.waitFor() == 0) { "scripts/setup-tus-server.sh failed" }
        store.mkdirs()
        process = ProcessBuilder("node", "$dir/server.mjs", store.path, "0", "0")
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start()
        val line = CompletableFuture.supplyAsync { process.inputStream.bufferedReader().readLine() }
            .get(30, TimeUnit.SECONDS)
        check(line != null && line.startsWith("LISTENING ")) { "tus server said: $line" }
        port = line.split(" ")[1].toInt()
    }

    /** The uploaded files (not their `.json` info files). */
    fun storedFiles(): List<File> = store.listFiles()!!.filter { !it.name.endsWith(".json") }

    override fun close() {
        process.destroyForcibly().waitFor(5, TimeUnit.SECONDS)
    }
}

private fun sparseFile(dir: File, name: String, size: Long): File {
    val f = File(dir, name)
    RandomAccessFile(f, "rw").use { raf ->
        raf.setLength(size)
        var off = 0L
        while (off < size) {
            val marker = "offset $off ${System.nanoTime()}".toByteArray()
            raf.seek(off)
            raf.write(marker, 0, minOf(marker.size.toLong(), size - off).toInt())
            off += MiB
        }
    }
    return f
}

private fun sha256Of(f: File): String {
    val md = MessageDigest.getInstance("SHA-256")
    f.inputStream().use { input ->
        val buf = ByteArray(MiB.toInt())
        while (true) {
            val n = input.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
    }
    return md.digest().joinToString("") { "%02x".format(it) }
}

class ResumableUploadTest {
    @TempDir lateinit var dir: File

    @Test
    fun `a resumable upload waits while metered, survives a cut mid-PATCH and arrives intact`() = runBlocking<Unit> {
        TusServer(File(dir, "server")).use { tus ->
            Fleet.start(1, proxyTo = tus.port).use { fleet ->
                val proxy = checkNotNull(fleet.proxy)
                val config = fastConfig(listOf(proxy)) {
                    upload = upload.copy(chunkBytes = (MiB / 2).toInt(), maxRetries = 40)
                }
                RobustClient(config).use { client ->
                    val size = 6 * MiB
                    val file = sparseFile(dir, "clip.mp4", size)
                    val calls: MutableList<Long> = Collections.synchronizedList(mutableListOf())
                    val listener = object : UploadProgressListener {
                        override fun onProgress(bytesSent: Long, totalBytes: Long) {
                            calls.add(bytesSent)
                        }
                    }
                    val uploadRequests = {
                        fleet.proxyCall("GET", "requests").lines()
                            .filter { r -> listOf("POST ", "PATCH ", "HEAD ").any { r.startsWith(it) } }
                    }
                    client.setNetworkMetered(true)
                    val req = UploadRequest(
                        path = "/files/",
                        filePath = file.path,
                        fields = mapOf("title" to "Holiday ✓"),
                        unmeteredOnly = true,
                    )
                    val call = async(Dispatchers.IO) { client.uploadFile(req, listener) }
                    waitUntil("the upload to be recorded", 10_000) { client.pendingUploads().isNotEmpty() }
                    val pending = client.pendingUploads().single()
                    assertTrue(pending.unmeteredOnly, "$pending")
                    Thread.sleep(1_000)
                    assertEquals(emptyList(), uploadRequests(), "nothing but discovery while metered")
                    assertEquals("0", fleet.proxyCall("GET", "body-bytes"))
                    // Unmetered: it goes out; the proxy cuts the connection 40 % in, mid-PATCH.
                    fleet.proxyCall("POST", "cut-after", (size * 4 / 10).toString())
                    client.setNetworkMetered(false)
                    val r = call.await()
                    assertEquals(204, r.status)
                    assertEquals("1", fleet.proxyCall("GET", "cuts"), "one drop mid-PATCH")
                    val files = tus.storedFiles()
                    assertEquals(1, files.size, "resumed, not created anew: $files")
                    assertEquals(sha256Of(file), sha256Of(files[0]))
                    assertTrue(File(files[0].path + ".json").readText().contains("\"title\":\"Holiday ✓\""))
                    val sent = calls.toList()
                    assertTrue(sent.zipWithNext().all { (a, b) -> a <= b }, "monotonic across the drop: $sent")
                    assertEquals(size, sent.last())
                    assertTrue(uploadRequests().any { it.startsWith("HEAD ") }, "the drop is followed by a HEAD")
                    assertEquals(emptyList(), client.pendingUploads())
                    println(
                        "FIGURE kotlin resumable: $size bytes, ${fleet.proxyCall("GET", "body-bytes")} body bytes " +
                            "and ${fleet.proxyCall("GET", "wire-bytes")} wire bytes through the proxy, 1 cut",
                    )
                }
            }
        }
    }
}
