// The authenticator (issue 15): a Swift `async` authenticator whose refresh goes through the same
// client (skipAuthentication) against the fleet's token service (rotating refresh tokens, each
// valid once). 20 concurrent calls with an expired access token share exactly one refresh and all
// succeed.
import Foundation
import RobustApi
import XCTest

/// The app's token store: the access token as the header; a refresh POSTs the refresh token.
final class TokenApp: Authenticator, @unchecked Sendable {
    let tokens: Locked<[String]>
    let refreshes = Locked(0)
    let client = Locked<RobustClient?>(nil)

    init(_ pair: [String]) { tokens = Locked(pair) }

    func credentials(scope: String?) async throws -> [String: String] {
        ["Authorization": "Bearer \(tokens.current[0])"]
    }

    func refresh(scope: String?) async throws -> [String: String] {
        refreshes.withLock { $0 += 1 }
        guard let client = client.current else { throw TestFailure("no client") }
        var request = ApiRequest(method: .post, path: "/auth/token")
        request.body = Data(tokens.current[1].utf8)
        request.skipAuthentication = true
        let answer = try await client.request(request: request)
        struct Pair: Decodable { let access_token: String; let refresh_token: String }
        let pair = try JSONDecoder().decode(Pair.self, from: answer.body)
        tokens.withLock { $0 = [pair.access_token, pair.refresh_token] }
        return ["Authorization": "Bearer \(pair.access_token)"]
    }
}

final class AuthenticatorTests: XCTestCase {
    func testTwentyConcurrentCallsWithAnExpiredTokenShareOneRefresh() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.workerThreads = 2
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        let pair = try await fleet.call("POST", "/auth/issue").split(separator: " ").map(String.init)
        let app = TokenApp(pair)
        app.client.withLock { $0 = client }
        client.setAuthenticator(authenticator: app)
        let warm = try await client.get(path: "/private/warm")
        XCTAssertEqual(warm.status, 200)
        _ = try await fleet.call("POST", "/auth/expire")
        let answers = try await withThrowingTaskGroup(of: ApiResponse.self) { group in
            for i in 0..<20 {
                group.addTask { try await client.get(path: "/private/swift/\(i)") }
            }
            var all: [ApiResponse] = []
            for try await r in group { all.append(r) }
            return all
        }
        XCTAssertEqual(answers.map(\.status), Array(repeating: 200, count: 20))
        // Refused once and re-sent once, or (started after the refresh) sent once.
        XCTAssertTrue(answers.allSatisfy { $0.attempts == 1 || $0.attempts == 2 })
        let rejected = try await fleet.call("GET", "/auth/rejected")
        XCTAssertEqual(rejected, String(answers.filter { $0.attempts == 2 }.count))
        XCTAssertEqual(app.refreshes.current, 1)
        let refreshes = try await fleet.call("GET", "/auth/refreshes")
        let reused = try await fleet.call("GET", "/auth/reused")
        XCTAssertEqual(refreshes, "1")
        XCTAssertEqual(reused, "0")
        app.client.withLock { $0 = nil }  // no cycle client -> app -> client
    }
}
