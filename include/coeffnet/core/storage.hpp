// coeffnet/core/storage.hpp: Storage, the memory a tensor views: an owning handle, its size in
// bytes, and the device it lives on.
//
// A Storage is a value that shares its memory (copying it copies the handle, like ATen's
// c10::Storage over StorageImpl, or candle's Storage over BackendStorage). The handle is a
// shared_ptr<void> whose deleter gives the memory back to whoever made it: the host's allocator
// for the CPU backend's (core/host_allocator.hpp: its caching allocator for large buffers,
// ::operator delete for small ones), the CUDA backend's caching allocator for its blocks (see
// cuda/runtime.hpp), or nothing of ours for memory owned
// elsewhere (a memory-mapped file, via Tensor::from_blob). data() is an address on the storage's
// device: a host pointer only where device().is_cpu().
//
// Tensors are typed views over an untyped Storage (TensorImpl = storage + shape, strides, offset
// + autograd state; tensor/tensor.hpp), so views of one storage may differ in shape, not in type.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include "device.hpp"
#include "host_allocator.hpp"

namespace coeffnet {

class Storage {
public:
    Storage() = default;
    Storage(std::shared_ptr<void> handle, size_t nbytes, Device device)
        : handle_(std::move(handle)), nbytes_(nbytes), device_(device) {}

    // 64-byte aligned host memory of at least one byte (an empty tensor still has an address),
    // from allocate_host_memory (core/host_allocator.hpp: large buffers are cached).
    static Storage allocate_host(size_t nbytes) { return {allocate_host_memory(nbytes), nbytes, Device::cpu()}; }

    void* data() const { return handle_.get(); }  // an address on device()
    size_t nbytes() const { return nbytes_; }
    Device device() const { return device_; }
    const std::shared_ptr<void>& handle() const { return handle_; }
    explicit operator bool() const { return static_cast<bool>(handle_); }
    // True when both name the same memory (views of one storage alias each other).
    bool same_memory(const Storage& other) const { return handle_.get() == other.handle_.get(); }

private:
    std::shared_ptr<void> handle_;
    size_t nbytes_ = 0;
    Device device_;
};

}  // namespace coeffnet
