// kernels/launch.cuh: how src/cuda starts a kernel, on a device and under the block emulator.
//
//   launch<kern::softmax_fwd_cached<DT, VEC, PW>>(grid, block, smem_bytes, stream)(x, y, rows, ...);
//
// reads as `kernel<<<grid, block, smem_bytes, stream>>>(x, y, rows, ...)` and is exactly that under
// nvcc. Compiled for the emulator (COEFFNET_EMULATED, src/emulator/), the same line runs the kernel
// there with its real grid, block and shared-memory size: the launch plans are tested with the
// kernels. Launch errors surface through cudaGetLastError() either way (COEFFNET_LAUNCH_CHECK).
//
// Which code a kernel file compiles: COEFFNET_DEVICE_CODE is 1 under nvcc and under the emulator
// (the kernels' device paths: wmma, __shared__, shuffles), 0 for a plain host compile that only
// wants the kernels' host-side declarations (layouts, plans).
#pragma once

#if defined(__CUDACC__) || defined(COEFFNET_EMULATED)
#define COEFFNET_DEVICE_CODE 1
#else
#define COEFFNET_DEVICE_CODE 0
#endif

#if COEFFNET_DEVICE_CODE
#include <cuda_runtime.h>

#include <cstddef>
#include <source_location>
#include <string_view>
#include <utility>
#if defined(COEFFNET_EMULATED)
#include <functional>
#include <string>
#include <tuple>
#endif

namespace coeffnet::cuda {

// The kernel's name as the compiler spells the template argument (for the emulator's messages).
template <auto Kernel>
const char* kernel_name() {
    static const std::string name = [](std::string_view f) {
        const size_t a = f.find("Kernel = ");
        if (a == std::string_view::npos) return std::string(f);
        size_t b = f.find_first_of(";]", a);
        std::string s(f.substr(a + 9, b - a - 9));
        for (const char* strip : {"coeffnet::cuda::kern::", "coeffnet::cuda::attn::", "coeffnet::cuda::", "(& ", "& "})
            for (size_t p; (p = s.find(strip)) != std::string::npos;) s.erase(p, std::string_view(strip).size());
        return s;
    }(__PRETTY_FUNCTION__);
    return name.c_str();
}

template <auto Kernel>
struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    std::source_location where;

    template <class... Args>
    void operator()(Args&&... args) const {
#if defined(COEFFNET_EMULATED)
        const std::tuple<std::decay_t<Args>...> params(std::forward<Args>(args)...);  // by value, as a launch copies
        ::coeffnet::emu::LaunchSpec spec{{grid.x, grid.y, grid.z}, {block.x, block.y, block.z}, smem,
                                         reinterpret_cast<const void*>(Kernel), kernel_name<Kernel>(), where};
        const int e = ::coeffnet::emu::launch(spec, [&params] { std::apply(Kernel, params); });
        if (e != 0) ::coeffnet::emu::detail::set_last_error(static_cast<cudaError_t>(e));
#else
        Kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
    }
};

template <auto Kernel>
Launch<Kernel> launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      std::source_location where = std::source_location::current()) {
    return {grid, block, smem, stream, where};
}

}  // namespace coeffnet::cuda
#endif
