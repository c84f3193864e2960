// src/emulator/emulator.hpp: the block emulator that runs coeffnet's CUDA kernels on the host.
//
// What it is: the kernels in kernels/*.cuh and the launchers in src/cuda/*.cu, compiled by the
// host compiler against the CUDA stand-in headers in src/emulator/include/ (cuda_runtime.h,
// cublas_v2.h, cuda_bf16.h, cuda_fp16.h, mma.h), run by this emulator. The device code is the
// code nvcc compiles: nothing in a kernel knows it is emulated.
//
// What it guarantees:
// - Each CTA runs with its real thread count. Every CUDA thread is a fiber; a fiber runs until it
//   reaches a barrier (__syncthreads), a warp collective (__shfl_*_sync, the wmma calls) or its
//   end, and the next fiber is picked at random from the runnable ones. There is no implicit warp
//   lockstep: lanes meet only at the collectives they call. The random choices come from the
//   seed (Options::seed), so a run, and a failure, reproduces.
// - Barriers: a __syncthreads releases when every thread of the CTA that has not exited reaches
//   it; threads waiting at different barrier call sites, or a warp collective that can never
//   complete, are errors naming the sites and the threads.
// - Shared memory is shadow-checked. Every load and store in the kernel translation units is
//   reported to the emulator (they are compiled with GCC's -fsanitize=thread instrumentation and
//   linked without its run time: the emulator defines the __tsan_* entry points). For each byte
//   of shared memory the emulator keeps the last writer and the barrier epoch of the write, and
//   the last reader: reading a byte another thread wrote since the last barrier, writing one
//   another thread read or wrote since then, or reading one nobody wrote in this CTA, is an error
//   that names the kernel, the code address (file:line via addr2line), both threads and the
//   barrier the epoch began at. Static __shared__ arrays are recognised by address (they are the
//   only static-storage objects kernel code touches); the dynamic buffer is poisoned per CTA.
// - Device memory comes from an arena with guard gaps; a kernel access outside every live
//   allocation is an error (and a host dereference of a device pointer faults, as on a GPU).
//   Under AddressSanitizer (the CI sanitizer job) allocations come from malloc instead, so
//   ASan checks them, and the shadow checks are off (the two instrumentations cannot be combined).
// - atomicAdd is atomic (fibers switch only at collectives) and marked in the shadow state.
// - Launch limits of the target: 1024 threads per block, 48 KiB of dynamic shared memory unless
//   the kernel opted in with cudaFuncSetAttribute, and the target's per-block maximum (227 KiB
//   for H100/H200, 163 KiB for A100; Options::target).
// - The runtime calls the launchers make (cudaMalloc, copies, memset, one in-order stream) and
//   cuBLAS's GEMMs (a reference GEMM with cuBLAS's column-major contract: transa/transb,
//   lda/ldb/ldc checks, batch strides including 0) are emulated in src/emulator/runtime.cpp.
//   Work runs at the call, in order, so every stream is trivially in order.
//
// Mutants without rebuilds: Options::skip_barrier names one barrier call site ("file:line") that
// every thread then passes without waiting; tests/mutations.sh sweeps every site.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <vector>

namespace coeffnet::emu {

struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// An error found while running a kernel (a race, an uninitialised read, a deadlock, an access
// outside device memory): launch() throws it at the launch's call site.
struct KernelError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Target { h100, a100 };

struct Options {
    uint64_t seed = 1;           // picks the thread interleavings
    Target target = Target::h100;
    std::string skip_barrier;    // "file:line" of a barrier to skip (a mutant); empty: none
    bool shadow = true;          // shared-memory and device-memory checks (needs the instrumentation)
};
// The options in force: from the environment at start-up (COEFFNET_EMU_SEED, COEFFNET_EMU_TARGET
// = h100|a100, COEFFNET_EMU_SKIP_BARRIER), changeable by tests.
Options& options();

struct Stats {
    int64_t launches = 0, ctas = 0, threads = 0, barriers = 0, collectives = 0;
    int64_t shared_checks = 0, device_checks = 0;
    int64_t skipped_barriers = 0;     // how often Options::skip_barrier was honoured
};
Stats& stats();
// Every barrier call site reached so far ("file:line"), for the barrier sweep; also written to
// the file named by COEFFNET_EMU_BARRIER_LOG at exit.
std::vector<std::string> barrier_sites();
// True when the kernel translation units carry the access instrumentation (shadow checks on).
bool instrumented();
// Launch limits of the target.
int64_t max_shared_per_block(Target t);

// ---- what the CUDA stand-in headers call (not for kernels or tests to call directly) ---------
struct Builtins {
    Dim3 thread_idx, block_idx, block_dim, grid_dim;
};
const Builtins& builtins();  // of the running thread

void syncthreads(const std::source_location& where);

// A warp collective: every lane in `mask` (of the calling thread's warp) calls it with the same
// kind and mask; when the last one arrives, complete(payloads, mask, lane_count) runs once with each
// participating lane's payload (indexed by lane; others null) and every lane goes on.
using CollectiveFn = void (*)(void** payloads, unsigned mask, void* ctx);
void warp_collective(const char* kind, unsigned mask, void* payload, CollectiveFn complete, void* ctx,
                     const std::source_location& where);
int thread_linear_id();

// Checked accesses done on a thread's behalf by the emulator (wmma loads and stores).
void check_access(const void* addr, size_t bytes, bool write, int tid, const char* what);
float atomic_add(float* addr, float v);
double atomic_add(double* addr, double v);
int atomic_add(int* addr, int v);
unsigned atomic_add(unsigned* addr, unsigned v);
unsigned long long atomic_add(unsigned long long* addr, unsigned long long v);

// The dynamic shared memory of the running CTA.
unsigned char* dynamic_shared();

// Runs one kernel launch: grid x block threads, each calling body(). Throws KernelError.
struct LaunchSpec {
    Dim3 grid, block;
    size_t smem = 0;
    const void* kernel = nullptr;       // identity, for cudaFuncSetAttribute's opt-in
    std::string name;                   // the kernel's name, for messages
    std::source_location where;
};
// Returns a cudaError_t value: 0 on success, else the launch-configuration error (the kernel does
// not run). Faults inside the kernel throw KernelError.
int launch(const LaunchSpec& spec, const std::function<void()>& body);

// Device memory (the arena). Returns null when out of memory.
void* device_alloc(size_t bytes);
bool device_free(void* p);
bool is_device_pointer(const void* p, size_t bytes = 1);
void set_max_dynamic_shared(const void* kernel, int64_t bytes);
int64_t max_dynamic_shared(const void* kernel);

// The launch counter per kernel name (tests assert a launcher reached the kernels it should).
int64_t launches_of(const std::string& name_prefix);
void reset_launch_counts();

}  // namespace coeffnet::emu
