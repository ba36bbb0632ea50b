// The hand-written Swift layer over the generated RobustApi.swift (a build product, copied in by
// prepare.sh). Kept thin: nothing here re-implements Rust.

// `ApiError.description` is generated from the Rust `Display` (#[uniffi::export(Display)]), but
// UniFFI 0.31 does not declare the conformance for error enums. Declaring it makes
// `String(describing:)`, string interpolation and `localizedDescription` (the generated
// `errorDescription` is `String(reflecting: self)`) the crate's own text.
extension ApiError: CustomStringConvertible {}

// MARK: - Task cancellation

// UniFFI's Swift async calls do not forward `Task` cancellation to Rust. These wrappers give each
// call a fresh `CancelToken` and cancel it from `withTaskCancellationHandler`, so `Task.cancel()`
// drops the request in flight (its connection is closed) and the call throws `ApiError.Cancelled`.
extension RobustClient {
    /// `request(request:)`, honouring `Task` cancellation.
    public func send(_ request: ApiRequest) async throws -> ApiResponse {
        let token = CancelToken()
        return try await withTaskCancellationHandler {
            try await requestWithToken(request: request, token: token)
        } onCancel: {
            token.cancel()
        }
    }

    /// `GET path`, honouring `Task` cancellation.
    public func get(_ path: String) async throws -> ApiResponse {
        try await send(ApiRequest(method: .get, path: path))
    }

    /// `uploadFile(request:listener:)`, honouring `Task` cancellation; `progress` gets
    /// `(bytesSent, totalBytes)` (on a background thread, throttled: every 1 % or 250 ms).
    public func upload(
        _ request: UploadRequest, progress: (@Sendable (Int64, Int64) -> Void)? = nil
    ) async throws -> ApiResponse {
        let token = CancelToken()
        let listener = progress.map(ClosureProgressListener.init)
        return try await withTaskCancellationHandler {
            try await uploadFileWithToken(request: request, token: token, listener: listener)
        } onCancel: {
            token.cancel()
        }
    }

    /// An upload as a stream: `.progress(sent, total)` events, then `.done(response)`; an error
    /// ends the stream by throwing. Ending the iteration (or cancelling its task) cancels the upload.
    public func uploadEvents(_ request: UploadRequest) -> AsyncThrowingStream<UploadEvent, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await self.upload(request) { sent, total in
                        continuation.yield(.progress(bytesSent: sent, totalBytes: total))
                    }
                    continuation.yield(.done(response))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Status events (breaker, health, network, pins, storage) as an `AsyncStream`. Each call
    /// registers a listener, removed when the stream ends (its consumer's task is cancelled or
    /// stops iterating).
    public func statusEvents() -> AsyncStream<StatusEvent> {
        AsyncStream { continuation in
            let subscription = addStatusListener(listener: StreamStatusListener(continuation))
            continuation.onTermination = { _ in subscription.remove() }
        }
    }
}

/// What `uploadEvents(_:)` yields.
public enum UploadEvent: Sendable {
    /// `bytesSent` of `totalBytes` have gone out.
    case progress(bytesSent: Int64, totalBytes: Int64)
    /// The server's answer; always last.
    case done(ApiResponse)
}

private final class ClosureProgressListener: UploadProgressListener, Sendable {
    private let onProgress: @Sendable (Int64, Int64) -> Void
    init(_ onProgress: @escaping @Sendable (Int64, Int64) -> Void) { self.onProgress = onProgress }
    func onProgress(bytesSent: Int64, totalBytes: Int64) { onProgress(bytesSent, totalBytes) }
}

private final class StreamStatusListener: StatusListener, Sendable {
    private let continuation: AsyncStream<StatusEvent>.Continuation
    init(_ continuation: AsyncStream<StatusEvent>.Continuation) { self.continuation = continuation }
    func onEvent(event: StatusEvent) { continuation.yield(event) }
}
