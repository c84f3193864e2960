// coeffnet/io/file.hpp: files as bytes (POSIX): a file mapped for reading, and writes that
// replace a file whole.
//
// MappedBytes::map maps a file copy-on-write (MAP_PRIVATE of a file opened read-only): writing
// through the mapping changes this process's copy, never the file. As with any mapping,
// truncating the file while it is mapped is undefined (SIGBUS); write_file_atomic never does
// that, it replaces the file.
//
// write_file_atomic writes to a temporary file beside the target, syncs it and renames it over
// the target: a crash leaves the old file or the new one, never half of one, and mappings of the
// old file stay valid. write_file writes in place (for files nothing maps or reads concurrently,
// such as the images of a generated data set).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "../core/error.hpp"

namespace coeffnet::io {

namespace detail {

inline std::string errno_str(int err) { return std::generic_category().message(err); }

class FdCloser {
public:
    explicit FdCloser(int fd) : fd_(fd) {}
    FdCloser(const FdCloser&) = delete;
    FdCloser& operator=(const FdCloser&) = delete;
    ~FdCloser() { close(); }
    int get() const { return fd_; }
    int close() {
        const int rc = fd_ >= 0 ? ::close(fd_) : 0;
        fd_ = -1;
        return rc;
    }

private:
    int fd_;
};

}  // namespace detail

// Bytes to read: a private mapping of a file, or a 64-byte-aligned copy of an in-memory buffer.
// Held by shared_ptr, so views into it (zero-copy tensors) can share its ownership.
class MappedBytes {
public:
    MappedBytes(const MappedBytes&) = delete;
    MappedBytes& operator=(const MappedBytes&) = delete;
    ~MappedBytes() {
        if (!data_) return;
        if (mapped_) ::munmap(data_, size_);
        else ::operator delete[](data_, std::align_val_t{64});
    }

    // Maps the file; throws naming it. An empty file maps to no bytes.
    static std::shared_ptr<MappedBytes> map(const std::filesystem::path& path) {
        const std::string name = path.string();
        detail::FdCloser fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) fail(name, ": cannot open: ", detail::errno_str(errno));
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) fail(name, ": cannot stat: ", detail::errno_str(errno));
        if (!S_ISREG(st.st_mode)) fail(name, ": not a regular file");
        const auto size = static_cast<size_t>(st.st_size);
        std::shared_ptr<MappedBytes> out(new MappedBytes());
        if (size == 0) return out;
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
        if (p == MAP_FAILED) fail(name, ": cannot map ", size, " bytes: ", detail::errno_str(errno));
        out->data_ = static_cast<std::byte*>(p);
        out->size_ = size;
        out->mapped_ = true;
        return out;
    }

    // A 64-byte-aligned copy of `bytes`.
    static std::shared_ptr<MappedBytes> copy_of(std::string_view bytes) {
        std::shared_ptr<MappedBytes> out(new MappedBytes());
        if (bytes.empty()) return out;
        out->data_ = static_cast<std::byte*>(::operator new[](bytes.size(), std::align_val_t{64}));
        out->size_ = bytes.size();
        std::memcpy(out->data_, bytes.data(), bytes.size());
        return out;
    }

    std::byte* data() const { return data_; }
    size_t size() const { return size_; }
    std::span<std::byte> bytes() const { return {data_, size_}; }

private:
    MappedBytes() = default;
    std::byte* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
};

// Where write_file_atomic's callback writes; errors name the target file.
class FileSink {
public:
    FileSink(int fd, const std::string& target) : fd_(fd), target_(target) {}

    void write(const void* data, uint64_t n) {
        const auto* p = static_cast<const char*>(data);
        while (n > 0) {
            const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
            const ssize_t w = ::write(fd_, p, chunk);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(target_, ": write failed: ", detail::errno_str(errno));
            }
            p += w;
            n -= static_cast<uint64_t>(w);
        }
    }
    void write(std::string_view s) { write(s.data(), s.size()); }

private:
    int fd_;
    const std::string& target_;
};

// Calls fill(sink) to write `<path>.tmp.<pid>.<n>`, syncs it and renames it over `path`; on
// failure removes the temporary file and throws naming `path`.
template <class Fill>
    requires std::is_invocable_v<Fill&, FileSink&>
void write_file_atomic(const std::filesystem::path& path, Fill&& fill) {
    const std::string target = path.string();
    static std::atomic<uint64_t> counter{0};
    std::string tmp;
    int raw_fd = -1;
    for (int attempt = 0; attempt < 100 && raw_fd < 0; ++attempt) {
        tmp = target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
        raw_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (raw_fd < 0 && errno != EEXIST) break;
    }
    if (raw_fd < 0) {
        const int err = errno;
        fail(target, ": cannot create the temporary file ", tmp, ": ", detail::errno_str(err));
    }
    detail::FdCloser fd(raw_fd);
    try {
        FileSink sink(fd.get(), target);
        fill(sink);
        if (::fsync(fd.get()) != 0) fail(target, ": cannot sync ", tmp, ": ", detail::errno_str(errno));
        if (fd.close() != 0) fail(target, ": cannot close ", tmp, ": ", detail::errno_str(errno));
        if (::rename(tmp.c_str(), target.c_str()) != 0)
            fail(target, ": cannot rename ", tmp, " to it: ", detail::errno_str(errno));
    } catch (...) {
        fd.close();
        ::unlink(tmp.c_str());
        throw;
    }
    // Make the rename itself durable (best effort: some file systems refuse to sync a directory).
    const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    detail::FdCloser dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() >= 0) (void)::fsync(dfd.get());
}

// Replaces `path` with `bytes`, as above.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
    write_file_atomic(path, [&](FileSink& sink) { sink.write(bytes); });
}

// Writes `bytes` to `path` in place (created or truncated); throws naming it.
inline void write_file(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
    const std::string target = path.string();
    detail::FdCloser fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
    if (fd.get() < 0) fail(target, ": cannot open for writing: ", detail::errno_str(errno));
    FileSink(fd.get(), target).write(bytes.data(), bytes.size());
    if (fd.close() != 0) fail(target, ": write failed: ", detail::errno_str(errno));
}

}  // namespace coeffnet::io
