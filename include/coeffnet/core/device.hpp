// coeffnet/core/device.hpp: where a tensor's memory lives and where its ops run.
//
//   Device::cpu()         host memory, the CPU backend (Eigen, OpenMP)
//   Device::cuda(i)       GPU i's memory, the CUDA backend (kernels/, cuBLAS)
//   Device::emulated()    the CUDA backend's kernels run by the block emulator (src/emulator/) on
//                         the host, with their memory kept apart from host tensors as a GPU's is
//
// On the command line (and in Device::parse, Device::str): "cpu", "cuda" (= "cuda:0"), "cuda:N",
// "emu". A Device is a value (kind + index), compared with ==; it names a place, whether or not a
// backend for it is linked into the program.
#pragma once

#include <charconv>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "error.hpp"

namespace coeffnet {

enum class DeviceKind : uint8_t { cpu, cuda, emulated };

struct Device {
    DeviceKind kind = DeviceKind::cpu;
    int index = 0;  // the GPU's ordinal for cuda; 0 otherwise

    static constexpr Device cpu() { return {}; }
    static constexpr Device cuda(int i = 0) { return {DeviceKind::cuda, i}; }
    static constexpr Device emulated() { return {DeviceKind::emulated, 0}; }

    constexpr bool is_cpu() const { return kind == DeviceKind::cpu; }
    constexpr bool is_cuda() const { return kind == DeviceKind::cuda; }
    constexpr bool is_emulated() const { return kind == DeviceKind::emulated; }
    friend constexpr bool operator==(const Device&, const Device&) = default;

    // "cpu", "cuda:N" or "emu": what parse() reads back.
    std::string str() const {
        switch (kind) {
            case DeviceKind::cpu: return "cpu";
            case DeviceKind::cuda: return "cuda:" + std::to_string(index);
            case DeviceKind::emulated: return "emu";
        }
        return "?";
    }

    // Reads "cpu", "cuda", "cuda:N" (N a GPU ordinal, 0 to 1023) or "emu"; anything else throws a
    // message that quotes the text and lists these forms.
    static Device parse(std::string_view s) {
        const auto bad = [&](const char* why) {
            fail("device '", s, "': ", why, " (expected cpu, cuda, cuda:N with N a GPU number, or emu)");
        };
        if (s == "cpu") return cpu();
        if (s == "emu") return emulated();
        if (s == "cuda") return cuda(0);
        if (s.substr(0, 5) == "cuda:") {
            const std::string_view n = s.substr(5);
            int i = -1;
            const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), i);
            if (n.empty() || ec != std::errc() || end != n.data() + n.size() || i < 0 || i > 1023)
                bad("the GPU number must be a whole number from 0 to 1023");
            return cuda(i);
        }
        bad("unknown device");
        return cpu();  // not reached: bad() throws
    }
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace coeffnet
