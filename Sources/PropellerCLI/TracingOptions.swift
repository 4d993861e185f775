import ArgumentParser
import Logging
import OTel
import PropellerRunCLI
import PropellerTracing
import ServiceLifecycle
import Tracing

/// `--otlp-endpoint` of the manager and the proplet: tasks' spans exported with swift-otel over
/// OTLP/HTTP to a collector (Jaeger, Tempo, the OpenTelemetry Collector).
struct TracingOptions: ParsableArguments {
    @Option(name: .customLong("otlp-endpoint"), help: ArgumentHelp("Export traces over OTLP/HTTP to this collector (http://HOST:4318; spans go to URL/v1/traces; env OTEL_EXPORTER_OTLP_ENDPOINT). Default: no tracing.", valueName: "url"))
    var otlpEndpoint: String?

    @Option(name: .customLong("otlp-protocol"), help: ArgumentHelp("http/protobuf (default) or http/json.", valueName: "protocol"))
    var otlpProtocol: String = "http/protobuf"

    func validate() throws {
        guard ["http/protobuf", "http/json"].contains(otlpProtocol) else { throw ValidationError("invalid --otlp-protocol \"\(otlpProtocol)\": http/protobuf or http/json") }
        if let url = endpoint, !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ValidationError("invalid --otlp-endpoint \"\(url)\": expected http:// or https://")
        }
    }

    private var endpoint: String? { otlpEndpoint ?? Environment.current["OTEL_EXPORTER_OTLP_ENDPOINT"] }

    /// The tracer and the exporter's service (run it beside the daemon), or a no-op tracer when
    /// no endpoint is given.
    func traces(serviceName: String, logger: Logger) throws -> (Traces, (any Service)?) {
        guard var url = endpoint else { return (Traces(), nil) }
        while url.hasSuffix("/") { url.removeLast() }
        if !url.hasSuffix("/v1/traces") { url += "/v1/traces" }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.endpoint = url
        configuration.traces.otlpExporter.protocol = otlpProtocol == "http/json" ? .httpJSON : .httpProtobuf
        configuration.diagnosticLogLevel = .warning
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        logger.notice("exporting traces", metadata: ["endpoint": "\(url)", "protocol": "\(otlpProtocol)"])
        return (Traces(tracer), service)
    }
}
