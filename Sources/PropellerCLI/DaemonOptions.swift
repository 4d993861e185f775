import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import PropellerCore
import PropellerRunCLI
import PropellerMQTT

/// Options every daemon takes: broker, channel, logging.
struct DaemonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Broker URL: tcp://, mqtt:// or mqtts://HOST[:PORT], or several of one cluster separated by commas, tried in turn when the connection is lost (env MANAGER_MQTT_ADDRESS / PROPLET_MQTT_ADDRESS / PROXY_MQTT_ADDRESS; default tcp://127.0.0.1:1883).", valueName: "url[,url…]"))
    var mqtt: String?

    @Option(name: .customLong("mqtt-ca"), help: ArgumentHelp("CA certificate that signs the broker's TLS certificate (mqtts://; default: the system's CAs).", valueName: "file"))
    var mqttCA: String?

    @Option(name: .customLong("mqtt-cert"), help: ArgumentHelp("Client certificate for the broker (mqtts://, with --mqtt-key).", valueName: "file"))
    var mqttCert: String?

    @Option(name: .customLong("mqtt-key"), help: ArgumentHelp("Private key of --mqtt-cert.", valueName: "file"))
    var mqttKey: String?

    @Option(name: .customLong("mqtt-username"), help: ArgumentHelp("Broker user name (the identity `propeller provision` made).", valueName: "name"))
    var mqttUsername: String?

    @Option(name: .customLong("mqtt-password-file"), help: ArgumentHelp("File holding the broker password (mode 600); or `mqtt-password` in the --config file.", valueName: "file"))
    var mqttPasswordFile: String?

    @Option(name: .customLong("mqtt-password"), help: .hidden)
    var mqttPassword: String?

    @Option(help: ArgumentHelp("Read options from FILE: `key = value` lines named like the long flags (mode 600 when it holds secrets); flags on the command line win.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("Domain id of the MQTT topics m/DOMAIN/c/CHANNEL (env PROPELLER_DOMAIN_ID).", valueName: "id"))
    var domain: String = Environment.current["PROPELLER_DOMAIN_ID"] ?? "propeller"

    @Option(help: ArgumentHelp("Channel id of the MQTT topics (env PROPELLER_CHANNEL_ID).", valueName: "id"))
    var channel: String = Environment.current["PROPELLER_CHANNEL_ID"] ?? "control"

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("invalid --log-level \"\(logLevel)\"") }
        for (name, value) in [("--domain", domain), ("--channel", channel)] where !Topics.isValidComponent(value) {
            throw ValidationError("invalid \(name) \"\(value)\": no '/', '+' or '#'")
        }
    }

    var topics: Topics { Topics(domain: domain, channel: channel) }

    /// The broker configuration, from --mqtt or the component's environment variable.
    func mqttConfiguration(envName: String, clientID: String) throws -> MQTTConfiguration {
        let url = mqtt ?? Environment.current[envName] ?? "tcp://127.0.0.1:1883"
        var config = try MQTTConfiguration(urls: url, clientID: clientID)
        if mqttCA != nil || mqttCert != nil || mqttKey != nil {
            guard config.tls != nil else { throw ValidationError("--mqtt-ca, --mqtt-cert and --mqtt-key need an mqtts:// broker URL") }
            guard (mqttCert == nil) == (mqttKey == nil) else { throw ValidationError("--mqtt-cert and --mqtt-key go together") }
            config.tls?.caFile = mqttCA.map(absolutePath)
            config.tls?.certFile = mqttCert.map(absolutePath)
            config.tls?.keyFile = mqttKey.map(absolutePath)
        }
        var password = mqttPassword
        if let mqttPasswordFile { password = try readSecretFile(absolutePath(mqttPasswordFile), what: "MQTT password file") }
        if password != nil && mqttUsername == nil { throw ValidationError("an MQTT password needs --mqtt-username") }
        config.username = mqttUsername
        config.password = password
        return config
    }

    func bootstrapLogging() {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Calls `handler` once on SIGTERM or SIGINT (the sources are kept alive by the caller).
func onTermination(_ handler: @escaping @Sendable (Int32) -> Void) -> [any DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { handler(sig) }
        source.resume()
        return source
    }
}

/// Reads a secret from a file that only its owner may read.
func readSecretFile(_ path: String, what: String) throws -> String {
    let (text, mode) = try readSmallFile(path, what: what)
    if mode & 0o077 != 0 {
        throw ValidationError("\(what) \(path) can be read by other users (mode \(String(mode & 0o777, radix: 8))): chmod 600 it")
    }
    let secret = text.trimmingWhitespace()
    guard !secret.isEmpty else { throw ValidationError("\(what) \(path) is empty") }
    return secret
}

/// A file of at most 1 MiB as text, with its mode; errors name `what` and the file.
func readSmallFile(_ path: String, what: String) throws -> (text: String, mode: mode_t) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ValidationError("\(what) \(path): cannot open it (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw ValidationError("\(what) \(path): cannot stat it (\(String(cString: strerror(errno))))") }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw ValidationError("\(what) \(path): read failed (\(String(cString: strerror(errno))))") }
        if n == 0 { break }
        bytes += buffer[0..<n]
        guard bytes.count <= 1 << 20 else { throw ValidationError("\(what) \(path): larger than 1 MiB") }
    }
    return (String(decoding: bytes, as: UTF8.self), st.st_mode)
}

/// `--http HOST:PORT` of a daemon, checked.
func httpEndpoint(_ http: String) throws -> (host: String, port: Int) {
    guard let colon = http.lastIndex(of: ":"), let port = Int(http[http.index(after: colon)...]), port >= 0, port < 65536, colon != http.startIndex else {
        throw ValidationError("invalid --http \"\(http)\": expected HOST:PORT")
    }
    return (String(http[..<colon]), port)
}
