// src/emulator/emulator.cpp: the block emulator's scheduler, shadow memory and device arena
// (what it guarantees: emulator.hpp). Compiled without the access instrumentation: only the
// kernel translation units report their loads and stores (the __tsan_* entry points below).
#include "emulator.hpp"

#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>

#include <coeffnet/core/sanitizers.hpp>
#define COEFFNET_EMU_ASAN COEFFNET_ASAN
#if COEFFNET_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The executable's zero-initialised static storage: where static __shared__ arrays live.
extern "C" char __bss_start[];
extern "C" char _end[];

namespace coeffnet::emu {

// Set by the instrumentation's constructor (__tsan_init) in any kernel translation unit.
static bool g_instrumented = false;
// True on the OS thread that is running a CTA: the hooks ignore every other thread (a test may
// allocate from several threads while none runs a kernel).
static thread_local bool t_in_cta = false;

namespace {

constexpr size_t kStackBytes = size_t{256} << 10;
constexpr uint16_t kManyReaders = 0xffff;

// ---- options and statistics ---------------------------------------------------------------------
Options make_options() {
    Options o;
    if (const char* s = std::getenv("COEFFNET_EMU_SEED")) o.seed = std::strtoull(s, nullptr, 10);
    if (const char* s = std::getenv("COEFFNET_EMU_TARGET")) o.target = std::strcmp(s, "a100") == 0 ? Target::a100 : Target::h100;
    if (const char* s = std::getenv("COEFFNET_EMU_SKIP_BARRIER")) o.skip_barrier = s;
    return o;
}

std::string site_str(const std::source_location& w) {
    const char* f = w.file_name();
    // Paths relative to the repository when they are inside it (kernels/..., src/...).
    for (const char* key : {"/kernels/", "/src/", "/include/", "/tests/"})
        if (const char* p = std::strstr(f, key)) {
            f = p + 1;
            break;
        }
    return std::string(f) + ":" + std::to_string(w.line());
}

// ---- fibers -------------------------------------------------------------------------------------
struct Stack {
    void* base = nullptr;  // lowest address (a guard page below)
    size_t size = 0;
};
Stack make_stack() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("coeffnet emulator: cannot map a fiber stack");
    mprotect(p, page, PROT_NONE);
    return {static_cast<char*>(p) + page, kStackBytes};
}

// A fiber's saved context. On x86-64 a switch saves the callee-saved registers on the old stack
// and loads the new stack pointer: 8 instructions, no system call (ucontext's swapcontext also
// saves the signal mask, a system call per switch, which made the emulator spend a third of its
// time in the kernel). Under ASan the switches are announced to it (__sanitizer_*_switch_fiber)
// either way. Elsewhere, ucontext.
#if defined(__x86_64__)
#define COEFFNET_EMU_FAST_SWITCH 1
struct Context {
    void* sp = nullptr;
};
extern "C" void coeffnet_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl coeffnet_emu_switch
    .type coeffnet_emu_switch, @function
coeffnet_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size coeffnet_emu_switch, .-coeffnet_emu_switch
)");
void ctx_switch(Context& from, Context& to) { coeffnet_emu_switch(&from.sp, to.sp); }
// The first switch to a fresh context "returns" into entry with a 16-byte aligned frame.
void ctx_init(Context& c, void* base, size_t size, void (*entry)()) {
    auto* top = reinterpret_cast<void**>((reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t{15});
    top[-1] = nullptr;                                  // entry's return address: it never returns
    top[-2] = reinterpret_cast<void*>(entry);           // popped by ret
    for (int i = 3; i <= 8; ++i) top[-i] = nullptr;     // rbp, rbx, r12-r15
    c.sp = top - 8;
}
#else
#define COEFFNET_EMU_FAST_SWITCH 0
struct Context {
    ucontext_t uc{};
};
void ctx_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
void ctx_init(Context& c, void* base, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = base;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

enum class State { runnable, at_barrier, at_collective, done };

struct Thread {
    Context ctx;
    Builtins b;
    int tid = 0;
    State state = State::runnable;
    std::source_location site;
};

struct Warp {
    unsigned arrived = 0, mask = 0, exited = 0;
    const char* kind = nullptr;
    CollectiveFn complete = nullptr;
    void* ctx = nullptr;
    std::source_location site;
    std::array<void*, 32> payloads{};
};

struct Shadow {
    uint32_t w_epoch = 0, r_epoch = 0;
    uint16_t w_tid = 0, r_tid = 0;
    bool w_atomic = false;
};

struct Allocation {
    size_t bytes = 0, mapped = 0;
};

struct Emulator {
    Options opts = make_options();
    Stats stats;
    std::set<std::string> barrier_sites;
    std::set<std::pair<const char*, unsigned>> seen_sites;  // (file, line) pointers: no string per barrier
    std::map<std::string, int64_t> launch_counts;
    std::map<const void*, int64_t> max_dyn_smem;

    // The running CTA.
    bool active = false;      // a CTA is running: the hooks check accesses
    bool suppress = false;    // the emulator itself is touching memory for a lane (collectives)
    bool aborting = false;    // a fault ended the CTA: the remaining threads unwind
    bool in_hook = false;     // on_access runs for an instrumentation hook (see fault())
    const LaunchSpec* spec = nullptr;
    std::vector<Thread> threads;
    std::vector<Warp> warps;
    std::vector<int> runnable;
    std::vector<Stack> stacks;
    Thread* current = nullptr;
    Context sched;
    const std::function<void()>* body = nullptr;
    int alive = 0, at_barrier = 0;
    std::source_location barrier_site;
    std::string barrier_origin = "the start of the CTA";
    std::string error;
    uint64_t rng = 0;
    Dim3 cta;

    // Shadow state. Epochs grow across CTAs, so "written in this CTA" is w_epoch >= cta_epoch0.
    uint32_t epoch = 0, cta_epoch0 = 0;
    std::vector<unsigned char> dyn_raw;
    unsigned char* dyn = nullptr;
    size_t dyn_bytes = 0;
    std::vector<Shadow> dyn_shadow;
    // Static shared memory: shadow pages made on first touch (a kernel touches a few arrays).
    std::unordered_map<uintptr_t, std::unique_ptr<Shadow[]>> static_pages;
    uintptr_t last_page = ~uintptr_t{0};
    Shadow* last_shadow = nullptr;
    Shadow& static_shadow(uintptr_t a) {
        const uintptr_t page = a >> 12;
        if (page != last_page) {
            auto& p = static_pages[page];
            if (!p) p = std::make_unique<Shadow[]>(4096);
            last_page = page;
            last_shadow = p.get();
        }
        return last_shadow[a & 4095];
    }
    std::vector<uintptr_t> static_touched;  // poisoned at every CTA start
    uintptr_t bss_lo = reinterpret_cast<uintptr_t>(__bss_start), bss_hi = reinterpret_cast<uintptr_t>(_end);

    // Device arena (allocations may come from several OS threads; kernels run one at a time).
    std::recursive_mutex mu;
    char* arena = nullptr;
    size_t arena_bytes = 0, arena_next = 0;
    std::map<uintptr_t, Allocation> allocs;
    uintptr_t hit_lo = 0, hit_hi = 0;  // the allocation the last device access fell in

    // AddressSanitizer's view of the scheduler's own stack (fiber switches are announced to it).
    const void* main_bottom = nullptr;
    size_t main_size = 0;
};

void write_barrier_log();
// Never destroyed (a kernel may run from another static's destructor); the barrier log is
// written at exit. A plain pointer: E() is on every hook's path.
Emulator* g_emulator = nullptr;
Emulator& make_emulator() {
    static Emulator* e = [] {
        auto* p = new Emulator();
        std::atexit(&write_barrier_log);
        return p;
    }();
    g_emulator = e;
    return *e;
}
inline Emulator& E() { return g_emulator != nullptr ? *g_emulator : make_emulator(); }
void write_barrier_log() {
    // A barrier sweep (tests/mutations.sh) needs to know the skip took effect: a site that no
    // test reached would otherwise "survive" for nothing.
    if (!E().opts.skip_barrier.empty())
        std::fprintf(stderr, "coeffnet emulator: barrier %s skipped %lld times\n", E().opts.skip_barrier.c_str(),
                     static_cast<long long>(E().stats.skipped_barriers));
    if (const char* f = std::getenv("COEFFNET_EMU_BARRIER_LOG")) {
        if (FILE* out = std::fopen(f, "a")) {
            for (const auto& s : E().barrier_sites) std::fprintf(out, "%s\n", s.c_str());
            std::fclose(out);
        }
    }
}

uint64_t next_random(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::string hex(uintptr_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
    return buf;
}

// file:line of a code address, by addr2line on the object that holds it (only when reporting).
std::string code_site(const void* pc) {
    if (pc == nullptr) return "(unknown code address)";
    Dl_info info{};
    if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return hex(reinterpret_cast<uintptr_t>(pc));
    const uintptr_t off = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
    std::string cmd = "addr2line -C -i -e '" + std::string(info.dli_fname) + "' " + hex(off) + " 2>/dev/null";
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
        char line[1024];
        while (std::fgets(line, sizeof line, p)) {
            std::string s(line);
            while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
            for (const char* key : {"/kernels/", "/src/", "/include/"})
                if (auto k = s.find(key); k != std::string::npos) {
                    s = s.substr(k + 1);
                    break;
                }
            if (!s.empty() && s.find("??") == std::string::npos) out += (out.empty() ? "" : " inlined into ") + s;
        }
        pclose(p);
    }
    if (out.empty()) out = (info.dli_sname ? std::string(info.dli_sname) : std::string("?")) + "+" + hex(off);
    return out;
}

std::string thread_str(int tid) {
    const Thread& t = E().threads[static_cast<size_t>(tid)];
    return "thread " + std::to_string(tid) + " (threadIdx (" + std::to_string(t.b.thread_idx.x) + "," +
           std::to_string(t.b.thread_idx.y) + "," + std::to_string(t.b.thread_idx.z) + "), warp " +
           std::to_string(tid / 32) + ", lane " + std::to_string(tid % 32) + ")";
}

void switch_to_scheduler(Thread& t);

// The first error of the running CTA wins: "emulated kernel NAME (launched at SITE), block (x,y,z): what".
void record_error(const std::string& what) {
    Emulator& e = E();
    if (!e.error.empty()) return;
    e.error = "emulated kernel " + e.spec->name + " (launched at " + site_str(e.spec->where) + "), block (" +
              std::to_string(e.cta.x) + "," + std::to_string(e.cta.y) + "," + std::to_string(e.cta.z) + "): " + what;
}

// Thrown on a fiber to end its thread after a fault: its frames unwind (nothing leaks) and
// thread_entry catches it.
struct FiberAbort {};

// Records a fault of the running CTA and ends the faulting thread.
[[noreturn]] void fault(const std::string& what) {
    Emulator& e = E();
    record_error(what);
    // Under ASan (leak checking) the faulting thread unwinds; the others are unwound in turn. In
    // an instrumented build a fault may come from an access hook, which the kernel code calls as
    // nothrow (no exception can pass it), so the thread is left for good instead (a few bytes of
    // its frames leak; that build has no leak checker).
    if (COEFFNET_EMU_ASAN && !e.in_hook) throw FiberAbort{};
    e.in_hook = false;
    Thread* t = e.current;
    t->state = State::done;
    e.current = nullptr;
    switch_to_scheduler(*t);
    std::abort();  // never resumed
}

// ---- shadow checks ----------------------------------------------------------------------------
enum class ShadowRule { unwritten_read, read_race, write_race, write_after_read };

// The report of a broken rule (cold: only a faulting access comes here).
[[noreturn, gnu::noinline, gnu::cold]] void shadow_fault(ShadowRule rule, const Shadow& s, uintptr_t addr, bool atomic,
                                                         int tid, const void* pc, const char* space) {
    const Emulator& e = E();
    const std::string where = std::string(space) + " byte " + hex(addr) + " (code at " + code_site(pc) + ")";
    const std::string after = " after the same barrier (" + e.barrier_origin + ")";
    switch (rule) {
        case ShadowRule::unwritten_read:
            fault(thread_str(tid) + " reads " + where + " that no thread of this CTA has written");
        case ShadowRule::read_race:
            fault("shared-memory race: " + thread_str(tid) + (atomic ? " updates " : " reads ") + where + ", which " +
                  thread_str(s.w_tid) + " wrote" + after);
        case ShadowRule::write_race:
            fault("shared-memory race: " + thread_str(tid) + " and " + thread_str(s.w_tid) + " both write " + where + after);
        case ShadowRule::write_after_read:
            break;
    }
    fault("shared-memory race: " + thread_str(tid) + " writes " + where + ", which " +
          (s.r_tid == kManyReaders ? std::string("other threads") : thread_str(s.r_tid)) + " read" + after);
}

// The rules, on every access to a shared byte, and the byte's new state. Inline: this is the
// emulator's hot path (a third of an emulated kernel's time); the reports are out of line.
inline void check_shadow(Shadow& s, uintptr_t addr, bool write, bool atomic, int tid, const void* pc, const char* space,
                         uint32_t epoch, uint32_t epoch0) {
    const bool written_now = s.w_epoch == epoch && s.w_tid != tid;
    const bool race = written_now && !(atomic && s.w_atomic);
    if (!write || atomic) {
        if (s.w_epoch < epoch0) [[unlikely]]
            shadow_fault(ShadowRule::unwritten_read, s, addr, atomic, tid, pc, space);
        if (race) [[unlikely]]
            shadow_fault(ShadowRule::read_race, s, addr, atomic, tid, pc, space);
    }
    if (write) {
        if (race) [[unlikely]]
            shadow_fault(ShadowRule::write_race, s, addr, atomic, tid, pc, space);
        if (s.r_epoch == epoch && s.r_tid != tid) [[unlikely]]
            shadow_fault(ShadowRule::write_after_read, s, addr, atomic, tid, pc, space);
        s.w_epoch = epoch;
        s.w_tid = static_cast<uint16_t>(tid);
        s.w_atomic = atomic;
    } else if (s.r_epoch != epoch) {
        s.r_epoch = epoch;
        s.r_tid = static_cast<uint16_t>(tid);
    } else if (s.r_tid != tid) {
        s.r_tid = kManyReaders;
    }
}

void check_device(uintptr_t a, size_t n, int tid, const void* pc) {
    Emulator& e = E();
    ++e.stats.device_checks;
    if (a >= e.hit_lo && a + n <= e.hit_hi) return;
    auto it = e.allocs.upper_bound(a);
    if (it != e.allocs.begin()) {
        --it;
        if (a >= it->first && a + n <= it->first + it->second.bytes) {
            e.hit_lo = it->first;
            e.hit_hi = it->first + it->second.bytes;
            return;
        }
        fault(thread_str(tid) + " accesses " + std::to_string(n) + " bytes of device memory at " + hex(a) + ", " +
              std::to_string(a - it->first) + " bytes into the " + std::to_string(it->second.bytes) +
              "-byte allocation at " + hex(it->first) + " (code at " + code_site(pc) + ")");
    }
    fault(thread_str(tid) + " accesses device memory at " + hex(a) + " below every allocation (code at " +
          code_site(pc) + ")");
}

void on_access(const void* p, size_t n, bool write, bool atomic, int tid, const void* pc) {
    Emulator& e = E();
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a - reinterpret_cast<uintptr_t>(e.dyn) < e.dyn_bytes) {
        ++e.stats.shared_checks;
        const size_t off = a - reinterpret_cast<uintptr_t>(e.dyn);
        if (off + n > e.dyn_bytes)
            fault(thread_str(tid) + " accesses " + std::to_string(n) + " bytes at offset " + std::to_string(off) +
                  " of the " + std::to_string(e.dyn_bytes) + "-byte dynamic shared memory (code at " + code_site(pc) + ")");
        Shadow* sh = e.dyn_shadow.data() + off;
        for (size_t i = 0; i < n; ++i)
            check_shadow(sh[i], a + i, write, atomic, tid, pc, "dynamic shared", e.epoch, e.cta_epoch0);
    } else if (a >= e.bss_lo && a < e.bss_hi) {
        ++e.stats.shared_checks;
        for (size_t i = 0; i < n; ++i) {
            Shadow& sh = e.static_shadow(a + i);
            if (sh.w_epoch == 0 && sh.r_epoch == 0) e.static_touched.push_back(a + i);
            check_shadow(sh, a + i, write, atomic, tid, pc, "static shared", e.epoch, e.cta_epoch0);
        }
    } else if (e.arena != nullptr && a - reinterpret_cast<uintptr_t>(e.arena) < e.arena_bytes) {
        check_device(a, n, tid, pc);
    }
}

[[maybe_unused]] inline void hook(const void* p, size_t n, bool write, const void* pc) {  // the __tsan_* entry points
    if (!t_in_cta) return;
    Emulator& e = E();
    if (!e.active || e.suppress || e.current == nullptr || !e.opts.shadow) return;
    e.in_hook = true;
    on_access(p, n, write, false, e.current->tid, pc);
    e.in_hook = false;
}

// ---- the scheduler ------------------------------------------------------------------------------
void switch_to_scheduler(Thread& t) {
    Emulator& e = E();
#if COEFFNET_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, e.main_bottom, e.main_size);
    ctx_switch(t.ctx, e.sched);
    __sanitizer_finish_switch_fiber(fake, &e.main_bottom, &e.main_size);
#else
    ctx_switch(t.ctx, e.sched);
#endif
}

void make_runnable(int tid) {
    Emulator& e = E();
    e.threads[static_cast<size_t>(tid)].state = State::runnable;
    e.runnable.push_back(tid);
}

void release_barrier() {
    Emulator& e = E();
    ++e.stats.barriers;
    ++e.epoch;
    e.barrier_origin = "the barrier at " + site_str(e.barrier_site);
    e.at_barrier = 0;
    for (Thread& t : e.threads)
        if (t.state == State::at_barrier) make_runnable(t.tid);
}

// Blocks the running thread until the scheduler resumes it.
void block(State s) {
    Emulator& e = E();
    Thread* t = e.current;
    t->state = s;
    e.current = nullptr;
    switch_to_scheduler(*t);
    e.current = t;  // resumed: the scheduler set state to runnable
    if (e.aborting) throw FiberAbort{};
}

void check_pending_collectives() {
    Emulator& e = E();
    for (size_t w = 0; w < e.warps.size(); ++w) {
        const Warp& wp = e.warps[w];
        if (wp.arrived == 0) continue;
        for (int l = 0; l < 32; ++l) {
            const size_t tid = w * 32 + static_cast<size_t>(l);
            if ((wp.mask >> l & 1u) && !(wp.arrived >> l & 1u) &&
                (tid >= e.threads.size() || e.threads[tid].state == State::done)) {
                std::ostringstream m;
                m << wp.kind << " at " << site_str(wp.site) << ": warp " << w << " waits for lane " << l
                  << (tid >= e.threads.size() ? ", which does not exist (the block has " + std::to_string(e.threads.size()) + " threads)"
                                              : ", which has exited")
                  << " (mask " << hex(wp.mask) << ")";
                record_error(m.str());
                return;
            }
        }
    }
}

void thread_entry() {
    Emulator& e = E();
#if COEFFNET_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &e.main_bottom, &e.main_size);
#endif
    Thread* t = e.current;
    if (!e.aborting) {
        try {
            (*e.body)();
        } catch (const FiberAbort&) {
        } catch (const std::exception& ex) {
            record_error("exception in " + thread_str(t->tid) + ": " + ex.what());
        }
    }
    t->state = State::done;
    e.warps[static_cast<size_t>(t->tid / 32)].exited |= 1u << (t->tid % 32);
    --e.alive;
    if (!e.aborting) {
        if (e.at_barrier > 0 && e.at_barrier == e.alive) release_barrier();
        check_pending_collectives();
    }
    e.current = nullptr;
#if COEFFNET_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, e.main_bottom, e.main_size);  // this fiber ends
#endif
    Context dead;  // this fiber is never resumed
    ctx_switch(dead, e.sched);
}

void deadlock() {
    Emulator& e = E();
    std::ostringstream m;
    m << "deadlock: no thread can run.";
    std::map<std::string, std::vector<int>> where;
    for (const Thread& t : e.threads) {
        if (t.state == State::at_barrier) where["__syncthreads at " + site_str(t.site)].push_back(t.tid);
        else if (t.state == State::at_collective)
            where[std::string(e.warps[static_cast<size_t>(t.tid / 32)].kind) + " at " + site_str(t.site)].push_back(t.tid);
    }
    for (const auto& [site, tids] : where) {
        m << " " << tids.size() << " thread(s) wait at " << site << " (first: " << tids.front() << ");";
    }
    m << " " << std::count_if(e.threads.begin(), e.threads.end(), [](const Thread& t) { return t.state == State::done; })
      << " have exited";
    record_error(m.str());
}

void run_cta(const LaunchSpec& spec, Dim3 cta) {
    Emulator& e = E();
    const int n = static_cast<int>(spec.block.x * spec.block.y * spec.block.z);
    e.cta = cta;
    e.threads.assign(static_cast<size_t>(n), Thread{});
    e.warps.assign(static_cast<size_t>((n + 31) / 32), Warp{});
    while (e.stacks.size() < static_cast<size_t>(n)) e.stacks.push_back(make_stack());
    e.runnable.clear();
    e.alive = n;
    e.at_barrier = 0;
    e.barrier_origin = "the start of the CTA";
    e.cta_epoch0 = e.epoch = e.epoch + 1;
    if (e.dyn_bytes > 0) std::memset(e.dyn, 0xff, e.dyn_bytes);  // poison: NaN as floats
    for (uintptr_t addr : e.static_touched) *reinterpret_cast<unsigned char*>(addr) = 0xff;
    for (int i = 0; i < n; ++i) {
        Thread& t = e.threads[static_cast<size_t>(i)];
        t.tid = i;
        t.b.thread_idx = {static_cast<unsigned>(i) % spec.block.x, static_cast<unsigned>(i) / spec.block.x % spec.block.y,
                          static_cast<unsigned>(i) / (spec.block.x * spec.block.y)};
        t.b.block_idx = cta;
        t.b.block_dim = spec.block;
        t.b.grid_dim = spec.grid;
        Stack& st = e.stacks[static_cast<size_t>(i)];
#if COEFFNET_EMU_ASAN
        __asan_unpoison_memory_region(st.base, st.size);
#endif
        ctx_init(t.ctx, st.base, st.size, &thread_entry);
        e.runnable.push_back(i);
    }
    e.stats.threads += n;
    ++e.stats.ctas;
    e.active = true;
    t_in_cta = true;
    e.aborting = false;
    while (true) {
        if (!e.error.empty() && !e.aborting) {
            // A fault: every thread that has not finished is resumed once and unwinds (FiberAbort).
            e.aborting = true;
            e.runnable.clear();
            for (const Thread& t : e.threads)
                if (t.state != State::done) e.runnable.push_back(t.tid);
        }
        if (e.runnable.empty()) {
            if (e.alive == 0 || e.aborting) break;
            deadlock();
            continue;
        }
        const size_t k = e.aborting ? e.runnable.size() - 1 : static_cast<size_t>(next_random(e.rng) % e.runnable.size());
        const int tid = e.runnable[k];
        e.runnable[k] = e.runnable.back();
        e.runnable.pop_back();
        Thread& t = e.threads[static_cast<size_t>(tid)];
        e.current = &t;
#if COEFFNET_EMU_ASAN
        void* fake = nullptr;
        Stack& st = e.stacks[static_cast<size_t>(tid)];
        __sanitizer_start_switch_fiber(&fake, st.base, st.size);
        ctx_switch(e.sched, t.ctx);
        __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
        ctx_switch(e.sched, t.ctx);
#endif
        e.current = nullptr;
    }
    e.active = false;
    t_in_cta = false;
}

}  // namespace

// ---- public API -------------------------------------------------------------------------------
Options& options() { return E().opts; }
Stats& stats() { return E().stats; }
std::vector<std::string> barrier_sites() { return {E().barrier_sites.begin(), E().barrier_sites.end()}; }
bool instrumented() { return g_instrumented && !COEFFNET_EMU_ASAN; }
int64_t max_shared_per_block(Target t) { return t == Target::a100 ? int64_t{163} << 10 : int64_t{227} << 10; }

const Builtins& builtins() {
    Thread* t = E().current;
    if (t == nullptr) throw std::logic_error("coeffnet emulator: a CUDA built-in variable read outside a kernel");
    return t->b;
}

int thread_linear_id() { return E().current->tid; }

void syncthreads(const std::source_location& where) {
    Emulator& e = E();
    Thread* t = e.current;
    if (e.seen_sites.insert({where.file_name(), where.line()}).second) e.barrier_sites.insert(site_str(where));
    if (!e.opts.skip_barrier.empty() && site_str(where) == e.opts.skip_barrier) {
        ++e.stats.skipped_barriers;
        return;
    }
    if (e.at_barrier > 0 && (std::strcmp(e.barrier_site.file_name(), where.file_name()) != 0 ||
                             e.barrier_site.line() != where.line()))
        fault(thread_str(t->tid) + " waits at the barrier at " + site_str(where) + " while other threads wait at " +
              site_str(e.barrier_site) + " (divergent __syncthreads)");
    e.barrier_site = where;
    t->site = where;
    ++e.at_barrier;
    if (e.at_barrier == e.alive) {  // the last one in: the others wake, this one goes on
        release_barrier();
        return;
    }
    block(State::at_barrier);
}

void warp_collective(const char* kind, unsigned mask, void* payload, CollectiveFn complete, void* ctx,
                     const std::source_location& where) {
    Emulator& e = E();
    Thread* t = e.current;
    ++e.stats.collectives;
    const int lane = t->tid % 32;
    Warp& w = e.warps[static_cast<size_t>(t->tid / 32)];
    if (!(mask >> lane & 1u))
        fault(thread_str(t->tid) + " calls " + kind + " at " + site_str(where) + " with mask " + hex(mask) +
              ", which leaves out the calling lane");
    if (w.arrived != 0 && (w.mask != mask || (w.kind != kind && std::strcmp(w.kind, kind) != 0)))
        fault(thread_str(t->tid) + " calls " + kind + " at " + site_str(where) + " (mask " + hex(mask) +
              ") while lanes of its warp wait in " + w.kind + " at " + site_str(w.site) + " (mask " + hex(w.mask) + ")");
    if (w.arrived == 0) {
        w.mask = mask;
        w.kind = kind;
        w.complete = complete;
        w.ctx = ctx;
        w.site = where;
    }
    w.payloads[static_cast<size_t>(lane)] = payload;
    w.arrived |= 1u << lane;
    t->site = where;
    if (w.arrived == mask) {
        const int base = t->tid / 32 * 32;
        e.suppress = true;
        std::string failed;
        try {
            w.complete(w.payloads.data(), mask, w.ctx);
        } catch (const std::exception& ex) {
            failed = ex.what();
        }
        e.suppress = false;
        if (!failed.empty()) fault(std::string(kind) + " at " + site_str(where) + ": " + failed);
        w.arrived = 0;
        w.payloads.fill(nullptr);
        for (int l = 0; l < 32; ++l)
            if ((mask >> l & 1u) && base + l != t->tid) make_runnable(base + l);
        if (!e.error.empty()) fault("");
        return;
    }
    // A lane in the mask that has already exited, or does not exist, can never arrive.
    const int base = t->tid / 32 * 32, present = std::min(32, static_cast<int>(e.threads.size()) - base);
    const unsigned missing = (present < 32 ? ~((1u << present) - 1u) : 0u) | w.exited;
    if (const unsigned gone = mask & missing & ~w.arrived) {
        const int l = __builtin_ctz(gone);
        fault(std::string(kind) + " at " + site_str(where) + ": mask " + hex(mask) + " names lane " + std::to_string(l) +
              (l >= present ? ", which does not exist" : ", which has exited"));
    }
    block(State::at_collective);
}

void check_access(const void* addr, size_t bytes, bool write, int tid, const char* what) {
    Emulator& e = E();
    if (!e.active || !e.opts.shadow || !instrumented()) return;  // the shadow knows only instrumented writes
    (void)what;
    on_access(addr, bytes, write, false, tid, __builtin_return_address(0));
}

template <class T>
static T atomic_add_impl(T* a, T v, const void* pc) {
    Emulator& e = E();
    if (e.active && e.current != nullptr && e.opts.shadow && instrumented())
        on_access(a, sizeof(T), true, true, e.current->tid, pc);
    const T old = *a;
    *a = old + v;
    return old;
}
float atomic_add(float* a, float v) { return atomic_add_impl(a, v, __builtin_return_address(0)); }
double atomic_add(double* a, double v) { return atomic_add_impl(a, v, __builtin_return_address(0)); }
int atomic_add(int* a, int v) { return atomic_add_impl(a, v, __builtin_return_address(0)); }
unsigned atomic_add(unsigned* a, unsigned v) { return atomic_add_impl(a, v, __builtin_return_address(0)); }
unsigned long long atomic_add(unsigned long long* a, unsigned long long v) {
    return atomic_add_impl(a, v, __builtin_return_address(0));
}

unsigned char* dynamic_shared() { return E().dyn; }

int launch(const LaunchSpec& spec, const std::function<void()>& body) {
    Emulator& e = E();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (e.active) throw std::logic_error("coeffnet emulator: a kernel launched from inside a kernel");
    const uint64_t threads = uint64_t{spec.block.x} * spec.block.y * spec.block.z;
    if (threads == 0 || threads > 1024 || spec.block.x > 1024 || spec.block.y > 1024 || spec.block.z > 64 ||
        spec.grid.x == 0 || spec.grid.y == 0 || spec.grid.z == 0 || spec.grid.y > 65535 || spec.grid.z > 65535 ||
        spec.grid.x > 0x7fffffffu)
        return 9;  // cudaErrorInvalidConfiguration
    const int64_t limit = max_shared_per_block(e.opts.target);
    const int64_t smem = static_cast<int64_t>(spec.smem);
    if (smem > (int64_t{48} << 10)) {
        const auto it = e.max_dyn_smem.find(spec.kernel);
        if (it == e.max_dyn_smem.end() || smem > it->second || smem > limit) return 1;  // cudaErrorInvalidValue
    }
    ++e.stats.launches;
    ++e.launch_counts[spec.name];
    e.spec = &spec;
    e.body = &body;
    e.error.clear();
    e.suppress = false;
    e.rng = e.opts.seed * 0x2545f4914f6cdd1dull + static_cast<uint64_t>(e.stats.launches);
    e.dyn_bytes = spec.smem;
    e.dyn_raw.resize(spec.smem + 128);  // poisoned per CTA (run_cta)
    e.dyn = e.dyn_raw.data() + (128 - reinterpret_cast<uintptr_t>(e.dyn_raw.data()) % 128) % 128;
    e.dyn_shadow.assign(spec.smem, Shadow{});
    if (spec.smem == 0) e.dyn = nullptr;
    for (unsigned z = 0; z < spec.grid.z && e.error.empty(); ++z)
        for (unsigned y = 0; y < spec.grid.y && e.error.empty(); ++y)
            for (unsigned x = 0; x < spec.grid.x && e.error.empty(); ++x) run_cta(spec, {x, y, z});
    e.dyn = nullptr;
    e.dyn_bytes = 0;
    e.spec = nullptr;
    if (!e.error.empty()) {
        std::string msg = e.error;
        e.error.clear();
        throw KernelError(msg);
    }
    return 0;
}

// ---- device memory -----------------------------------------------------------------------------
void* device_alloc(size_t bytes) {
    Emulator& e = E();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    const size_t n = std::max<size_t>(bytes, 1);
#if COEFFNET_EMU_ASAN
    void* p = std::aligned_alloc(256, (n + 255) / 256 * 256);
    if (p == nullptr) return nullptr;
    e.allocs[reinterpret_cast<uintptr_t>(p)] = {bytes, 0};
    return p;
#else
    if (e.arena == nullptr) {
        e.arena_bytes = size_t{1} << 38;
        void* a = mmap(nullptr, e.arena_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (a == MAP_FAILED) throw std::runtime_error("coeffnet emulator: cannot reserve the device arena");
        e.arena = static_cast<char*>(a);
    }
    const size_t gap = size_t{64} << 10;  // a guard gap after every allocation
    const size_t mapped = (n + gap - 1) / gap * gap;
    if (e.arena_next + mapped + gap > e.arena_bytes) return nullptr;
    char* p = e.arena + e.arena_next;
    if (mprotect(p, mapped, PROT_READ | PROT_WRITE) != 0) return nullptr;
    e.arena_next += mapped + gap;
    e.allocs[reinterpret_cast<uintptr_t>(p)] = {bytes, mapped};
    return p;
#endif
}

bool device_free(void* p) {
    Emulator& e = E();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    auto it = e.allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == e.allocs.end()) return false;
    e.hit_lo = e.hit_hi = 0;
#if COEFFNET_EMU_ASAN
    std::free(p);
#else
    madvise(p, it->second.mapped, MADV_DONTNEED);
    mprotect(p, it->second.mapped, PROT_NONE);  // a later access faults (use after free)
#endif
    e.allocs.erase(it);
    return true;
}

bool is_device_pointer(const void* p, size_t bytes) {
    Emulator& e = E();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = e.allocs.upper_bound(a);
    if (it == e.allocs.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + std::max<size_t>(it->second.bytes, 1);
}

void set_max_dynamic_shared(const void* kernel, int64_t bytes) { E().max_dyn_smem[kernel] = bytes; }
int64_t max_dynamic_shared(const void* kernel) {
    auto it = E().max_dyn_smem.find(kernel);
    return it == E().max_dyn_smem.end() ? int64_t{48} << 10 : it->second;
}

int64_t launches_of(const std::string& prefix) {
    int64_t n = 0;
    for (const auto& [name, c] : E().launch_counts)
        if (name.compare(0, prefix.size(), prefix) == 0) n += c;
    return n;
}
void reset_launch_counts() { E().launch_counts.clear(); }

}  // namespace coeffnet::emu

#if !COEFFNET_EMU_ASAN  // under AddressSanitizer the kernels are not instrumented (emulator.hpp)
// ---- the access instrumentation's entry points ------------------------------------------------
// GCC's -fsanitize=thread turns every load and store of the kernel translation units into a call
// to one of these (the ThreadSanitizer run time is not linked: these are the whole run time).
// Atomic builtins in those units (shared_ptr's counts, for example) come here too and are done
// with the compiler's own atomics.
using coeffnet::emu::hook;
extern "C" {
void __tsan_init() { coeffnet::emu::g_instrumented = true; }
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_ignore_thread_begin() {}
void __tsan_ignore_thread_end() {}
#define COEFFNET_EMU_RW(n)                                                                            \
    void __tsan_read##n(void* p) { hook(p, n, false, __builtin_return_address(0)); }                  \
    void __tsan_write##n(void* p) { hook(p, n, true, __builtin_return_address(0)); }                  \
    void __tsan_unaligned_read##n(void* p) { hook(p, n, false, __builtin_return_address(0)); }        \
    void __tsan_unaligned_write##n(void* p) { hook(p, n, true, __builtin_return_address(0)); }        \
    void __tsan_volatile_read##n(void* p) { hook(p, n, false, __builtin_return_address(0)); }         \
    void __tsan_volatile_write##n(void* p) { hook(p, n, true, __builtin_return_address(0)); }         \
    void __tsan_read##n##_pc(void* p, void* pc) { hook(p, n, false, pc); }                            \
    void __tsan_write##n##_pc(void* p, void* pc) { hook(p, n, true, pc); }
COEFFNET_EMU_RW(1)
COEFFNET_EMU_RW(2)
COEFFNET_EMU_RW(4)
COEFFNET_EMU_RW(8)
COEFFNET_EMU_RW(16)
#undef COEFFNET_EMU_RW
void __tsan_read_range(void* p, unsigned long n) { hook(p, n, false, __builtin_return_address(0)); }
void __tsan_write_range(void* p, unsigned long n) { hook(p, n, true, __builtin_return_address(0)); }
void __tsan_vptr_read(void**) {}
void __tsan_vptr_update(void**, void*) {}

// Atomics: memory orders are the C++ ones (0 relaxed .. 5 seq_cst), as the builtins take them.
#define COEFFNET_EMU_ATOMIC(bits, T)                                                                          \
    T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }  \
    void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); } \
    T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); } \
    T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); } \
    T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); } \
    T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); } \
    T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }   \
    T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); } \
    int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                   \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);               \
    }                                                                                                         \
    int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                     \
        return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                \
    }                                                                                                         \
    T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                         \
        __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                     \
        return c;                                                                                             \
    }
COEFFNET_EMU_ATOMIC(8, unsigned char)
COEFFNET_EMU_ATOMIC(16, unsigned short)
COEFFNET_EMU_ATOMIC(32, unsigned int)
COEFFNET_EMU_ATOMIC(64, unsigned long long)
#undef COEFFNET_EMU_ATOMIC
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}
#endif
