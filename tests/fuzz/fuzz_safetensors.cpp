// tests/fuzz/fuzz_safetensors.cpp: libFuzzer target for the safetensors reader and writer.
//
// Any input: SafeTensors::from_bytes either throws coeffnet::Error or gives a file whose every
// tensor can be read (bytes(), get<T>() for its own type, get_as<float/double>()). A valid file
// must also survive the writer: rewritten, it reads back with the same tensors and metadata,
// and rewriting that gives the same bytes again. Anything else (another exception, a crash, a
// sanitizer report, a broken round trip) is a finding. Built and run by tests/fuzz/run.sh.
#include <coeffnet/io/safetensors.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

using namespace coeffnet;
using namespace coeffnet::io;

namespace {

volatile double g_sink = 0;  // keeps the reads from being optimised away

template <class T>
void read_as(const SafeTensors& st, const TensorInfo& t) {
    double sum = 0;
    for (const T& v : st.get<T>(t.name).to_vector()) sum += convert<double>(v);
    g_sink = g_sink + sum;
}

void touch(const SafeTensors& st, const TensorInfo& t) {
    const auto bytes = st.bytes(t.name);
    unsigned acc = 0;
    for (std::byte b : bytes) acc += static_cast<unsigned>(b);
    g_sink = g_sink + acc;
    if (bytes.size() != t.nbytes()) std::abort();
    try {  // get() refuses a shape whose strides overflow int64, e.g. [0, 2^62, 2^62]
        switch (t.dtype) {
            case DType::F32: read_as<float>(st, t); break;
            case DType::F64: read_as<double>(st, t); break;
            case DType::F16: read_as<half_t>(st, t); break;
            case DType::BF16: read_as<bfloat16_t>(st, t); break;
            case DType::I64: read_as<int64_t>(st, t); break;
            case DType::I32: read_as<int32_t>(st, t); break;
            case DType::I16: read_as<int16_t>(st, t); break;
            case DType::I8: read_as<int8_t>(st, t); break;
            case DType::U64: read_as<uint64_t>(st, t); break;
            case DType::U32: read_as<uint32_t>(st, t); break;
            case DType::U16: read_as<uint16_t>(st, t); break;
            case DType::U8:
            case DType::BOOL: read_as<uint8_t>(st, t); break;
            default: break;
        }
        for (float v : st.get_as<float>(t.name).to_vector()) g_sink = g_sink + static_cast<double>(v);
        for (double v : st.get_as<double>(t.name).to_vector()) g_sink = g_sink + v;
    } catch (const Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::optional<SafeTensors> st;
    try {
        st.emplace(SafeTensors::from_bytes(input, "fuzz-input"));
    } catch (const Error&) {
        return 0;  // refused: expected for most inputs
    }
    for (const TensorInfo& t : st->tensors()) touch(*st, t);
    try {
        (void)st->info("no such tensor, surely");
    } catch (const Error&) {
    }

    // The round trip; an Error here is a finding too, so nothing is caught.
    SafeTensorsWriter w;
    w.copy_from(*st);
    const std::string once = w.to_bytes();
    const SafeTensors back = SafeTensors::from_bytes(once, "rewritten");
    if (back.size() != st->size() || back.has_metadata() != st->has_metadata() ||
        back.metadata_items() != st->metadata_items())
        std::abort();
    for (const TensorInfo& t : st->tensors()) {
        const TensorInfo& u = back.info(t.name);
        const auto a = st->bytes(t.name), b = back.bytes(t.name);
        if (u.dtype != t.dtype || u.shape != t.shape || !std::equal(a.begin(), a.end(), b.begin(), b.end()))
            std::abort();
    }
    SafeTensorsWriter w2;
    w2.copy_from(back);
    if (w2.to_bytes() != once) std::abort();
    return 0;
}
