import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import PropellerCore

typealias Field = HTTPFields.Element

/// What the API shows of the managers that share a store (`GET /managers`, `/health`).
public protocol ClusterView: Sendable {
    func status() throws -> ManagerClusterStatus
}

/// The managers sharing a store: who leads, under which epoch, and who else is there.
public struct ManagerClusterStatus: Codable, Sendable, Hashable {
    public struct Member: Codable, Sendable, Hashable {
        public var id: String
        public var address: String
        /// `leader` or `follower`.
        public var role: String
        public var seenAgo: Double?
    }

    public var leader: LeaderInfo?
    public var members: [Member]
}

/// One of several managers on a shared store. The leadership loop takes the lease when it is
/// free and renews it while it leads; a term (``LeaderTerm``) runs for as long as the lease is
/// held, and ends when it is lost (a renewal refused, not renewed in time, a write the store
/// refused). A follower serves the whole API by forwarding each request to the leader, streams
/// (`--follow`, `watch`, synchronous actor calls) included; `/health` is its own.
final class ManagerNode: ClusterView, Sendable {
    let leadership: any Leadership
    let store: any ManagerStores
    let options: ManagerServer.Options
    let logger: Logger
    let http: HTTPClient
    private let term = Locked<LeaderTerm?>(nil)
    /// The lease as last read, and when (its `expiresIn` counts from then).
    private let leaderSeen = Locked<(info: LeaderInfo, at: ContinuousClock.Instant)?>(nil)
    static let forwardedHeader = Field.Name("X-Propeller-Forwarded-By")!
    /// The address of the forwarded request's caller, for the leader's audit log.
    static let forwardedForHeader = Field.Name("X-Propeller-Forwarded-For")!

    init(leadership: any Leadership, store: any ManagerStores, options: ManagerServer.Options, logger: Logger) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca = options.peerCA {
            do { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) } catch {
                throw PropellerError(.invalidArgument, "--peer-ca \(ca): \(error)")
            }
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton,
                          configuration: HTTPClient.Configuration(tlsConfiguration: tls, timeout: .init(connect: .seconds(3)), decompression: .disabled))
        self.leadership = leadership
        self.store = store
        self.options = options
        var logger = logger
        logger[metadataKey: "manager"] = "\(leadership.id)"
        self.logger = logger
    }

    var current: LeaderTerm? { term.withLock { $0 } }

    /// The leadership loop: every third of the lease, take or renew it; start a term when it is
    /// taken, end it when it is lost. On shutdown the lease is given up, so that another manager
    /// takes over at once.
    func run() async {
        let d = leadership.duration
        var running: (term: LeaderTerm, loops: Task<Void, Never>)?
        while !Task.isCancelled {
            let sent = ContinuousClock.now
            if let r = running {
                do {
                    if try leadership.acquire(renewing: r.term.lease?.epoch ?? 0) != nil {
                        r.term.lease?.renewed(sentAt: sent, duration: d)
                    } else {
                        r.term.lease?.lose("another manager holds the lease")
                    }
                } catch {
                    logger.warning("cannot renew the leadership lease", metadata: ["error": "\(error)"])
                }
                if let reason = r.term.lease?.lostReason {
                    logger.error("stepping down", metadata: ["reason": "\(reason)", "epoch": "\(r.term.lease?.epoch ?? 0)"])
                    await stop(r)
                    running = nil
                }
            } else {
                do {
                    if let epoch = try leadership.acquire(renewing: nil) {
                        leadership.fence(epoch: epoch)
                        logger.notice("leading", metadata: ["epoch": "\(epoch)"])
                        let lease = LeaderLease(epoch: epoch, validUntil: sent + d)
                        let t = try await LeaderTerm(store: store, options: options, lease: lease, cluster: self, logger: logger)
                        let loops = Task {
                            await withTaskGroup(of: Void.self) { group in
                                for loop in t.loops() { group.addTask { try? await loop() } }
                            }
                        }
                        running = (t, loops)
                        term.withLock { $0 = t }
                    }
                } catch {
                    logger.error("cannot take the lead", metadata: ["error": "\(error)"])
                }
            }
            let read = ContinuousClock.now
            do {
                let leader = try leadership.leader()
                leaderSeen.withLock { $0 = leader.map { ($0, read) } }
            } catch {
                logger.warning("cannot read the leadership lease", metadata: ["error": "\(error)"])
            }
            do { try leadership.announce() } catch { logger.warning("cannot announce this manager", metadata: ["error": "\(error)"]) }
            do { try await Task.sleep(for: d / 3) } catch { break }
        }
        if let r = running {
            await stop(r)
            if let epoch = r.term.lease?.epoch { try? leadership.release(epoch: epoch) }
            logger.notice("gave up the lead")
        }
    }

    private func stop(_ r: (term: LeaderTerm, loops: Task<Void, Never>)) async {
        term.withLock { $0 = nil }
        // While the lease is held, what was decided last is written.
        if r.term.lease?.lostReason == nil { await r.term.service.flush() }
        r.term.audit.flush()
        r.term.lease?.lose("stopped")
        r.loops.cancel()
        await r.loops.value
        r.term.client.disconnect()
    }

    func status() throws -> ManagerClusterStatus {
        let leader = try leadership.leader()
        let members = try leadership.members(within: leadership.duration * 3).map { m in
            ManagerClusterStatus.Member(id: m.id, address: m.address, role: m.id == leader?.id && (leader?.expiresIn ?? -1) > 0 ? "leader" : "follower",
                                        seenAgo: m.seenAgo)
        }
        return ManagerClusterStatus(leader: leader, members: members)
    }

    /// This manager's own health: its role, the leader it knows and the epoch.
    func health() -> Response {
        struct Health: Encodable {
            var status = "ok"
            var role: String
            var id: String
            var address: String
            var leader: LeaderInfo?
            var epoch: Int64?
        }
        let t = current
        let leader = knownLeader
        let body = Health(role: t != nil ? "leader" : "follower", id: leadership.id, address: leadership.address, leader: leader,
                          epoch: t?.lease?.epoch ?? leader?.epoch)
        return (try? encode(body)) ?? Response(status: .ok)
    }

    /// The leader as last read, while its lease has not run out since (by this manager's clock).
    var knownLeader: LeaderInfo? {
        leaderSeen.withLock { seen in
            guard let seen, ContinuousClock.now < seen.at + .milliseconds(Int64(seen.info.expiresIn * 1000)) else { return nil }
            return seen.info
        }
    }

    func responder() -> CallbackResponder<APIContext> {
        CallbackResponder { [self] request, context in
            if request.uri.path == "/health" { return health() }
            if let t = current { return try await t.responder.respond(to: request, context: context) }
            return await forward(request, from: context.peer)
        }
    }

    /// Forwards a request to the leader and streams its answer back.
    func forward(_ request: Request, from peer: String) async -> Response {
        // Not forwarded, so safe to send again: the CLI retries on Retry-After.
        var electing = jsonError(status: .serviceUnavailable, "no manager leads right now (a leader is being elected): try again")
        electing.headers[.retryAfter] = "1"
        guard request.headers[Self.forwardedHeader] == nil, let leader = knownLeader, leader.id != leadership.id else { return electing }
        var outgoing = HTTPClientRequest(url: leader.address + request.uri.description)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers where !Self.hopByHop.contains(field.name.canonicalName) {
            outgoing.headers.add(name: field.name.rawName, value: field.value)
        }
        outgoing.headers.add(name: Self.forwardedHeader.rawName, value: leadership.id)
        // What the caller sent under this name is not passed on: the leader takes it from a manager only.
        outgoing.headers.remove(name: Self.forwardedForHeader.rawName)
        outgoing.headers.add(name: Self.forwardedForHeader.rawName, value: peer)
        if request.method != .get && request.method != .head {
            // Read whole here, up to the limit the leader would apply: a body handed on as a stream
            // would still be read by the client's task after this handler has answered (the
            // leader refused the request before reading it, or another manager took the lead),
            // while the server reads the connection's next request: two readers of one stream.
            let limit = Self.isActorMessage(request) ? options.actors.messageLimit : ManagerAPI.defaultMaxBodyBytes
            var request = request
            do {
                outgoing.body = .bytes(try await request.collectBody(upTo: limit))
            } catch is NIOTooManyBytesError {
                return jsonError(status: .contentTooLarge, "request body larger than \(limit) bytes")
            } catch {
                return jsonError(status: .badRequest, "the request body could not be read: \(error)")
            }
        }
        // The leader's answer must begin within a deadline (a synchronous actor call's may take
        // as long as its wait); while waiting, a new leader means the old one can no longer act
        // (it was frozen or cut off): the caller is told to send again, to the new one.
        let syncCall = request.uri.queryParameters["sync"].map { $0 == "true" || $0 == "1" } ?? false
        let head: Duration = syncCall ? options.actors.maxSyncTimeout + .seconds(15) : .seconds(30)
        let outcome: Result<HTTPClientResponse, any Error>
        let prepared = outgoing
        do {
            outcome = .success(try await withThrowingTaskGroup(of: HTTPClientResponse?.self) { group in
                group.addTask { [http, logger, prepared] in
                    try await http.execute(prepared, timeout: .nanoseconds(Int64(head.components.seconds) * 1_000_000_000), logger: logger)
                }
                group.addTask { [self] in
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(250))
                        if let now = knownLeader, now.epoch != leader.epoch { return nil }
                    }
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let answer = first else { throw LeaderChanged() }
                return answer
            })
        } catch {
            outcome = .failure(error)
        }
        do {
            let answer = try outcome.get()
            var headers = HTTPFields()
            for (name, value) in answer.headers where !Self.hopByHop.contains(name.lowercased()) {
                if let n = Field.Name(name) { headers.append(Field(name: n, value: value)) }
            }
            return Response(status: HTTPResponse.Status(code: Int(answer.status.code), reasonPhrase: answer.status.reasonPhrase), headers: headers,
                            body: ResponseBody(asyncSequence: answer.body))
        } catch is LeaderChanged {
            return electing
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            return jsonError(status: .gatewayTimeout, "the leader \(leader.id) at \(leader.address) did not answer within \(DurationParsing.format(head))")
        } catch {
            return jsonError(status: .badGateway, "the leader \(leader.id) at \(leader.address) did not answer: \(error)")
        }
    }

    /// `POST /actors/{id}/messages`, whose body limit is the actor layer's.
    static func isActorMessage(_ request: Request) -> Bool {
        let parts = request.uri.path.split(separator: "/")
        return request.method == .post && parts.count == 3 && parts[0] == "actors" && parts[2] == "messages"
    }

    /// Another manager leads now: the one a request was sent to can no longer act on it.
    struct LeaderChanged: Error {}

    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
                                        "upgrade", "host", "content-length"]
}
