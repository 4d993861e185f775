import CArchive
import CCap
import CMosquitto
import CSeccomp
import Testing

/// The four C libraries come from Debian's -dev packages through system-library targets; these
/// tests prove each one links and is a version the code is written for.
@Suite("System libraries link")
struct SystemLibrariesTests {
    @Test func libarchiveIsAtLeast3_6() {
        #expect(archive_version_number() >= 3_006_000)
    }

    @Test func libseccompIsAtLeast2_5() throws {
        let version = try #require(seccomp_version())
        #expect(version.pointee.major == 2 && version.pointee.minor >= 5)
    }

    @Test func libmosquittoIsVersion2() {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        #expect(major == 2)
    }

    @Test func libcapKnowsNetRaw() {
        var value: cap_value_t = -1
        #expect(cap_from_name("cap_net_raw", &value) == 0)
        #expect(value == 13)
    }
}
