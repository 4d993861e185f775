import Tracing

/// A wall-clock instant, for spans recorded after the fact from times a component noted (a
/// proplet's phases, a task's wait in the queue).
public struct WallInstant: TracerInstant {
    public let nanosecondsSinceEpoch: UInt64

    /// `seconds` since the epoch (``PropellerCore/WallClock``'s unit).
    public init(seconds: Double) {
        nanosecondsSinceEpoch = seconds > 0 ? UInt64(min(seconds * 1e9, Double(UInt64.max / 2))) : 0
    }

    public static func < (a: WallInstant, b: WallInstant) -> Bool { a.nanosecondsSinceEpoch < b.nanosecondsSinceEpoch }
}

/// Trace context in a wire message or a stored task: the W3C `traceparent` (and `tracestate`)
/// entries the tracer writes, as a dictionary.
struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

struct DictionaryExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key] ?? carrier.first { $0.key.lowercased() == key.lowercased() }?.value
    }
}

/// The tracer of one component and the few things Propeller does with it: carry a span's
/// context across the broker, and record spans whose times were noted earlier. With the
/// default no-op tracer everything here costs next to nothing and carries nothing.
public struct Traces: Sendable {
    public let tracer: any Tracer

    public init(_ tracer: any Tracer = NoOpTracer()) {
        self.tracer = tracer
    }

    /// Whether spans go anywhere (a tracer other than the no-op one).
    public var enabled: Bool { !(tracer is NoOpTracer) }

    /// The entries that carry `context`'s span to another component; nil when there is nothing
    /// to carry (no tracer, no span).
    public func carrier(_ context: ServiceContext) -> [String: String]? {
        var carrier: [String: String] = [:]
        tracer.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier.isEmpty ? nil : carrier
    }

    /// The context a carrier describes (the top level when there is none).
    public func context(_ carrier: [String: String]?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let carrier, !carrier.isEmpty { tracer.extract(carrier, into: &context, using: DictionaryExtractor()) }
        return context
    }

    /// Starts a span under `parent` now; end it with `end()`.
    public func start(_ name: String, parent: ServiceContext, kind: SpanKind = .internal) -> any Span {
        tracer.startSpan(name, context: parent, ofKind: kind, at: DefaultTracerClock.now, function: #function, file: #fileID, line: #line)
    }

    /// Records a span that ran from `start` to `end` (seconds since the epoch) under `parent`,
    /// with `attributes`; returns its context (for spans under it).
    @discardableResult
    public func record(_ name: String, parent: ServiceContext, from start: Double, to end: Double, kind: SpanKind = .internal,
                       attributes: [String: String] = [:], error: String? = nil) -> ServiceContext {
        let span = tracer.startSpan(name, context: parent, ofKind: kind, at: WallInstant(seconds: start), function: #function, file: #fileID, line: #line)
        for (key, value) in attributes { span.attributes[key] = value }
        if let error { span.setStatus(SpanStatus(code: .error, message: error)) }
        let context = span.context
        span.end(at: WallInstant(seconds: max(start, end)))
        return context
    }
}
