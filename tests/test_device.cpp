// Tensors that know their device: Storage, factories on a device, to(Device), Module::to, the
// errors for host access to device memory, for mixed devices and for unregistered backends.
//
// No GPU is needed: a stand-in memory backend is registered for DeviceKind::emulated (host memory
// of its own, every transfer counted), which is what a device looks like to the tensor layer. It
// has no compute table, so an op on it must say so.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include <coeffnet/coeffnet.hpp>

#include "test_util.hpp"

using namespace coeffnet;

namespace {

// Host memory that the tensor layer must treat as a device's: allocations, copies in and out and
// the last device it was asked for are recorded.
class CountingMemory final : public backend::Memory {
public:
    mutable int allocations = 0, to_host_calls = 0, from_host_calls = 0;
    Storage allocate(size_t nbytes, Device device) const override {
        ++allocations;
        Storage host = Storage::allocate_host(nbytes);
        return {host.handle(), nbytes, device};
    }
    void to_host(const Storage& src, size_t offset, void* dst, size_t nbytes) const override {
        ++to_host_calls;
        REQUIRE(offset + nbytes <= src.nbytes());
        backend::cpu_memory().to_host(src, offset, dst, nbytes);
    }
    void from_host(const void* src, const Storage& dst, size_t offset, size_t nbytes) const override {
        ++from_host_calls;
        REQUIRE(offset + nbytes <= dst.nbytes());
        backend::cpu_memory().from_host(src, dst, offset, nbytes);
    }
    void copy(size_t elem, const backend::RawView& d, const backend::RawView& s) const override {
        backend::cpu_memory().copy(elem, d, s);
    }
    void fill(size_t elem, const backend::RawView& d, const void* v) const override {
        backend::cpu_memory().fill(elem, d, v);
    }
};

// Registers the stand-in for the emulated kind for one test, and restores what was there.
struct StandInDevice {
    CountingMemory memory;
    backend::Entry saved = backend::registry[backend::kind_index(DeviceKind::emulated)];
    StandInDevice() { backend::register_backend(DeviceKind::emulated, {&memory, nullptr, nullptr}); }
    ~StandInDevice() { backend::register_backend(DeviceKind::emulated, saved); }
};

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("a tensor's storage: device and bytes and shared by views and 64-byte aligned on the host") {
    const auto t = Tensor<float>::zeros({3, 4});
    CHECK(t.device() == Device::cpu());
    CHECK(t.storage().device() == Device::cpu());
    CHECK(t.storage().nbytes() == 12 * sizeof(float));
    CHECK(reinterpret_cast<uintptr_t>(t.storage().data()) % 64 == 0);
    const auto v = t.transpose(0, 1).slice(0, 1, 3);
    CHECK(v.storage().same_memory(t.storage()));
    CHECK(v.device_data() == t.data() + 1);
    CHECK_FALSE(t.clone().storage().same_memory(t.storage()));
    // to() the device a tensor is on is the tensor itself (no copy), as in PyTorch.
    CHECK(t.to(Device::cpu()).storage().same_memory(t.storage()));
}

TEST_CASE("asking for a device whose backend is not linked names what to link") {
    // This test program links no CUDA backend (the CUDA tests are a separate program).
    REQUIRE(backend::registry[backend::kind_index(DeviceKind::cuda)].memory == nullptr);
    const std::string m = message_of([] { Tensor<float>::zeros({2}, Device::cuda(1)); });
    CHECK(m.find("cuda:1") != std::string::npos);
    CHECK(m.find("coeffnet::cuda") != std::string::npos);
    CHECK(m.find("no tensor table yet") != std::string::npos);
    const std::string m2 = message_of([] { Tensor<float>::ones({2}).to(Device::cuda()); });
    CHECK(m2.find("coeffnet::cuda") != std::string::npos);
}

TEST_CASE("factories and to() on a device: values round-trip and host access throws and copies are counted") {
    StandInDevice dev;
    const Device emu = Device::emulated();
    Generator g1(7), g2(7);
    const auto host = Tensor<float>::randn({3, 5}, g1);
    const auto on = Tensor<float>::randn({3, 5}, g2, 0.0, 1.0, emu);
    CHECK(on.device() == emu);
    CHECK(on.storage().device() == emu);
    // The same Philox stream on every device: the draw equals the host draw.
    CHECK(on.to_vector() == host.to_vector());

    // Host pointers of device memory are refused, with a message that says where the tensor is.
    const std::string m = message_of([&] { (void)on.data(); });
    CHECK(m.find("Tensor::data") != std::string::npos);
    CHECK(m.find("emu") != std::string::npos);
    CHECK(m.find(".to(Device::cpu())") != std::string::npos);
    CHECK_THROWS_AS(on.at({0, 0}), Error);

    // item() and to_vector() copy to the host.
    const int before = dev.memory.to_host_calls;
    CHECK(Tensor<double>::scalar(2.5, emu).item() == 2.5);
    CHECK(Tensor<int64_t>::arange(4, emu).to_vector() == std::vector<int64_t>{0, 1, 2, 3});
    CHECK(dev.memory.to_host_calls == before + 2);

    // zeros/full/ones/eye on the device; fill_ and copy_ stay on it (no host transfer).
    CHECK(Tensor<float>::zeros({2, 2}, emu).to_vector() == std::vector<float>(4, 0.0f));
    CHECK(Tensor<double>::full({3}, -1.5, emu).to_vector() == std::vector<double>(3, -1.5));
    CHECK(Tensor<float>::eye(2, emu).to_vector() == std::vector<float>{1, 0, 0, 1});
    auto d = Tensor<float>::ones({2, 3}, emu);
    const int transfers = dev.memory.to_host_calls + dev.memory.from_host_calls;
    d.fill_(4.0f);
    d.slice(1, 0, 1).copy_(Tensor<float>::zeros({2, 1}, emu));
    CHECK(dev.memory.to_host_calls + dev.memory.from_host_calls == transfers);
    CHECK(d.to_vector() == std::vector<float>{0, 4, 4, 0, 4, 4});

    // A view that starts inside its storage moves from there, both ways.
    const auto rows = on.slice(0, 1, 3);
    REQUIRE(rows.offset() == 5);
    CHECK(rows.to(Device::cpu()).to_vector() == host.slice(0, 1, 3).to_vector());
    CHECK(host.slice(0, 2, 3).to(emu).to_vector() == host.slice(0, 2, 3).to_vector());
    // A strided view moves as its values (contiguous on arrival); back on the host, equal.
    const auto t = host.transpose(0, 1).to(emu);
    CHECK(t.is_contiguous());
    CHECK(t.to(Device::cpu()).to_vector() == host.transpose(0, 1).to_vector());

    // Storage types move too; cast stays on the device.
    const auto h = host.cast<bfloat16_t>().to(emu);
    CHECK(h.device() == emu);
    CHECK(h.cast<float>().device() == emu);
    CHECK(h.cast<float>().to_vector() == host.cast<bfloat16_t>().cast<float>().to_vector());
}

TEST_CASE("an op on two devices names both and an op on a device without a compute table says so") {
    StandInDevice dev;
    const auto a = Tensor<float>::ones({2, 2});
    const auto b = Tensor<float>::ones({2, 2}, Device::emulated());
    const std::string m = message_of([&] { (void)add(a, b); });
    CHECK(m.find("add") != std::string::npos);
    CHECK(m.find("different devices") != std::string::npos);
    CHECK(m.find("cpu and emu") != std::string::npos);
    CHECK(message_of([&] { (void)matmul(a, b); }).find("cpu and emu") != std::string::npos);
    CHECK(message_of([&] { Tensor<float>(a).copy_(b); }).find("Tensor::copy_") != std::string::npos);
    const std::string c = message_of([&] { (void)exp(b); });
    CHECK(c.find("does not compute float") != std::string::npos);
    const backend::Capabilities caps = backend::capabilities(Device::emulated());
    CHECK(caps.memory);
    CHECK_FALSE(caps.f32);
    CHECK_FALSE(caps.f64);
    const backend::Capabilities cpu = backend::capabilities(Device::cpu());
    CHECK((cpu.memory && cpu.f32 && cpu.f64 && !cpu.bf16 && !cpu.f16));
    CHECK_FALSE(backend::capabilities(Device::cuda(3)).memory);
}

TEST_CASE("to() is differentiable: the gradient goes back to the source device") {
    StandInDevice dev;
    auto x = Tensor<double>::from({1, 2, 3}, {3}).set_requires_grad(true);
    const auto y = x.to(Device::emulated());
    CHECK(y.grad_fn_name() == "to");
    const auto back = y.to(Device::cpu());
    sum(mul(back, Tensor<double>::from({4, 5, 6}, {3}))).backward();
    REQUIRE(x.grad().defined());
    CHECK(x.grad().device() == Device::cpu());
    CHECK(x.grad().to_vector() == std::vector<double>{4, 5, 6});
}

TEST_CASE("Module::to moves every parameter and keeps requires_grad and printing copies to the host") {
    StandInDevice dev;
    Generator init(3);
    nn::Linear<float> lin(4, 2);
    lin.weight = Tensor<float>::randn({2, 4}, init);
    lin.weight.set_requires_grad(true);
    lin.bias = Tensor<float>::zeros({2});
    const auto w = lin.weight.to_vector();
    lin.to(Device::emulated());
    CHECK(lin.weight.device() == Device::emulated());
    CHECK(lin.bias.device() == Device::emulated());
    CHECK(lin.weight.requires_grad());
    CHECK(lin.weight.is_leaf());
    CHECK_FALSE(lin.bias.requires_grad());
    CHECK(lin.weight.to_vector() == w);
    lin.to(Device::cpu());
    CHECK(lin.weight.device() == Device::cpu());
    CHECK(lin.weight.to_vector() == w);

    std::ostringstream os;
    os << Tensor<float>::from({1.5f, -2}, {2}, Device::emulated());
    CHECK(os.str() == "tensor([1.5, -2], shape=[2], dtype=float32, device=emu)");
}
