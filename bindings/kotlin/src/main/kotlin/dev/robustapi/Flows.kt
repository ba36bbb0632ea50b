// The hand-written Kotlin layer over the generated bindings (same package, compiled with them):
// Flows for status events, service status and upload progress. Nothing here re-implements Rust;
// each function adapts one generated call. `RobustClient` is already `AutoCloseable` (`use {}`).
package dev.robustapi

import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.SharingStarted
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.channelFlow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.stateIn

/**
 * Breaker, health, network, pin and storage events as a cold [Flow]: each collector registers a
 * listener (the first one also receives the events from before any listener existed), removed
 * when the collector stops.
 */
fun RobustClient.statusEvents(): Flow<StatusEvent> = callbackFlow {
    val subscription = addStatusListener(object : StatusListener {
        override fun onEvent(event: StatusEvent) {
            trySend(event)
        }
    })
    awaitClose { subscription.remove() }
}

/** [RobustClient.serviceStatus] as a [StateFlow], refreshed on every status event, in [scope]. */
fun RobustClient.serviceStatusFlow(scope: CoroutineScope): StateFlow<ServiceStatus> =
    statusEvents().map { serviceStatus() }.stateIn(scope, SharingStarted.Eagerly, serviceStatus())

/** What [uploadFileFlow] emits: progress, then the response (a failure is thrown). */
sealed interface UploadEvent {
    /** [bytesSent] of [totalBytes] have gone out (throttled: every 1 % or 250 ms, then the total). */
    data class Progress(val bytesSent: Long, val totalBytes: Long) : UploadEvent

    /** The server's answer; always last. */
    data class Done(val response: ApiResponse) : UploadEvent
}

/**
 * [RobustClient.uploadFile] as a cold [Flow] of [UploadEvent]s: collecting starts the upload,
 * cancelling the collector cancels it (the connection closes), an [ApiException] is thrown.
 */
fun RobustClient.uploadFileFlow(request: UploadRequest): Flow<UploadEvent> = channelFlow {
    val response = uploadFile(request, object : UploadProgressListener {
        override fun onProgress(bytesSent: Long, totalBytes: Long) {
            trySend(UploadEvent.Progress(bytesSent, totalBytes))
        }
    })
    send(UploadEvent.Done(response))
}
